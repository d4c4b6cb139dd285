"""``straightflow demo``: the main job on a built-in default, in a few minutes on 2 CPU cores.

Trains the rectified-flow baseline on a 2D set, then writes the reverse
trajectory plot and a quality-vs-NFE table (W2 and energy distance beside the
two-sample floor) into one folder.

The run lives in ``OUT/run`` and is recreated by every demo: the demo marks it
(``OUT/run/.straightflow-demo``) and removes only a folder so marked (or one
left by an older demo: the demo's config and nothing else); any other
``OUT/run`` is left alone with a one-line error.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from ..errors import StraightflowError
from ..evaluate import evaluate, format_table
from ..locks import FolderLock
from ..plots import plot_trajectories
from ..run import Run
from ..training import train

#: the file that marks ``OUT/run`` as the demo's own run
DEMO_MARKER = ".straightflow-demo"
#: what the demo's run holds: anything else in ``OUT/run`` is the user's
_RUN_ENTRIES = {DEMO_MARKER, "config.yaml", "stats.jsonl", "checkpoints", ".lock"}


def _made_by_an_older_demo(run_dir: Path) -> bool:
    """A run written before the marker existed: the demo's fixed settings in config.yaml."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (isinstance(cfg, dict) and cfg.get("method") == "rectified" and cfg.get("batch_size") == 256
            and cfg.get("ckpt_every") == cfg.get("steps") and Path(str(cfg.get("out", ""))).name == "run")


def _clear_demo_run(out: Path, run_dir: Path) -> None:
    """Remove the demo's previous run in ``run_dir``; refuse anything the demo did not make."""
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if run_dir.is_dir() and not run_dir.is_symlink():
        names = {p.name for p in run_dir.iterdir()}
        if names <= _RUN_ENTRIES and (DEMO_MARKER in names or not names or _made_by_an_older_demo(run_dir)):
            with FolderLock(run_dir, "the demo's run directory"):  # not while another demo is writing it
                shutil.rmtree(run_dir)
            return
    what = "holds files the demo did not make" if run_dir.is_dir() else "is not a folder the demo made"
    raise StraightflowError(f"demo --out {out}: {run_dir} {what}; choose another --out or remove {run_dir}")


def run_demo(out: Path, data: str = "moons", steps: int = 3000) -> dict:
    out = Path(out)
    run_dir = out / "run"
    _clear_demo_run(out, run_dir)  # the demo's own scratch run, recreated every time
    run_dir.mkdir(parents=True)
    (run_dir / DEMO_MARKER).write_text("made by `straightflow demo`: removed and recreated by the next demo\n")
    t0 = time.perf_counter()
    train(data=data, method="rectified", steps=steps, batch_size=256, out=str(run_dir), ckpt_every=steps)
    run = Run.load(run_dir)
    plot_path = out / "trajectories.png"
    plot_trajectories(run, plot_path, n=300, nfe=100, solver="euler", seed=0)
    report = evaluate(run, [1, 2, 4, 8, 100], solver="euler", n=2000)
    table = format_table(report)
    (out / "quality_vs_nfe.txt").write_text(table + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(table)
    print(f"straightflow demo: done in {time.perf_counter() - t0:.0f} s")
    print(f"  trajectory plot: {plot_path}")
    print(f"  quality-vs-NFE table: {out / 'quality_vs_nfe.txt'} (JSON: {out / 'report.json'})")
    print(f"  run directory: {run_dir}")
    return report
