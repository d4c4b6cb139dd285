import os

import numpy as np
import pytest
import torch

# pytest-xdist workers (make test: -n 2) share the cores: each takes its share, in-process and,
# through OMP_NUM_THREADS, in the commands it starts, so two workers do not run four threads on two cores
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
torch.set_num_threads(_THREADS)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
os.environ.setdefault("STRAIGHTFLOW_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "straightflow"))
# a cache per worker (STRAIGHTFLOW_CACHE-gw0, -gw1, ...; the workers inherit the value set above in the controlling
# process): what one worker writes there (feature networks, datasets) is never read half-written by another
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["STRAIGHTFLOW_CACHE"] = (os.environ["STRAIGHTFLOW_CACHE"].rstrip("/\\") + "-"
                                        + os.environ["PYTEST_XDIST_WORKER"])


@pytest.fixture
def quick_overrides():
    """Config overrides for a tiny, fast training run."""
    return dict(width=32, depth=2, batch_size=64, log_every=10, ckpt_every=20, progress=False)


@pytest.fixture
def unbalanced_points(tmp_path):
    """A labelled 2D point file, classes a/b about 80/20 (column ``kind``), for class-frequency checks."""
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    x = rng.normal(size=(400, 2)) * 0.3 + np.stack([y * 4.0, -y * 2.0], 1)
    path = tmp_path / "pts.csv"
    path.write_text("x,y,kind\n" + "".join(f"{a:.5f},{b:.5f},{'ab'[c]}\n" for (a, b), c in zip(x, y)))
    return path
