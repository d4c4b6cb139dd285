"""Spread of a run's quality over sampling seeds: how much of a difference is noise?

    python bench/seed_spread.py runs/lines/digits/lines runs/lines/digits/distill --nfe 1 --seeds 6
    python bench/seed_spread.py runs/lines/digits/teacher --nfe 100 --solver euler
    python bench/seed_spread.py runs/conditional/digits/teacher --nfe 100 --guidance 2   # a conditional run

For each run, ``eval --seeds S`` at one NFE (noise seeds 0..S-1, the same held-out reference, eval's
default sizes unless -n is given) and one line with every seed's value of the headline metric (W2 for
vectors, the Fréchet distance for images) and their mean and standard deviation; for images the kernel
distance, precision and recall as mean ± sd too. The solver defaults to each run's own (lines runs: the
line sampler). ``straightflow eval RUN --nfe K --seeds S`` prints the same numbers as a table.
"""

from __future__ import annotations

import argparse

import straightflow as sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--nfe", type=int, required=True)
    ap.add_argument("--solver", default=None)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("-n", type=int, default=None,
                    help="samples per seed (default: eval's, 2000 for vectors, 5000 for images)")
    ap.add_argument("--guidance", type=float, default=None, help="conditional runs: guidance weight (default 1)")
    args = ap.parse_args()
    for rundir in args.runs:
        run = sf.Run.load(rundir)
        solver = args.solver or run.method.default_solver
        report = sf.evaluate(run, [args.nfe], solver=solver, n=args.n, seeds=args.seeds, curvature_n=8,
                             guidance=args.guidance)
        metric, row = report["quality_metric"], report["results"][0]
        values = row.get(f"{metric}_seeds", [row[metric]])
        guided = f" guidance {report['guidance']:g}" if "guidance" in report else ""
        others = "".join(f" | {k} {row[k]:.4g} ± {row.get(f'{k}_sd', 0.0):.2g}" for k in ("kid", "precision", "recall")
                         if k in row)
        print(f"{rundir}: {metric} at {solver} NFE {args.nfe}{guided}, n={report['n']}, seeds "
              f"{report['seeds'][0]}-{report['seeds'][-1]}: "
              + " ".join(f"{v:.3f}" for v in values)
              + f" | mean {row[metric]:.3f} sd {row.get(f'{metric}_sd', 0.0):.3f}" + others)


if __name__ == "__main__":
    main()
