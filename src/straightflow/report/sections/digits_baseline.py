"""Section 2, ``digits-baseline``: the baseline on 8x8 digits (UNet preset ``digits-cpu``).

Quality is a Fréchet distance in the ``digits-classifier-v1`` feature space (not FID;
docs/evaluation.md) beside the train-vs-held-out floor; the x_hat figure is the curvature
paper's Fig. 6.
"""

from __future__ import annotations

from ...formatting import whole_number
from ..document import Block, Text
from ..jobs import Job
from .budgets import DIGITS_SKIP_NOTE, Scale, runs_digits
from .commands import plot_job, straightflow_command, teacher_jobs
from .results import eval_block, floor_of, quality
from .spec import Context, SectionSpec

TEACHER = "runs/digits/teacher"


def digits_baseline_jobs(scale: Scale) -> list[Job]:
    """The digits teacher, sample grids at NFE 100 and 1, and its x_hat plot."""
    jobs = teacher_jobs(scale, "digits")
    jobs.append(plot_job(TEACHER, "grid", "digits_baseline_grid_nfe100.png", "--nfe", "100", "-n", "64"))
    grid_nfe1 = "figures/digits_baseline_grid_nfe1.png"
    jobs.append(Job(grid_nfe1, straightflow_command("sample", TEACHER, "--nfe", "1", "-n", "64", "--out", grid_nfe1),
                    outputs=(grid_nfe1,), after=(TEACHER,)))
    jobs.append(plot_job(TEACHER, "xhat", "digits_baseline_xhat.png", "--nfe", "100", "-n", "6"))
    return jobs


def _digits_baseline_eval(ctx: Context) -> list[Block]:
    """The teacher's eval table, FD at the largest NFE over the floor (target <= 3) and its training time."""
    rep = ctx.json(f"{TEACHER}/eval.json")
    blocks = eval_block(ctx, f"{TEACHER}/eval.json", "The digits baseline (UNet `digits-cpu`), Euler")
    q, floor = quality(rep), floor_of(rep)
    top = max(q)
    blocks.append(Text(f"FD at NFE {top} / floor = {q[top] / floor:.2f} (target <= 3: "
                       f"**{'met' if q[top] <= 3 * floor else 'missed'}**); training took "
                       f"{whole_number(ctx.wall(TEACHER))} s (job wall time)."))
    return blocks


def render_digits_baseline(ctx: Context, scale: Scale) -> list[Block]:
    blocks = ctx.part(lambda: _digits_baseline_eval(ctx), "the digits baseline's evaluation")
    blocks += ctx.figure("figures/digits_baseline_grid_nfe100.png", "Samples at NFE 100 (`plot --kind grid --nfe 100`)")
    blocks += ctx.figure("figures/digits_baseline_grid_nfe1.png", "Samples at NFE 1 (`sample --nfe 1`)")
    blocks += ctx.figure("figures/digits_baseline_xhat.png",
                         "x_hat(z_t, t) along t (`plot --kind xhat`, the curvature paper's Fig. 6)")
    return blocks


SECTION = SectionSpec(
    "digits-baseline", "2. Images: the digits baseline",
    "The baseline on `digits` (8x8 images, UNet preset `digits-cpu`); quality is a Fréchet distance in the "
    "`digits-classifier-v1` feature space (not FID) beside the train-vs-held-out floor.",
    digits_baseline_jobs, render_digits_baseline, runs_digits, DIGITS_SKIP_NOTE)
