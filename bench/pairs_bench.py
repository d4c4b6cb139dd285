"""Benchmark row: teacher pairs generated per second at the teacher's NFE.

    python bench/pairs_bench.py RUNDIR --nfe 100 -n 20000
    python bench/pairs_bench.py --data moons --train-steps 500 --nfe 100   # trains a throwaway teacher first

Importable: ``pairs_per_second(teacher_dir, ...)`` returns a dict (the lead's
bench script prints it as one row). Generation goes through the same code as
``straightflow pairs`` (noise, batched inference-mode solve, checksummed
shard writes), into a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from straightflow.experiments.pairs import pairs_from_run as generate_pairs


def pairs_per_second(teacher_dir: str | Path, nfe: int = 100, solver: str = "euler", n: int = 20_000,
                     batch_size: int = 4096, device: str = "auto", seed: int = 0) -> dict:
    """Generate ``n`` pairs from ``teacher_dir`` into a temporary folder and time it."""
    tmp = Path(tempfile.mkdtemp(prefix="sf-pairs-bench-"))
    try:
        s = generate_pairs(teacher_dir, n, tmp / "pairs", solver=solver, nfe=nfe, seed=seed, batch_size=batch_size,
                           device=device, progress=False)
        return {"row": "pairs", "teacher": str(teacher_dir), "solver": solver, "nfe": nfe, "n": n,
                "batch_size": batch_size, "seconds": s["seconds"], "pairs_per_sec": s["pairs_per_sec"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", nargs="?", help="teacher run directory (omit to train a throwaway baseline)")
    ap.add_argument("--data", default="moons")
    ap.add_argument("--train-steps", type=int, default=500)
    ap.add_argument("--nfe", type=int, default=100)
    ap.add_argument("--solver", default="euler")
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    scratch = None
    teacher = args.teacher
    if teacher is None:
        from straightflow.training import train

        scratch = Path(tempfile.mkdtemp(prefix="sf-pairs-teacher-"))
        teacher = train(data=args.data, steps=args.train_steps, out=str(scratch / "teacher"), progress=False,
                        device=args.device)
    try:
        row = pairs_per_second(teacher, args.nfe, args.solver, args.n, args.batch_size, args.device)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"pairs/s at {args.solver} NFE {args.nfe} (n={args.n}, batch {args.batch_size}): {row['pairs_per_sec']:.0f}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
