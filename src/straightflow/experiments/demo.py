"""``straightflow demo``: the main job on a built-in default, in a few minutes on 2 CPU cores.

Trains the rectified-flow baseline on a 2D set, then writes the reverse
trajectory plot and a quality-vs-NFE table (W2 and energy distance beside the
two-sample floor) into one folder.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..evaluate import evaluate, format_table
from ..plots import plot_trajectories
from ..run import Run
from ..training import train


def run_demo(out: Path, data: str = "moons", steps: int = 3000) -> dict:
    out = Path(out)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo's own scratch run, recreated every time
    out.mkdir(parents=True, exist_ok=True)
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
