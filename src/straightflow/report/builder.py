"""``straightflow report``: run the sections' jobs, then write ``report.md`` and ``report.html``.

    straightflow report --quick --out runs/report-quick            # under 20 minutes on 2 cores
    straightflow report --full --out runs/report --docs docs/experiments.md

See docs/report.md. Everything is regenerated from the jobs' outputs on every call
(rendering takes seconds); only the jobs themselves are reused.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import StraightflowError
from .document import Code, Document, Heading, Section, Table, Text, to_html, to_markdown
from .jobs import Job, JobRun, run_jobs
from .sections import Context, Missing, Scale, SectionSpec, check_scale, select_sections

SETTINGS_FILE = "report-settings.json"

CONVENTIONS = (
    "Quality on 2D data is the exact W2 (POT) between the generated samples and as many held-out points, beside the two-sample "
    "floor (W2 between two independent true samples of that size). Images use a Fréchet distance in the `digits-classifier-v1` "
    "feature space (a classifier trained on the digits training split): **not FID**, and not comparable with the papers' numbers. "
    "Solvers are Euler unless said otherwise (`lines*` runs: the line sampler); NFE is what the solver counted. t = 0 is data, t = 1 noise."
)


@dataclass
class ReportResult:
    """Where the report went and how its jobs ended."""

    out: Path
    markdown: Path
    html: Path
    jobs: JobRun
    docs: Path | None = None


def default_jobs() -> int:
    """Jobs at once by default: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return "not a git checkout"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head}{' + local changes' if dirty else ''}" if head else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_rows(n_jobs: int, threads: int) -> list[list[str]]:
    from .. import __version__

    return [["CPU", f"{_cpu_model()}, {os.cpu_count()} logical cores"],
            ["jobs at once x threads each", f"{n_jobs} x {threads} (`OMP_NUM_THREADS={threads}`)"],
            ["OS", platform.platform()], ["Python", platform.python_version()],
            ["straightflow", f"{__version__}, commit {_git_commit()}"],
            ["torch", _version("torch")], ["numpy", _version("numpy")], ["POT", _version("POT")], ["scipy", _version("scipy")],
            ["torchcfm (the peer)", _version("torchcfm")]]


def _status_comment(r) -> str:
    if r is None:
        return "not run"
    cpu = f", CPU {r.cpu_s:.0f} s" if r.cpu_s is not None else ""
    if r.status == "ran":
        return f"{r.wall_s:.0f} s{cpu}"
    if r.status == "skipped":
        return f"reused ({r.wall_s:.0f} s{cpu} when it ran)" if r.wall_s is not None else "reused"
    if r.status == "failed":
        return f"FAILED (exit {r.returncode}), see {r.log}"
    return f"{r.status}: {r.reason}"


def _render_section(spec: SectionSpec, scale: Scale, ctx: Context, jobs: list[Job]) -> tuple[Section, dict]:
    section = Section(spec.name, spec.title, [Text(spec.about)])
    if not spec.runs_at(scale):
        section.blocks.append(Text(f"**{spec.skip_note}**"))
        return section, {"jobs": 0, "wall": 0.0, "cpu": 0.0, "state": f"skipped at --{scale.name}"}
    results = [ctx.results.get(j.id) for j in jobs]
    wall = sum(r.wall_s or 0.0 for r in results if r is not None and r.done)
    cpu = sum(r.cpu_s or 0.0 for r in results if r is not None and r.done)
    lines = [f"{j.command}  # {_status_comment(r)}" for j, r in zip(jobs, results)]
    section.blocks += [Text(f"Commands ({len(jobs)} job{'s' * (len(jobs) != 1)}: {wall / 60:.1f} min of job wall time, {cpu / 60:.1f} min of CPU time; "
                            "run inside the report folder):"), Code("\n".join(lines), "bash")]
    not_done = [r for r in results if r is None or not r.done]
    if not_done:
        section.blocks.append(Text("**Incomplete:** " + "; ".join(f"`{r.job.id}` {r.status}" + (f" ({r.reason})" if r.reason else "")
                                                                 for r in not_done if r is not None) + "."))
    try:
        section.blocks += [b for b in spec.render(ctx, scale) if not (isinstance(b, Text) and not b.text)]
    except Missing as exc:
        section.blocks.append(Text(f"**Results not available:** `{exc}` is missing (a job above did not finish)."))
    state = "complete" if not not_done else f"{len(not_done)} of {len(jobs)} jobs not done"
    return section, {"jobs": len(jobs), "wall": wall, "cpu": cpu, "state": state}


def _check_settings(out: Path, scale: Scale) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            saved = json.loads(path.read_text()).get("scale")
        except (OSError, json.JSONDecodeError, AttributeError):
            saved = None
        if saved is not None and saved != scale.name:
            raise StraightflowError(f"report --out {out} holds a --{saved} report; use another --out for --{scale.name} (or remove {out})")
    path.write_text(json.dumps({"scale": scale.name}) + "\n")


def collect_jobs(specs: list[SectionSpec], scale: Scale) -> tuple[list[Job], dict[str, list[Job]]]:
    """Every selected section's jobs, each once (shared ones by id), dependencies first; and each section's own list."""
    merged: dict[str, Job] = {}
    per_section: dict[str, list[Job]] = {}
    for spec in specs:
        if not spec.runs_at(scale):
            per_section[spec.name] = []
            continue
        jobs = spec.jobs(scale)
        for job in jobs:
            if job.id in merged and merged[job.id] != job:
                raise ValueError(f"report job {job.id!r} is defined twice with different commands:\n{merged[job.id].command}\n{job.command}")
            merged.setdefault(job.id, job)
        per_section[spec.name] = jobs
    return list(merged.values()), per_section


def _copy_to_docs(markdown: str, out: Path, docs: Path) -> None:
    import re

    docs.parent.mkdir(parents=True, exist_ok=True)
    for rel in sorted(set(re.findall(r"\]\((figures/[^)\s]+)\)", markdown))):
        dest = docs.parent / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / rel, dest)
    docs.write_text(markdown)


def run_report(out: str | Path, scale: str | Scale = "quick", sections: str | None = None, n_jobs: int | None = None,
               threads: int | None = None, docs: str | Path | None = None, progress: bool = True,
               table: list[SectionSpec] | None = None, command: str | None = None) -> ReportResult:
    """Run (or reuse) every job of the selected sections and write ``OUT/report.md`` and ``OUT/report.html``.

    ``sections``: comma-separated names (default all); ``n_jobs`` jobs at once with ``threads``
    threads each (default: one job per core, 1 thread); ``docs``: also write the Markdown to this
    file, its figures into ``figures/`` beside it (only when every job finished). ``table``: a
    section table of your own instead of :data:`SECTIONS`. A failed job does not stop the others;
    the report is written with what finished, then a one-line error names the failed command and
    its log.
    """
    scale = check_scale(scale) if isinstance(scale, str) else scale
    specs = select_sections(sections, table)
    n_jobs = default_jobs() if n_jobs is None else n_jobs
    threads = max(1, (os.cpu_count() or 1) // n_jobs) if threads is None else threads
    if n_jobs < 1 or threads < 1:
        raise StraightflowError(f"report: --jobs and --threads must be >= 1, got {n_jobs} and {threads}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, scale)
    jobs, per_section = collect_jobs(specs, scale)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    run = run_jobs(jobs, out, n_jobs=n_jobs, threads=threads, progress=progress)

    ctx = Context(out, scale, run.results, jobs_at_once=n_jobs)
    rendered, summary = [], []
    for spec in specs:
        section, info = _render_section(spec, scale, ctx, per_section[spec.name])
        rendered.append(section)
        summary.append([f"[{spec.title.replace('`', '')}](#{section.anchor})", str(info["jobs"]), f"{info['wall'] / 60:.1f}", f"{info['cpu'] / 60:.1f}", info["state"]])
    command = command or shlex.join(["straightflow", "report", f"--{scale.name}", "--out", str(out)] + (["--sections", sections] if sections else []))
    ran = sum(1 for r in run.results.values() if r.status == "ran")
    reused = sum(1 for r in run.results.values() if r.status == "skipped")
    total_cpu = sum(r.cpu_s or 0.0 for r in run.results.values() if r.done)
    intro = [Text(f"Generated by `{command}` (started {started}). Every table and figure below was made by the commands listed in its "
                  "section, run inside the report folder: their paths are relative to it, `straightflow` is the installed command "
                  "(`python -m straightflow`) and `python bench/...` the repository's scripts. Rerun the same command to regenerate: "
                  "finished jobs are reused, interrupted ones resumed." + (" This page is that report's Markdown; edit the generator "
                  "(`src/straightflow/report/`), not this page." if docs else "")),
             Text(CONVENTIONS),
             Heading("Machine, versions and seeds", 2), Table(["what", "value"], machine_rows(n_jobs, threads)),
             Text("Seeds: every command runs with its default seed 0 — training (`train --seed 0`, which also fixes the data split), "
                  "teacher pairs (`pairs --seed 0`) and evaluation (`eval --seed 0`: sampling noise, held-out reference and floor, each "
                  "from its own named noise stream)."),
             Heading(f"Budgets (--{scale.name})", 2), Table(["budget", "value"], [list(r) for r in scale.settings()]),
             Heading("Sections", 2), Table(["section", "jobs", "job wall time (min)", "job CPU time (min)", "state"], summary),
             Text(f"This run: {run.wall_s / 60:.1f} min wall, {ran} jobs run, {reused} reused from earlier runs "
                  f"({len(run.results)} in all; log: `jobs.jsonl`). The jobs' CPU time adds up to {total_cpu / 60:.1f} min, shared out "
                  f"over {n_jobs} job slots.")]
    doc = Document(f"straightflow: the papers' experiments at CPU scale (--{scale.name})", intro, rendered)
    markdown = to_markdown(doc)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown)
    html_path.write_text(to_html(doc, out))

    docs_path = None
    if run.failed:
        first = run.failed[0]
        more = f"; {len(run.failed) - 1} more failed (see {out / 'jobs.jsonl'})" if len(run.failed) > 1 else ""
        raise StraightflowError(f"report: `{first.job.command}` failed (exit {first.returncode}: {first.reason}); see {out / first.log}{more}; "
                                f"the report in {md_path} shows what finished")
    if docs is not None:
        incomplete = [r.job.id for r in run.results.values() if r.status not in ("ran", "skipped", "unavailable")]
        if incomplete:
            raise StraightflowError(f"report --docs: {len(incomplete)} jobs did not finish (e.g. {incomplete[0]}); {docs} was not written")
        docs_path = Path(docs)
        _copy_to_docs(markdown, out, docs_path)
    return ReportResult(out, md_path, html_path, run, docs_path)
