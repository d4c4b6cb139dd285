"""Section 9, ``curvature-lines``: a beta = 10 curvature teacher for the lines method.

Pairs from a beta = 10 curvature teacher at a quarter of the baseline teacher's NFE against the
baseline teacher's pairs at full NFE, each training a ``lines`` student at the same budget: the
students' quality at NFE 1 (mean and sd over sampling seeds) and what each set of pairs cost.
:func:`pairs_verdict` says whether the cheaper pairs cost quality; docs/report.md states the rule.
"""

from __future__ import annotations

import math

from ...formatting import significant, three_significant_digits, whole_number
from ..document import Block, Heading, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import PLAIN_LINES, beta10_teacher_jobs, eval_job, pairs_job, runs_folder, student_jobs, train_job
from .results import pairs_rate, quality
from .spec import Context, SectionSpec, missing_files_note

#: the verdict: the cheaper pairs cost quality when their student's W2 at NFE 1 is worse by more than
#: this share of the baseline-pairs student's W2 and by more than twice the two students' combined seed sd
VERDICT_SHARE = 0.10


def curvature_lines_jobs(scale: Scale) -> list[Job]:
    """Per set: the baseline teacher's lines student, the beta = 10 teacher, its pairs at a quarter NFE, their lines
    student, and both students evaluated over the scale's verdict seeds."""
    jobs: list[Job] = []
    q = scale.quarter_nfe
    for d in scale.curvature_lines_sets:
        root = runs_folder(d)
        jobs += student_jobs(scale, d, ("lines",))
        jobs += beta10_teacher_jobs(scale, d)
        jobs.append(eval_job(f"{root}/teacher_beta10", f"{q},{scale.teacher_nfe}", scale=scale, data=d,
                             file="eval_pairs.json"))
        pairs = f"{root}/pairs_beta10_nfe{q}"
        jobs.append(pairs_job(f"{root}/teacher_beta10", pairs, scale.pairs, q))
        student = f"{root}/lines_beta10_nfe{q}"
        jobs += [train_job(student, *PLAIN_LINES, "--pairs", pairs, scale=scale, data=d, after=(pairs,)),
                 eval_job(student, "1,2,4", scale=scale, data=d)]
        seeds = ("--seeds", scale.verdict_seeds)
        jobs += [eval_job(run, "1", scale=scale, data=d, file="eval_seeds.json", extra=seeds)
                 for run in (f"{root}/lines", student)]
    return jobs


def pairs_verdict(base: tuple[float, float], cheap: tuple[float, float],
                  share: float = VERDICT_SHARE) -> tuple[str, float]:
    """(verdict, tolerance) for two students' quality (mean, sd over sampling seeds; lower is better).

    The tolerance is ``max(share * base mean, 2 * sqrt(sd_base^2 + sd_cheap^2))``: a difference
    within it is no measurable cost; beyond it the cheaper pairs cost quality (or, below, gain it).
    """
    (b, sb), (c, sc) = base, cheap
    tol = max(share * b, 2 * math.hypot(sb, sc))
    if c > b + tol:
        return "cost quality", tol
    if c < b - tol:
        return "do not cost quality (their student is better)", tol
    return "do not cost quality", tol


def seed_quality(rep: dict | None) -> tuple[float, float] | None:
    """(mean, sd) of the quality at NFE 1 from an ``eval --seeds K`` report."""
    if rep is None:
        return None
    key = rep.get("quality_metric", "w2")
    row = next((r for r in rep["results"] if r.get("nfe_requested") == 1), None)
    if row is None or not isinstance(row.get(key), (int, float)):
        return None
    return float(row[key]), float(row.get(f"{key}_sd") or 0.0)


def pair_seconds(ctx: Context, pairs: str, n: int) -> tuple[float | None, str]:
    """Seconds the pairs took to generate (n / the pairs/s the command printed), else its job's wall time; and which."""
    rate = pairs_rate(ctx, pairs)
    if rate:
        return n / rate, "generation"
    return ctx.wall(pairs), "job wall"


def _set_blocks(ctx: Context, scale: Scale, data: str) -> list[Block]:
    """One set's table (a row per teacher whose results exist), the verdict, and the missing files."""
    q, root = scale.quarter_nfe, runs_folder(data)
    rows, stats, gone = [], {}, []
    for key, label, teacher_eval, nfe, pairs, student in (
            ("base", "baseline (`rectified`)", f"{root}/teacher/eval.json", scale.teacher_nfe, f"{root}/pairs",
             f"{root}/lines"),
            ("cheap", "beta = 10 (`curvature`)", f"{root}/teacher_beta10/eval_pairs.json", q,
             f"{root}/pairs_beta10_nfe{q}", f"{root}/lines_beta10_nfe{q}")):
        t, s, seeds = (ctx.maybe_json(rel)
                       for rel in (teacher_eval, f"{student}/eval.json", f"{student}/eval_seeds.json"))
        gone += [rel
                 for rel, v in ((teacher_eval, t), (f"{student}/eval.json", s), (f"{student}/eval_seeds.json", seeds))
                 if v is None]
        seconds, what = pair_seconds(ctx, pairs, scale.pairs)
        sq, mean_sd = quality(s) if s else {}, seed_quality(seeds)
        stats[key] = (seconds, what, mean_sd)
        if t is None and s is None and seconds is None:
            continue
        rows.append([label, str(nfe), significant(quality(t).get(nfe)) if t else "-",
                     three_significant_digits(ctx.wall(pairs)), whole_number(pairs_rate(ctx, pairs)),
                     three_significant_digits(seconds) if what == "generation" else "-",
                     significant(sq.get(1)), significant(sq.get(2)), significant(sq.get(4)),
                     f"{mean_sd[0]:.4g} ± {mean_sd[1]:.2g}" if mean_sd else "-",
                     significant(s.get("distill_error")) if s else "-"])
    blocks: list[Block] = [Heading(f"{data}: {scale.pairs:,} pairs each")]
    if rows:
        blocks.append(Table(["teacher", "pairs' Euler NFE", "teacher W2 at that NFE", "pairs job wall s", "pairs/s",
                             "generation s", "lines W2 NFE 1", "NFE 2", "NFE 4",
                             f"NFE 1, mean ± sd over {scale.verdict_seeds} seeds", "distill err"], rows))
    blocks.append(Text(verdict_text(stats, scale)))
    if gone:
        blocks.append(missing_files_note(gone))
    return blocks


def verdict_text(stats: dict, scale: Scale) -> str:
    """The verdict sentence from each side's (pair seconds, how they were measured, (mean, sd) at NFE 1)."""
    (tb, wb, qb), (tc, wc, qc) = stats["base"], stats["cheap"]
    if qb is None or qc is None:
        return "No verdict: a student's seed evaluation did not finish."
    verdict, tol = pairs_verdict(qb, qc)
    text = (f"The lines student trained on the beta = 10 teacher's pairs at Euler {scale.quarter_nfe} scores W2 "
            f"{qc[0]:.4g} ± {qc[1]:.2g} at NFE 1 against {qb[0]:.4g} ± {qb[1]:.2g} for the baseline teacher's pairs at "
            f"Euler {scale.teacher_nfe} (ratio {qc[0] / qb[0]:.3g}; difference {qc[0] - qb[0]:+.3g}, tolerance "
            f"{tol:.3g}): **the cheaper pairs {verdict}**.")
    if tb and tc:
        kind = "generation" if wb == wc == "generation" else "job wall time"
        text += (f" Pair {kind}: {three_significant_digits(tc)} s vs {three_significant_digits(tb)} s "
                 f"({tb / tc:.3g}x {'faster' if tc < tb else 'slower'}).")
    return text


def render_curvature_lines(ctx: Context, scale: Scale) -> list[Block]:
    blocks = [b for d in scale.curvature_lines_sets for b in _set_blocks(ctx, scale, d)]
    blocks.append(Text("The verdict: the cheaper pairs **cost quality** when their student's mean W2 at NFE 1 is "
                       f"worse than the baseline-pairs student's by more than the tolerance, max({VERDICT_SHARE:.0%} "
                       "of the baseline-pairs student's W2, twice the two students' combined sd over "
                       f"{scale.verdict_seeds} sampling seeds). Each student is one training run (seed 0): the sd is "
                       "sampling noise only; the 10% floor stands in for the training-seed noise this does "
                       "not measure."))
    return blocks


SECTION = SectionSpec(
    "curvature-lines", "9. A curvature teacher for the lines method",
    "Pairs from a beta = 10 curvature teacher at a quarter of the baseline teacher's NFE against the baseline "
    "teacher's pairs at full NFE, each training a `lines` student (the same budget): the student's quality at NFE 1 "
    "and what each set of pairs cost to generate.",
    curvature_lines_jobs, render_curvature_lines)
