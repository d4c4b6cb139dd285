"""``straightflow report``: one command that reruns the CPU-scale reproduction of both papers.

:func:`run_report` runs the jobs of the sections in :data:`SECTIONS` at a scale of
:data:`SCALES` (``quick``, ``full``, ``smoke``) as ``straightflow`` / ``bench`` subprocesses,
resumably and several at once, and writes ``report.md`` and a self-contained
``report.html`` (docs/report.md).
"""

from .builder import ReportResult, run_report
from .document import Code, Document, Figure, Heading, Section, Table, Text, to_html, to_markdown
from .jobs import Job, JobResult, JobRun, run_jobs
from .sections import SCALES, SECTIONS, Context, Missing, Scale, SectionSpec

__all__ = ["run_report", "ReportResult", "SECTIONS", "SCALES", "Scale", "SectionSpec", "Context", "Missing", "Job",
           "JobResult", "JobRun", "run_jobs", "Document", "Section", "Heading", "Text", "Code", "Table", "Figure",
           "to_markdown", "to_html"]
