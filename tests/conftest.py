import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("STRAIGHTFLOW_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "straightflow"))


@pytest.fixture
def quick_overrides():
    """Config overrides for a tiny, fast training run."""
    return dict(width=32, depth=2, batch_size=64, log_every=10, ckpt_every=20, progress=False)
