"""What ``--beta auto`` decides, from a finished fixed-beta sweep instead of its own pilots.

    python bench/auto_from_sweep.py runs/kl/seed0/moons/sweep                # the pilots' rule on the sweep's runs
    python bench/auto_from_sweep.py runs/kl/seed0/moons/sweep --split heldout  # priced the old way, for comparison

A pilot is a run of the sweep's configuration at a fixed beta and the run's length, so on data whose
training draws do not depend on the split (the built-in 2D sets) a sweep run of beta b holds the
same weights as the pilot of beta b (docs/kl_target.md). This prices those runs exactly as the
pilots price themselves (``QualityProbe`` at NFE 1 and 100, ``PROBE_N`` samples, ``--draws`` draws of
seeds 0.., against the validation split by default), takes each run's KL as the pilots do (the mean
training-batch KL of its last tenth) and applies the rule (``choose_target``), walking the ladder down
from the baseline and stopping at the first inadmissible rung. It prints each rung's price and the K
the rule picks. For data whose validation split changes the training rows (files, folders), the
pilots' weights differ from the sweep's and this is only an approximation.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from straightflow.formatting import beta_label
from straightflow.run import Run
from straightflow.training.auto_beta import (
    DEFAULT_PRICE,
    PILOT_BETAS,
    PRICE_NFE,
    PROBE_N,
    choose_target,
    late_kl,
    near_line,
    price_of,
)
from straightflow.training.monitor import QualityProbe, read_records


def price_run(run_dir: Path, draws: int, split: str) -> dict:
    """The pilot record of one sweep run: quality at NFE 1 and PRICE_NFE (mean of ``draws``), per-draw values, KL."""
    run = Run.load(run_dir, device="cpu")
    probe = QualityProbe(run.data, [1, PRICE_NFE], n=PROBE_N, solver=run.method.default_solver, prior=run.prior, seed=0,
                         draws=draws, split=split)
    scores = probe(run.velocity_fn())
    key = next(k for k in (f"w2_nfe{PRICE_NFE}", f"fd_nfe{PRICE_NFE}") if k in scores.scores)
    return {"quality": scores.scores[key], "quality_nfe1": scores.scores[key.replace(f"nfe{PRICE_NFE}", "nfe1")],
            "quality_draws": [d[key] for d in scores.draws] if scores.draws else [scores.scores[key]],
            "kl": late_kl(read_records(run_dir / "stats.jsonl"), run.cfg.steps)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a `straightflow sweep` folder (beta-<b>/ runs)")
    p.add_argument("--draws", type=int, default=20, help="draws per rung (the pilots' default on vectors: 20)")
    p.add_argument("--split", default="validation", choices=("validation", "heldout"),
                   help="what the rungs are priced against")
    p.add_argument("--price", type=float, default=DEFAULT_PRICE)
    args = p.parse_args()
    sweep = Path(args.sweep)
    pilots = []
    for beta in PILOT_BETAS:
        run_dir = sweep / f"beta-{beta_label(beta)}"
        if not (run_dir / "config.yaml").is_file():
            print(f"no run for beta={beta_label(beta)} in {sweep}; the walk stops here")
            break
        pilot = {"beta": beta, **price_run(run_dir, args.draws, args.split)}
        pilot["ratio"], pilot["se"] = price_of(pilot, pilots[0]) if pilots else (1.0, 0.0)
        pilots.append(pilot)
        print(f"beta={beta_label(beta):>4}: W2@{PRICE_NFE} {pilot['quality']:.4g} ({pilot['ratio']:.3g}x +- "
              f"{pilot['se']:.2g}), W2@1 {pilot['quality_nfe1']:.4g}, KL {pilot['kl']:.4g}", flush=True)
        if pilot["ratio"] > args.price:
            break
    choice = choose_target(pilots, args.price)
    close = ", ".join(f"beta={beta_label(r['beta'])}" for r in near_line(pilots, args.price))
    print(f"priced on the {args.split} split, {args.draws} draws of n = {PROBE_N}: K = {choice['kl_target']:.4g}, "
          f"initial beta {choice['beta']:.4g} ({choice['why']})" + (f"; near the line: {close}" if close else ""))
    return 0 if math.isfinite(choice["kl_target"]) else 1


if __name__ == "__main__":
    sys.exit(main())
