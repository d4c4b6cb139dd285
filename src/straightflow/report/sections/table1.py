"""Section 8, ``table1``: distilling a baseline teacher against a beta = 10 curvature teacher (the curvature paper's
Table 1).

For each teacher: the smallest Euler NFE at which its quality is within 1.1x of the baseline
teacher's at its largest NFE ("NFE to reach"), and a one-step ``distill`` student trained on
its pairs (the same pairs' NFE for both).
"""

from __future__ import annotations

from ...formatting import significant
from ..document import Block, Heading, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import beta10_teacher_jobs, eval_job, pairs_job, pairs_nfe, runs_folder, student_jobs, train_job
from .results import quality
from .spec import Context, SectionSpec, missing_files_note


def table1_sets(scale: Scale) -> list[str]:
    """The scale's Table 1 sets, digits dropped where the scale has none."""
    return [d for d in scale.table1_sets if scale.digits or d != "digits"]


def table1_jobs(scale: Scale) -> list[Job]:
    """Per set: both teachers evaluated at every Table 1 NFE, the beta = 10 teacher's pairs and both distill
    students."""
    jobs: list[Job] = []
    for d in table1_sets(scale):
        root, nfe = runs_folder(d), pairs_nfe(scale, d)
        n = scale.digits_pairs if d == "digits" else scale.pairs
        jobs += student_jobs(scale, d, ("distill",))
        jobs += beta10_teacher_jobs(scale, d)
        for t in ("teacher", "teacher_beta10"):
            jobs.append(eval_job(f"{root}/{t}", scale.table1_nfe, scale=scale, data=d, file="eval_nfe.json"))
        jobs.append(pairs_job(f"{root}/teacher_beta10", f"{root}/pairs_beta10", n, nfe))
        jobs += [train_job(f"{root}/distill_beta10", "--method", "distill", "--pairs", f"{root}/pairs_beta10",
                           scale=scale, data=d, after=(f"{root}/pairs_beta10",)),
                 eval_job(f"{root}/distill_beta10", "1,2,4", scale=scale, data=d)]
    return jobs


def _table1_blocks(ctx: Context, data: str) -> list[Block]:
    """One set's table (NFE to reach, quality per NFE, the students), the reproduced-or-not line, and missing files."""
    root = runs_folder(data)
    base_rep = ctx.maybe_json(f"{root}/teacher/eval_nfe.json")
    base = quality(base_rep) if base_rep else {}
    target = 1.1 * base[max(base)] if base else None
    rows, reach, gone = [], {}, []
    for t, student in (("teacher", "distill"), ("teacher_beta10", "distill_beta10")):
        rep, s = ctx.maybe_json(f"{root}/{t}/eval_nfe.json"), ctx.maybe_json(f"{root}/{student}/eval.json")
        gone += [rel for rel, v in ((f"{root}/{t}/eval_nfe.json", rep), (f"{root}/{student}/eval.json", s))
                 if v is None]
        q = quality(rep) if rep else {}
        reach[t] = min((k for k, v in q.items() if v <= target), default=None) if q and target is not None else None
        if not q and s is None:
            continue
        reached = str(reach[t] or f">{max(q)}") if q and target is not None else "-"
        rows.append([t, reached, ", ".join(f"{k}:{v:.3g}" for k, v in sorted(q.items())) or "-",
                     significant(s.get("distill_error")) if s else "-", significant(quality(s).get(1)) if s else "-"])
    top = f" at NFE {max(base)} ({significant(target)})" if base else ""
    blocks: list[Block] = [Heading(f"Table 1 on {data}: NFE to reach 1.1 x the baseline's quality{top}")]
    if rows:
        blocks.append(Table(["teacher", "NFE to reach", "quality per NFE", "distill err", "student NFE 1"], rows))
    if base and f"{root}/teacher_beta10/eval_nfe.json" not in gone:
        fewer = reach["teacher_beta10"] is not None and (reach["teacher"] is None
                                                         or reach["teacher_beta10"] < reach["teacher"])
        blocks.append(Text(f"Fewer steps for the beta = 10 teacher: **{'reproduced' if fewer else 'not reproduced'}** "
                           f"({reach['teacher_beta10'] or '-'} vs {reach['teacher'] or '-'})."))
    if gone:
        blocks.append(missing_files_note(gone))
    return blocks


def render_table1(ctx: Context, scale: Scale) -> list[Block]:
    return [b for d in table1_sets(scale) for b in _table1_blocks(ctx, d)]


SECTION = SectionSpec(
    "table1", "8. Distilling a baseline vs a beta = 10 teacher (the curvature paper's Table 1)",
    "\"NFE to reach\" is the smallest Euler NFE at which a teacher is within 1.1x of the baseline teacher's quality "
    "at its largest NFE; each teacher's pairs (the same NFE for both) train a one-step `distill` student.",
    table1_jobs, render_table1)
