"""Class accuracy of a conditional `8gaussians` run judged by the nearest mode centre.

    python bench/nearest_mode.py runs/conditional/8gaussians --nfe 100 -n 2000 --guidance 1

Samples ``n`` points of each class c (mode c sits at 2 (cos 2 pi c / 8, sin 2 pi c / 8)) and
prints, per class, the fraction whose nearest mode centre is c, then the minimum over classes.
"""

from __future__ import annotations

import argparse
import math

import torch

import straightflow as sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--nfe", type=int, default=100)
    ap.add_argument("-n", type=int, default=2000, help="samples per class")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = sf.Run.load(args.run)
    if run.cfg.data != "8gaussians" or not run.conditional:
        raise SystemExit(f"{args.run} is not a conditional 8gaussians run")
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    fractions = []
    for c in range(8):
        out = run.sample(args.n, nfe=args.nfe, seed=args.seed + c, classes=c, guidance=args.guidance)
        nearest = torch.cdist(out.samples, centres).argmin(dim=1)
        fractions.append(float((nearest == c).float().mean()))
    print(f"{args.run}: nearest-mode accuracy per class at euler NFE {args.nfe}, guidance {args.guidance:g}, {args.n} "
          "samples each: "
          + " ".join(f"{f:.4f}" for f in fractions) + f" | min {min(fractions):.4f}")


if __name__ == "__main__":
    main()
