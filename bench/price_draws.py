"""How much a curvature run's price at NFE 100 moves between draws (docs/kl_target.md, "How precise a price is").

    OMP_NUM_THREADS=1 python bench/price_draws.py BASELINE RUN [RUN ...] --seeds 0,100 --draws 20 --block 5

The price of RUN is its W2 at NFE 100 over BASELINE's (the ``--beta auto`` rule's r,
``training/auto_beta.py``), each the mean over ``--draws`` draws of noise and held-out reference
(``QualityProbe`` seeds S .. S + draws - 1, n = 2000, the run's own solver), for each start S of
``--seeds``. Printed per run and start: the ratio of the means, the mean of the paired per-draw
ratios with its standard error, and the ratio of the means of each block of ``--block`` draws
(5 is what the default rule prices on). Each run's line also carries a sha256 of its EMA
velocity weights, so two folders that hold the same trained weights (a pilot and the sweep's
run of the same beta and seed) can be told apart from two that do not.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics

from straightflow.run import Run
from straightflow.training.monitor import QualityProbe

NFE = 100


def weights_digest(run: Run) -> str:
    """A short sha256 of the EMA velocity weights (names, shapes and values)."""
    h = hashlib.sha256()
    for name, value in sorted(run.velocity.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def per_draw_w2(run: Run, n: int, seed: int, draws: int) -> list[float]:
    probe = QualityProbe(run.data, [NFE], n=n, solver=run.method.default_solver, prior=run.prior, seed=seed,
                         draws=draws)
    result = probe(run.velocity_fn())
    return [d[f"w2_nfe{NFE}"] for d in result.draws] if result.draws else [result.scores[f"w2_nfe{NFE}"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", help="the beta = inf run")
    ap.add_argument("runs", nargs="+", help="curvature runs to price against it")
    ap.add_argument("--seeds", default="0,100",
                    help="first draw seed of each set of draws (default 0,100: the pilots' and the bench check's)")
    ap.add_argument("--draws", type=int, default=20, help="draws per set (default 20)")
    ap.add_argument("--block", type=int, default=5, help="draws per block (default 5, the default rule's)")
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args(argv)
    if args.draws < 2 or args.block < 1:
        ap.error("--draws must be at least 2 and --block at least 1")
    starts = [int(s) for s in args.seeds.split(",") if s.strip()]
    base_run = Run.load(args.baseline, device="cpu")
    print(f"baseline {args.baseline}: weights {weights_digest(base_run)}")
    base = {s: per_draw_w2(base_run, args.n, s, args.draws) for s in starts}
    for path in args.runs:
        run = Run.load(path, device="cpu")
        print(f"{path}: weights {weights_digest(run)}")
        for s in starts:
            a, b = per_draw_w2(run, args.n, s, args.draws), base[s]
            ratios = [x / y for x, y in zip(a, b)]
            se = statistics.stdev(ratios) / math.sqrt(len(ratios))
            blocks = [sum(a[i:i + args.block]) / sum(b[i:i + args.block])
                      for i in range(0, len(a) - args.block + 1, args.block)]
            print(f"  seeds {s}-{s + args.draws - 1}: price {sum(a) / sum(b):.3f} (mean per-draw ratio "
                  f"{statistics.fmean(ratios):.3f} +- {se:.3f}); {args.block}-draw blocks "
                  + ", ".join(f"{r:.3f}" for r in blocks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
