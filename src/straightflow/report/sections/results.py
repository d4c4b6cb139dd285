"""Reading the jobs' results, for every section: quality per NFE, the floor, an eval table, pairs/s."""

from __future__ import annotations

import re

from ..document import Block, Code, Text
from .spec import Context


def quality(report: dict) -> dict[int, float]:
    """An eval report's quality (its ``quality_metric``: W2 for 2D sets, FD for images) by requested NFE."""
    key = report.get("quality_metric", "w2")
    return {r["nfe_requested"]: r[key] for r in report["results"] if isinstance(r.get(key), (int, float))}


def floor_of(report: dict) -> float | None:
    """An eval report's two-sample floor of its quality metric (docs/evaluation.md)."""
    return report.get(report.get("quality_metric", "w2") + "_floor")


def eval_block(ctx: Context, rel: str, title: str) -> list[Block]:
    """An eval report as ``straightflow eval`` prints it (format_table), under the command that made it."""
    from ...evaluate import format_table

    return [Text(f"{title} (`{rel}`):"), Code(format_table(ctx.json(rel)))]


def pairs_rate(ctx: Context, job_id: str) -> float | None:
    """Pairs/s printed by a ``straightflow pairs`` job (its log), when it generated pairs."""
    r = ctx.results.get(job_id)
    if r is None or not ctx.has(r.job.log_name):
        return None
    m = re.search(r"reused, ([0-9.]+) pairs/s\)", ctx.text(r.job.log_name))
    return float(m.group(1)) if m else None
