"""Section 5, ``digits-curvature``: the beta sweep on digits (the curvature paper's Fig. 5, 6, 7, 8).

The sweep renders as in section 3 (:func:`.curvature.sweep_blocks`); the check here is that
curvature falls monotonically as beta falls, every beta below the baseline's.
"""

from __future__ import annotations

import math

from ...formatting import beta_label
from ..document import Block, Text
from ..jobs import Job
from .budgets import DIGITS_SKIP_NOTE, Scale, runs_digits
from .commands import curvature_sweep_jobs
from .curvature import sweep_blocks
from .spec import Context, SectionSpec

SWEEP = "runs/curvature/digits"


def digits_curvature_jobs(scale: Scale) -> list[Job]:
    return curvature_sweep_jobs(scale, "digits")


def _monotone_check(ctx: Context) -> list[Block]:
    """Whether curvature falls monotonically with beta (nothing when the sweep is missing: :func:`sweep_blocks` said
    so)."""
    sweep = ctx.maybe_json(f"{SWEEP}/sweep.json")
    if sweep is None:
        return []
    curv = {beta_label(float(r["beta"])): r["report"]["curvature"] for r in sweep["runs"]}
    order = sorted(curv, key=lambda b: math.inf if b == "inf" else float(b))
    mono = all(curv[x] < curv[y] for x, y in zip(order, order[1:]))
    return [Text("Curvature falls monotonically as beta falls, all below the baseline: "
                 f"**{'met' if mono else 'missed'}** "
                 f"({' > '.join(f'{curv[b]:.4g} (beta {b})' for b in reversed(order))}).")]


def render_digits_curvature(ctx: Context, scale: Scale) -> list[Block]:
    return sweep_blocks(ctx, "digits", SWEEP) + _monotone_check(ctx)


SECTION = SectionSpec(
    "digits-curvature", "5. The curvature method on digits",
    "A beta sweep on `digits` (Fig. 5, 6, 7, 8): curvature should fall monotonically as beta falls.",
    digits_curvature_jobs, render_digits_curvature, runs_digits, DIGITS_SKIP_NOTE)
