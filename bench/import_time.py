"""Start-up cost: ``import torch``, ``import straightflow``, its whole API and ``straightflow --help``.

Each is timed as the wall time of a fresh interpreter (so Python's own start-up is in every
number), median of ``--repeat`` runs after one unmeasured warm-up run each, and printed with
its ratio to ``import torch``. ``import straightflow`` alone loads no torch (its public names
load on first use, so the command line answers ``--help`` without torch); the API line,
``from straightflow import *``, is what a script using the library pays: aim for at most
1.25x ``import torch``. The straightflow importable first on ``PYTHONPATH`` is measured::

    python bench/import_time.py
    PYTHONPATH=src python bench/import_time.py --repeat 9
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _cli() -> list[str]:
    """The ``straightflow`` console script beside this interpreter (``python -m straightflow`` without one)."""
    script = Path(sys.executable).parent / "straightflow"
    if script.is_file():
        return [str(script)]
    found = shutil.which("straightflow")
    return [found] if found else [sys.executable, "-m", "straightflow"]


def wall_time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed runs of each command; the median is printed (default 5)")
    args = ap.parse_args()
    py = sys.executable
    cases = [
        ("python (no import)", [py, "-c", "pass"]),
        ("import torch", [py, "-c", "import torch"]),
        ("import straightflow", [py, "-c", "import straightflow"]),
        ("from straightflow import * (the API)", [py, "-c", "from straightflow import *"]),
        ("straightflow --help", _cli() + ["--help"]),
    ]
    where = subprocess.run([py, "-c", "import straightflow; print(straightflow.__file__)"], capture_output=True,
                           text=True, check=True).stdout.strip()
    print(f"straightflow from {where}; median of {args.repeat} fresh-interpreter runs each")
    medians = {}
    for name, argv in cases:
        wall_time(argv)  # warm-up: file-system caches
        medians[name] = statistics.median(wall_time(argv) for _ in range(args.repeat))
    torch_s = medians["import torch"]
    for name, seconds in medians.items():
        print(f"{name:40s} {seconds:7.3f} s   {seconds / torch_s:5.2f}x import torch")
    api = medians["from straightflow import * (the API)"] / torch_s
    print(f"the API at {api:.2f}x import torch: {'within' if api <= 1.25 else 'above'} the 1.25x aim")


if __name__ == "__main__":
    main()
