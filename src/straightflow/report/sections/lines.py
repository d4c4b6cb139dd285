"""Section 6, ``lines``: students of a teacher's pairs on 2D sets: reflow, distillation, lines and OT-CFM.

Per 2D set, at the baseline's budget: the rectified-flow teacher, OT-CFM (``--method ot``,
exact minibatch OT), the teacher's pairs (Euler), and on those pairs ``reflow`` (2-rectified
flow), ``distill`` (one step), ``lines`` (the lines paper's MSE endpoint loss; docs/lines.md),
``lines_k2`` and ``lines_adv``. :func:`students_table` serves section 7 (digits) too.
"""

from __future__ import annotations

from ...formatting import significant
from ..document import Block, Heading, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import eval_job, plot_job, runs_folder, student_jobs, train_job
from .results import floor_of, quality
from .spec import Context, SectionSpec, missing_files_note

#: the runs of the lines section's tables, in row order
LINES_SECTION_RUNS = ("teacher", "ot", "reflow", "distill", "lines", "lines_k2", "lines_adv")


def lines_jobs(scale: Scale) -> list[Job]:
    """Per set: the teacher, its pairs, every student, OT-CFM, and the lines student's paths at NFE 4."""
    jobs: list[Job] = []
    for d in scale.lines_sets:
        root = runs_folder(d)
        jobs += student_jobs(scale, d)
        jobs += [train_job(f"{root}/ot", "--data", d, "--method", "ot", scale=scale, data=d),
                 eval_job(f"{root}/ot", "1,2,4", scale=scale, data=d)]
        jobs.append(plot_job(f"{root}/lines", "trajectories", f"lines_{d}_lines_nfe4.png", "--nfe", "4"))
    return jobs


def students_table(ctx: Context, data: str, names: tuple[str, ...]) -> tuple[list[Block], dict[str, dict]]:
    """The teacher and students of ``data``: one row per run whose ``eval.json`` exists, a note naming the others."""
    root = runs_folder(data)
    runs = {name: r for name in names if (r := ctx.maybe_json(f"{root}/{name}/eval.json")) is not None}
    teacher = runs.get("teacher")
    tq = quality(teacher) if teacher else {}
    top = max(tq) if tq else None
    metric = (teacher or next(iter(runs.values()), {})).get("quality_metric", "w2")
    header = ["run", "solver", "NFE 1", "NFE 2", "NFE 4", f"teacher NFE {top if top else '-'}", "NFE 1 / teacher",
              "distill err", "curvature", "pred. drift"]
    rows = []
    for name, r in runs.items():
        q = quality(r)
        rows.append([name, r["results"][0]["solver"]] + [significant(q.get(k)) for k in (1, 2, 4)]
                    + [significant(tq[top]) if name == "teacher" else "",
                       significant(q[1] / tq[top]) if 1 in q and tq.get(top) else "-",
                       significant(r.get("distill_error")), significant(r.get("curvature")),
                       significant(r.get("prediction_drift"))])
    floor = f"; two-sample floor {significant(floor_of(teacher))}" if teacher else ""
    blocks: list[Block] = [Heading(f"{data} ({metric}{floor})")] + ([Table(header, rows)] if rows else [])
    gone = [f"{root}/{name}/eval.json" for name in names if name not in runs]
    if gone:
        blocks.append(missing_files_note(gone))
    return blocks, runs


def lines_check(data: str, runs: dict[str, dict], adv_weight: float) -> str:
    """One list item: the lines student's W2 at NFE 1 against the teacher's at its largest NFE (target <= 1.3x) and
    OT-CFM's at NFE 1 (<= 1x)."""
    if not all(k in runs for k in ("teacher", "lines", "ot")):
        return f"- {data}: not checked (the teacher, lines or OT-CFM run did not finish)."
    tq, lq, oq = quality(runs["teacher"]), quality(runs["lines"]), quality(runs["ot"])
    top = max(tq)
    text = (f"- {data}: lines W2 at NFE 1 is {lq[1] / tq[top]:.3g}x the teacher's at NFE {top} (target <= 1.3: "
            f"**{'met' if lq[1] <= 1.3 * tq[top] else 'missed'}**) and {lq[1] / oq[1]:.3g}x OT-CFM's at NFE 1 "
            f"(target <= 1: **{'met' if lq[1] <= oq[1] else 'missed'}**)")
    if "lines_adv" in runs:
        aq = quality(runs["lines_adv"])[1]
        text += f"; with `--adv {adv_weight}`: {aq / tq[top]:.3g}x and {aq / oq[1]:.3g}x"
    return text + "."


def render_lines(ctx: Context, scale: Scale) -> list[Block]:
    blocks: list[Block] = []
    checks = []
    for d in scale.lines_sets:
        table, runs = students_table(ctx, d, LINES_SECTION_RUNS)
        blocks += table
        checks.append(lines_check(d, runs, scale.adv_weight))
        blocks += ctx.figure(f"figures/lines_{d}_lines_nfe4.png",
                             f"The lines student's paths with the line sampler at NFE 4; "
                             f"`straightflow plot {runs_folder(d)}/lines --kind trajectories --nfe 4`")
    blocks += [Heading("Against the targets"), Text("\n".join(checks)),
               Text("One evaluation decides each number: W2 between a few thousand points moves by a few hundredths "
                    "from draw to draw (the full-scale record, docs/experiments-full.md 4.1, averages ten).")]
    return blocks


SECTION = SectionSpec(
    "lines", "6. Teacher pairs: reflow, distillation, lines and OT-CFM on 2D data",
    "Per 2D set, at the baseline's budget: the rectified-flow teacher, `--method ot` (OT-CFM: exact minibatch "
    "OT), teacher pairs (Euler), then on those pairs `reflow` (2-rectified flow, from the teacher), `distill` (one "
    "step), `lines` (MSE endpoint loss), `lines_k2` (`--sampler-steps 2`) and `lines_adv` (`--adv`). `lines*` use the "
    "line sampler, the others Euler. \"distill err\" is the one-step MSE to the teacher's x* on held-out pairs; "
    "\"pred. drift\" how far x_hat moves along the run's own Euler path.",
    lines_jobs, render_lines)
