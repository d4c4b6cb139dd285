"""Spread of a run's quality over sampling seeds: how much of a difference is noise?

    python bench/seed_spread.py runs/lines/digits/lines runs/lines/digits/distill --nfe 1 --seeds 6
    python bench/seed_spread.py runs/lines/digits/teacher --nfe 100 --solver euler
    python bench/seed_spread.py runs/conditional/digits/teacher --nfe 100 --guidance 2   # a conditional run

For each run, evaluates quality (W2 for vectors, the Fréchet distance for images) at one NFE
with sampling seeds 0..S-1 against the same held-out reference, and prints every value and
their mean and standard deviation. The solver defaults to each run's own (lines runs: the line sampler).
"""

from __future__ import annotations

import argparse
import statistics

import straightflow as sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--nfe", type=int, required=True)
    ap.add_argument("--solver", default=None)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--guidance", type=float, default=None, help="conditional runs: guidance weight (default 1)")
    args = ap.parse_args()
    for rundir in args.runs:
        run = sf.Run.load(rundir)
        solver = args.solver or run.method.default_solver
        values, metric = [], None
        for seed in range(args.seeds):
            report = sf.evaluate(run, [args.nfe], solver=solver, n=args.n, seed=seed, curvature_n=8, guidance=args.guidance)
            metric = report["quality_metric"]
            values.append(report["results"][0][metric])
        guided = f" guidance {report['guidance']:g}" if "guidance" in report else ""
        print(f"{rundir}: {metric} at {solver} NFE {args.nfe}{guided}, seeds 0-{args.seeds - 1}: "
              + " ".join(f"{v:.3f}" for v in values)
              + f" | mean {statistics.mean(values):.3f} sd {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}")


if __name__ == "__main__":
    main()
