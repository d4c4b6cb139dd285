"""What a report section is (:class:`SectionSpec`) and what its renderer sees (:class:`Context`).

A section names the jobs it needs at a :class:`~.budgets.Scale` (command lines, see
:mod:`straightflow.report.jobs`) and renders their outputs (eval JSON, sweep JSON, script
output, figures) into report blocks (:mod:`straightflow.report.document`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..document import Block, Figure, Text
from ..jobs import Job, JobResult
from .budgets import Scale


class Missing(Exception):
    """A result file a renderer needs does not exist (its job did not finish)."""


@dataclass
class Context:
    """What a renderer sees: the report folder, the scale and every job's result."""

    out: Path
    scale: Scale
    results: dict[str, JobResult]
    jobs_at_once: int = 1

    def json(self, rel: str):
        """The JSON in ``rel``; for a command's captured stdout, its last line that is a JSON object or list."""
        text = self.text(rel)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            for line in reversed(text.splitlines()):
                if line.startswith(("{", "[")):
                    try:
                        return json.loads(line)
                    except json.JSONDecodeError:
                        break
            raise Missing(f"{rel} (unreadable: {exc})") from None

    def text(self, rel: str) -> str:
        """The text of ``rel`` (relative to the report folder); :class:`Missing` when it does not exist."""
        try:
            return (self.out / rel).read_text()
        except FileNotFoundError:
            raise Missing(rel) from None

    def has(self, rel: str) -> bool:
        return (self.out / rel).exists()

    def figure(self, rel: str, caption: str, name: str | None = None) -> list[Block]:
        """A figure block for ``rel`` (copied to ``figures/NAME`` when it lives elsewhere), or nothing when absent."""
        src = self.out / rel
        if not src.is_file():
            return []
        if name is not None and not rel.startswith("figures/"):
            dest = self.out / "figures" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            rel = f"figures/{name}"
        return [Figure(rel, caption)]

    def maybe_json(self, rel: str):
        """:meth:`json`, or None when the file is missing or unreadable (a table then shows the rows that exist)."""
        try:
            return self.json(rel)
        except Missing:
            return None

    def part(self, render: Callable[[], list[Block]], what: str = "") -> list[Block]:
        """``render()``'s blocks, or one note naming the missing input, so the rest of the section still renders."""
        try:
            return render()
        except Missing as exc:
            return [missing_note(str(exc), what)]

    def wall(self, job_id: str) -> float | None:
        """The wall time of job ``job_id`` in seconds (None when it did not run)."""
        r = self.results.get(job_id)
        return r.wall_s if r is not None else None


def missing_note(rel: str, what: str = "") -> Text:
    """The note shown where a part of a section could not be rendered."""
    return Text(f"**Not available{' (' + what + ')' if what else ''}:** `{rel}` is missing (its job did not finish; "
                "see the commands above).")


def missing_files_note(rels: list[str]) -> Text:
    """The note under a table that shows only the rows whose result files exist: the files that do not."""
    return Text(f"**Not available:** {', '.join(f'`{g}`' for g in rels)} (their jobs did not finish; see the "
                "commands above).")


@dataclass(frozen=True)
class SectionSpec:
    """One section of the report: its jobs at a scale and how their results render.

    ``jobs(scale)`` lists every job the section reads (shared ones included, dependencies
    first); ``render(ctx, scale)`` returns blocks and may raise :class:`Missing`.
    ``runs_at(scale)`` is False where the section is skipped (its ``skip_note`` is shown).
    """

    name: str
    title: str
    about: str
    jobs: Callable[[Scale], list[Job]]
    render: Callable[[Context, Scale], list[Block]]
    runs_at: Callable[[Scale], bool] = lambda scale: True
    skip_note: str = ""
