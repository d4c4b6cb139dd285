"""Digests of the EMA weights of a fixed set of short training runs, to show that a refactor changed no result.

    python bench/ema_digests.py --out runs/digests                 # prints one line per run and writes digests.json
    python bench/ema_digests.py --out runs/digests2 --compare runs/digests/digests.json   # exit 1 on any difference

The runs cover every training path: rectified flow, minibatch OT, the curvature method with
``--kl-target`` (the KL-budget controller), a lines student with the adversarial term on a
teacher's pairs, a class-conditional run (label dropout) and a digits UNet run. Each is a few
dozen steps on the CPU (bit-identical results need the same machine and torch build: compare
digests made on one machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

SMALL = dict(width=32, depth=2, batch_size=64, log_every=10, ckpt_every=40, steps=40, progress=False, device="cpu")


def _digest(run_dir: Path) -> str:
    from straightflow.checkpoint import latest_checkpoint

    return hashlib.sha256((latest_checkpoint(run_dir) / "ema.safetensors").read_bytes()).hexdigest()[:16]


def runs(out: Path) -> dict[str, Path]:
    """Train the fixed runs into ``out`` (skipping finished ones) and return name -> run directory."""
    from straightflow.experiments.pairs import pairs_from_run
    from straightflow.training import train

    plan = {
        "rectified": dict(data="moons", method="rectified"),
        "ot": dict(data="moons", method="ot"),
        "curvature-kl-target": dict(data="moons", method="curvature", kl_target=0.1),
        "conditional": dict(data="8gaussians", conditional=True),
        "digits-unet": dict(data="digits", steps=10, batch_size=32, ckpt_every=10, width=256, depth=3),
    }
    dirs = {}
    for name, kw in plan.items():
        run_dir = out / name
        if not (run_dir / "checkpoints").is_dir():
            train(out=str(run_dir), **{**SMALL, **kw})
        dirs[name] = run_dir
    pairs = out / "pairs"
    if not (pairs / "manifest.json").is_file():
        pairs_from_run(dirs["rectified"], 600, pairs, nfe=8, device="cpu", progress=False)
    student = out / "lines-adv"
    if not (student / "checkpoints").is_dir():
        train(out=str(student), method="lines", pairs=str(pairs), adv=0.1, **SMALL)
    dirs["lines-adv"] = student
    return dirs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder of the runs (reused when present)")
    p.add_argument("--compare", default=None, help="a digests.json to compare with; exit 1 when any digest differs")
    args = p.parse_args()
    torch.set_num_threads(1)  # one thread: the summation order, and so the digests, do not depend on the core count
    out = Path(args.out)
    digests = {name: _digest(run_dir) for name, run_dir in runs(out).items()}
    (out / "digests.json").write_text(json.dumps(digests, indent=1) + "\n")
    differ = 0
    before = json.loads(Path(args.compare).read_text()) if args.compare else {}
    for name, digest in digests.items():
        mark = "" if not before else ("  same" if before.get(name) == digest else f"  DIFFERS (was {before.get(name)})")
        differ += bool(mark.strip().startswith("DIFFERS"))
        print(f"{name:22s} {digest}{mark}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
