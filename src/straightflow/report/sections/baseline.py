"""Section 1, ``baseline``: rectified flow on moons beside the two-sample floor, and against torchcfm's I-CFM.

The baseline is ``--method rectified`` (independent coupling, docs/lines.md); its W2 per
Euler NFE is read against the two-sample floor (docs/evaluation.md). ``bench/bench_baseline.py``
trains the same model with torchcfm's I-CFM loop (the same data, network, batch, learning
rate and steps) and compares speed and W2.
"""

from __future__ import annotations

from ...formatting import significant
from ..document import Block, Code, Heading, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import plot_job, python_command, teacher_jobs
from .results import eval_block, floor_of, quality
from .spec import Context, SectionSpec

TEACHER = "runs/2d/moons/teacher"


def baseline_jobs(scale: Scale) -> list[Job]:
    """The moons teacher, its reverse trajectories, and ``bench/bench_baseline.py`` (needs torchcfm)."""
    jobs = teacher_jobs(scale, "moons")
    jobs.append(plot_job(TEACHER, "trajectories", "baseline_moons_trajectories.png", "--nfe", "100"))
    bench = python_command("bench/bench_baseline.py", "--data", "moons", "--steps", scale.steps, "--batch-size",
                           scale.batch, *scale.network_flags, "-n", scale.eval_samples,
                           "--images-steps", scale.peer_images_steps, "--json", "runs/baseline/bench.json")
    jobs.append(Job("runs/baseline/bench", bench, outputs=("runs/baseline/bench.json",),
                    stdout="runs/baseline/bench.txt", requires=("torchcfm",)))
    return jobs


def _baseline_eval(ctx: Context) -> list[Block]:
    """The teacher's eval table and its W2 at the largest NFE against the floor (target: within 0.1)."""
    blocks = eval_block(ctx, f"{TEACHER}/eval.json",
                        "The baseline (`--method rectified`, independent coupling) on moons, Euler")
    rep = ctx.json(f"{TEACHER}/eval.json")
    q, floor = quality(rep), floor_of(rep)
    top = max(q)
    blocks.append(Text(f"W2 at NFE {top}: {q[top]:.4g} against a two-sample floor of {floor:.4g} (target: within 0.1 "
                       f"of the floor: **{'met' if q[top] - floor <= 0.1 else 'missed'}**)."))
    return blocks


def _torchcfm_blocks(ctx: Context) -> list[Block]:
    """bench_baseline.py's table: steps/s and W2 per NFE of both implementations, their ratios, the script's output."""
    b = ctx.json("runs/baseline/bench.json")
    nfes = sorted(int(k) for k in b["ours_w2"])
    rows = [["straightflow rectified (EMA)", significant(b["ours_steps_per_sec"], 4)]
            + [significant(b["ours_w2"][str(k)]) for k in nfes],
            ["torchcfm I-CFM", significant(b["torchcfm_steps_per_sec"], 4)]
            + [significant(b["torchcfm_w2"][str(k)]) for k in nfes]]
    return [Heading("Against torchcfm's I-CFM (the same data, network, batch, learning rate and steps, one process)"),
            Table(["model", "steps/s"] + [f"W2 NFE {k}" for k in nfes], rows),
            Text(f"Two-sample floor {b['floor']:.4g}. Speed ratio straightflow / torchcfm: "
                 f"{b['ours_steps_per_sec'] / b['torchcfm_steps_per_sec']:.2f}x; W2 at NFE {nfes[-1]}: "
                 f"{b['ours_w2'][str(nfes[-1])] / b['torchcfm_w2'][str(nfes[-1])]:.3f}x (target: no more than 10% "
                 "worse; the EMA weights against raw weights). The speeds were measured while up to "
                 f"{ctx.jobs_at_once} report jobs shared the machine: read the ratio, not the steps/s. The script's "
                 "own output:"),
            Code(ctx.text("runs/baseline/bench.txt"))]


def render_baseline(ctx: Context, scale: Scale) -> list[Block]:
    blocks = ctx.part(lambda: _baseline_eval(ctx), "the baseline's evaluation")
    blocks += ctx.figure("figures/baseline_moons_trajectories.png",
                         "Reverse trajectories of the baseline (Euler 100): the curved paths the "
                         f"rest of the report straightens. `straightflow plot {TEACHER} --kind trajectories --nfe 100`")
    r = ctx.results.get("runs/baseline/bench")
    if r is not None and r.status == "unavailable":
        blocks.append(Text(f"**Baseline vs torchcfm: not run** — {r.reason}."))
        return blocks
    return blocks + ctx.part(lambda: _torchcfm_blocks(ctx), "baseline vs torchcfm")


SECTION = SectionSpec(
    "baseline", "1. Baseline and benchmark",
    "The baseline (`--method rectified`: rectified flow, independent coupling) on moons, evaluated with Euler at "
    "several NFE beside the two-sample floor, and `bench/bench_baseline.py`: the same model against torchcfm's I-CFM "
    "loop (needs `make bench`).",
    baseline_jobs, render_baseline)
