"""What ``straightflow report`` reproduces: the static table :data:`SECTIONS`, one module per section.

Each section module (``baseline``, ``digits_baseline``, ``curvature``, ``encoder``,
``digits_curvature``, ``lines``, ``digits_lines``, ``table1``, ``curvature_lines``,
``ot_dimension``, ``any_teacher``, ``conditional``) defines its :class:`SectionSpec` as
``SECTION``: the jobs it needs at a :class:`Scale` and how their outputs render. What they
share lives beside them: the budgets (:mod:`.budgets`: :class:`Scale`, :data:`SCALES`), the
section type and renderer context (:mod:`.spec`), the shared command lines (:mod:`.commands`:
jobs used by several sections have one id and one command, and run once) and the readers of
results (:mod:`.results`). docs/report.md describes every section.
"""

from __future__ import annotations

from ...errors import StraightflowError
from . import (
    any_teacher,
    baseline,
    conditional,
    curvature,
    curvature_lines,
    digits_baseline,
    digits_curvature,
    digits_lines,
    encoder,
    lines,
    ot_dimension,
    table1,
)
from .budgets import FOUR_2D_SETS, SCALES, Scale, check_scale
from .spec import Context, Missing, SectionSpec, missing_note

#: the report's sections, in page order (``--sections`` takes their names)
SECTIONS: list[SectionSpec] = [
    baseline.SECTION,
    digits_baseline.SECTION,
    curvature.SECTION,
    encoder.SECTION,
    digits_curvature.SECTION,
    lines.SECTION,
    digits_lines.SECTION,
    table1.SECTION,
    curvature_lines.SECTION,
    ot_dimension.SECTION,
    any_teacher.SECTION,
    conditional.SECTION,
]


def select_sections(names: str | None, table: list[SectionSpec] | None = None) -> list[SectionSpec]:
    """The sections named in ``names`` (comma-separated; None: all), in table order; an unknown name is an error."""
    table = SECTIONS if table is None else table
    if names is None:
        return list(table)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {s.name for s in table}
    bad = [n for n in wanted if n not in known]
    if bad or not wanted:
        what = f"unknown section {bad[0]!r}" if bad else "name at least one section"
        raise StraightflowError(f"report --sections: {what}; use: {', '.join(s.name for s in table)}")
    return [s for s in table if s.name in wanted]


__all__ = ["SECTIONS", "SCALES", "FOUR_2D_SETS", "Scale", "SectionSpec", "Context", "Missing", "check_scale",
           "missing_note", "select_sections"]
