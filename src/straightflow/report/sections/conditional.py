"""Section 12, ``conditional``: class-conditional generation with classifier-free guidance (docs/conditional.md).

A conditional model of 8gaussians (the mode as label; label dropout 0.1) evaluated per class,
by nearest-mode accuracy and through its null branch; at scales with digits, a guided digits
teacher (w = 2) distilled into a one-step lines student through its pairs.
"""

from __future__ import annotations

from ..document import Block, Code, Heading, Text
from ..jobs import Job
from .budgets import Scale
from .commands import PLAIN_LINES, eval_job, pairs_job, plot_job, python_command, straightflow_command, train_job
from .results import eval_block, floor_of, quality
from .spec import Context, SectionSpec

GAUSSIANS = "runs/conditional/8gaussians"
DIGITS = "runs/conditional/digits"


def _gaussians_jobs(scale: Scale) -> list[Job]:
    """The conditional 8gaussians model, its evaluations at guidance 1 and 0, nearest-mode accuracy and its paths."""
    run = GAUSSIANS
    train = straightflow_command("train", "--data", "8gaussians", "--conditional", "--steps", scale.conditional_steps,
                                 "--batch-size", scale.batch, *scale.network_flags, "--progress", "false", "--out", run)
    nearest = python_command("bench/nearest_mode.py", run, "--nfe", 100, "-n", scale.eval_samples, "--guidance", 1)
    return [Job(run, train, outputs=(f"{run}/config.yaml",), resume_dir=run),
            eval_job(run, "1,2,4,100", scale=scale, data="8gaussians"),
            eval_job(run, "100", scale=scale, data="8gaussians", file="eval_w0.json", extra=("--guidance", "0")),
            Job(f"{run}/nearest_mode", nearest, stdout=f"{run}/nearest_mode.txt", after=(run,)),
            plot_job(run, "trajectories", "conditional_8gaussians_trajectories.png", "--nfe", "100")]


def _digits_jobs(scale: Scale) -> list[Job]:
    """The conditional digits teacher, its guided (w = 2) pairs, their lines student, evaluations, seed spreads and
    class grids."""
    teacher, pairs, lines = f"{DIGITS}/teacher", f"{DIGITS}/pairs", f"{DIGITS}/lines"
    jobs = [train_job(teacher, "--data", "digits", "--conditional", scale=scale, data="digits"),
            pairs_job(teacher, pairs, scale.digits_pairs, scale.digits_teacher_nfe, ("--guidance", "2")),
            train_job(lines, *PLAIN_LINES, "--pairs", pairs, scale=scale, data="digits", after=(pairs,)),
            eval_job(lines, "1,2,4", scale=scale, data="digits")]
    for w in ("1", "2"):
        jobs.append(eval_job(teacher, "1,4,16,100", scale=scale, data="digits", file=f"eval_w{w}.json",
                             extra=("--guidance", w)))
    seeds = str(max(2, scale.spread_seeds - 2))
    n = scale.digits_eval_samples
    jobs += [Job(f"{DIGITS}/seed_spread",
                 python_command("bench/seed_spread.py", teacher, "--nfe", 100, "--guidance", 2, "--seeds", seeds,
                                "-n", n),
                 stdout=f"{DIGITS}/seed_spread_teacher.txt", after=(teacher,)),
             Job(f"{DIGITS}/seed_spread_lines",
                 python_command("bench/seed_spread.py", lines, "--nfe", 1, "--seeds", seeds, "-n", n),
                 stdout=f"{DIGITS}/seed_spread_lines.txt", after=(lines,))]
    for nfe in ("1", "100"):
        jobs.append(plot_job(teacher, "grid", f"conditional_digits_teacher_nfe{nfe}.png", "--nfe", nfe,
                             "--guidance", "2", "-n", "10"))
    jobs.append(plot_job(lines, "grid", "conditional_digits_lines_nfe1.png", "--nfe", "1", "-n", "10"))
    return jobs


def conditional_jobs(scale: Scale) -> list[Job]:
    return _gaussians_jobs(scale) + (_digits_jobs(scale) if scale.digits else [])


def _gaussians_eval(ctx: Context) -> list[Block]:
    """The eval table at guidance 1 and the pooled W2 at NFE 100 against the floor (target: within 1.3x)."""
    rep = ctx.json(f"{GAUSSIANS}/eval.json")
    q, floor = quality(rep), floor_of(rep)
    return eval_block(ctx, f"{GAUSSIANS}/eval.json", "`straightflow eval` at guidance 1") + [
        Text(f"Pooled W2 at NFE 100: {q[100] / floor:.2f}x the two-sample floor (target: within 1.3x: "
             f"**{'met' if q[100] <= 1.3 * floor else 'missed'}**).")]


def _digits_blocks(ctx: Context) -> list[Block]:
    blocks: list[Block] = [Heading("digits: a guided teacher (w = 2) and its one-step lines student")]
    for rel, title in ((f"{DIGITS}/lines/eval.json", "The lines student, its own conditional branch (w = 1)"),
                       (f"{DIGITS}/teacher/eval_w2.json", "The guided teacher, `--guidance 2`"),
                       (f"{DIGITS}/teacher/eval_w1.json", "The plain conditional teacher, `--guidance 1`")):
        blocks += ctx.part(lambda rel=rel, title=title: eval_block(ctx, rel, title))
    blocks.append(Text("Across sampling seeds:"))
    for rel in (f"{DIGITS}/seed_spread_teacher.txt", f"{DIGITS}/seed_spread_lines.txt"):
        blocks += ctx.part(lambda rel=rel: [Code(ctx.text(rel))])
    for name, caption in (("teacher_nfe1", "guided teacher (w = 2), NFE 1: 2 network evaluations"),
                          ("teacher_nfe100", "guided teacher (w = 2), NFE 100: 200"),
                          ("lines_nfe1", "lines student, NFE 1: 1")):
        blocks += ctx.figure(f"figures/conditional_digits_{name}.png", f"Per-class grid, one row per class: {caption}")
    return blocks


def render_conditional(ctx: Context, scale: Scale) -> list[Block]:
    run = GAUSSIANS
    blocks = [Heading("8gaussians (the mode as label)")] + ctx.part(lambda: _gaussians_eval(ctx),
                                                                    "the conditional model's evaluation")
    blocks += [Text("Nearest-mode accuracy per class (`python bench/nearest_mode.py`):")]
    blocks += ctx.part(lambda: [Code(ctx.text(f"{run}/nearest_mode.txt"))])
    blocks += ctx.part(lambda: eval_block(ctx, f"{run}/eval_w0.json",
                                          "The null branch, `--guidance 0` (the unconditional model)"))
    blocks += ctx.figure("figures/conditional_8gaussians_trajectories.png",
                         "Reverse paths of the conditional model; "
                         f"`straightflow plot {run} --kind trajectories --nfe 100`")
    return blocks + (_digits_blocks(ctx) if scale.digits else [])


SECTION = SectionSpec(
    "conditional", "12. Class-conditional generation",
    "Classifier-free guidance (`docs/conditional.md`), label dropout 0.1: a conditional model of 8gaussians "
    "(the mode as label) and, at full scale, a guided digits teacher (w = 2) distilled into a one-step lines student.",
    conditional_jobs, render_conditional)
