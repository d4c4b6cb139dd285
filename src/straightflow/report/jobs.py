"""The report's jobs: one command line each, run as subprocesses, resumable (``straightflow report``).

A :class:`Job` is a command line as the report shows it (``straightflow train ...`` or
``python bench/x.py ...``), the files it leaves behind and the jobs it runs after.
:func:`run_jobs` runs a set of them, ``jobs`` at a time, each with ``OMP_NUM_THREADS``
set to ``threads``, in the report folder (every path in a command is relative to it).

Resumable: a job that succeeded writes ``.jobs/ID.json`` (its command and wall time);
a later run skips it while that record names the same command and every output still
exists. An interrupted ``train`` job is resumed (``--resume`` is added when its run
directory already holds a config); ``pairs`` and ``sweep`` resume by rerunning the same
command; other jobs start again. Every job's stdout (unless redirected to a file) and
stderr go to ``logs/ID.log``, and ``jobs.jsonl`` gets one line per job and run: command,
status, wall time, exit status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StraightflowError

#: what a job can end as: ``ran`` and ``skipped`` (finished earlier) are done
DONE = ("ran", "skipped")


@dataclass(frozen=True)
class Job:
    """One command line of the report.

    ``argv`` starts with ``straightflow`` (run as ``python -m straightflow``) or ``python``
    (a ``bench/`` script of the repository, or ``-c``). ``stdout``: a file (relative to the
    report folder) that receives the command's stdout, written only when it succeeds.
    ``outputs``: files or folders that must exist for the job to count as done.
    ``after``: ids of jobs that must be done first. ``resume_dir``: a ``train --out``
    folder; a rerun after an interruption adds ``--resume``. ``requires``: importable
    modules the job needs (missing: the job is ``unavailable``, not failed).
    """

    id: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    stdout: str | None = None
    resume_dir: str | None = None
    requires: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command line as shown in the report (run inside the report folder)."""
        text = shlex.join(self.argv)
        return f"{text} > {shlex.quote(self.stdout)}" if self.stdout else text

    @property
    def log_name(self) -> str:
        return "logs/" + self.id.replace("/", "__") + ".log"


@dataclass
class JobResult:
    """How a job ended: ``ran``, ``skipped`` (done by an earlier run), ``failed``,
    ``unavailable`` (a requirement is missing: ``reason``) or ``blocked`` (a job before it did not finish)."""

    job: Job
    status: str
    wall_s: float | None = None
    returncode: int | None = None
    cpu_s: float | None = None  # user + system CPU seconds of the job's processes
    reason: str = ""
    log: str = ""
    finished: str = ""

    @property
    def done(self) -> bool:
        return self.status in DONE


@dataclass
class JobRun:
    """All jobs of one :func:`run_jobs` call, by id, and the wall time of the call."""

    results: dict[str, JobResult] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def executed(self) -> list[str]:
        return [k for k, r in self.results.items() if r.status in ("ran", "failed")]

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results.values() if r.status == "failed"]


#: a file every ``bench/`` folder of the repository holds: how :func:`bench_dir` recognises one
BENCH_MARKER = "bench_baseline.py"


def bench_dir(where: str | Path | None = None) -> Path | None:
    """The repository's ``bench/`` scripts that ``python bench/...`` jobs run, as an absolute folder; None when absent.

    ``where`` (``straightflow report --bench DIR``) when given, else ``bench/`` in the current
    directory: the bench scripts are not part of the installed package, so the report runs them
    from a clone of the repository (run it from the clone's root, or point ``--bench`` there).
    Jobs run inside the report folder, hence the absolute path. docs/report.md, "Optional parts".
    """
    folder = (Path(where) if where is not None else Path("bench")).resolve()
    return folder if (folder / BENCH_MARKER).is_file() else None


def _marker(out: Path, job: Job) -> Path:
    return out / ".jobs" / (job.id.replace("/", "__") + ".json")


def finished_record(out: Path, job: Job) -> dict | None:
    """The record of an earlier successful run of this very command whose outputs all still exist, else None."""
    path = _marker(out, job)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("command") != job.command:
        return None
    if not all((out / p).exists() for p in job.outputs + ((job.stdout,) if job.stdout else ())):
        return None
    return record


def _runs_bench_script(job: Job) -> bool:
    return job.argv[0] == "python" and len(job.argv) > 1 and job.argv[1].startswith("bench/")


def unavailable_reason(job: Job, bench: Path | None) -> str:
    """Why the job cannot run here ('' when it can); ``bench``: the :func:`bench_dir` found (None: none)."""
    missing = [m for m in job.requires if importlib.util.find_spec(m) is None]
    if missing:
        return f"needs {', '.join(missing)} (not installed; `make bench` installs torchcfm)"
    if _runs_bench_script(job) and bench is None:
        return ("needs the repository's bench/ scripts (run from the root of a clone of the repository, or pass "
                "--bench DIR)")
    return ""


def exec_argv(job: Job, out: Path, bench: Path | None = None) -> list[str]:
    """The argv actually run: ``straightflow`` as ``python -m straightflow``, ``bench/NAME`` as ``BENCH/NAME``
    (``bench``: the :func:`bench_dir` found), ``--resume`` added to a train job whose run directory already holds a
    config."""
    head, rest = job.argv[0], list(job.argv[1:])
    if head == "straightflow":
        argv = [sys.executable, "-m", "straightflow", *rest]
    elif head == "python":
        if _runs_bench_script(job):
            if bench is None:
                raise StraightflowError(f"report job {job.id}: no bench/ folder to run {rest[0]} from")
            rest[0] = str(bench / rest[0][len("bench/"):])
        argv = [sys.executable, *rest]
    else:
        raise StraightflowError(f"report job {job.id}: unknown program {head!r} (use straightflow or python)")
    if job.resume_dir and (out / job.resume_dir / "config.yaml").exists():
        argv.append("--resume")
    return argv


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else "(empty log)"


@dataclass
class _Workplace:
    """Where the jobs of one :func:`run_jobs` call run: the report folder, the bench scripts found, the
    environment, and the live child processes (under ``lock``; waited for on Ctrl-C)."""

    out: Path
    bench: Path | None
    env: dict
    procs: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _execute(job: Job, place: _Workplace) -> JobResult:
    """Run one job to its end: its log, its stdout file (moved in place only on success), its done record."""
    out, procs, lock = place.out, place.procs, place.lock
    log = out / job.log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    for p in job.outputs + ((job.stdout,) if job.stdout else ()):
        (out / p).parent.mkdir(parents=True, exist_ok=True)
    tmp = out / (job.stdout + ".partial") if job.stdout else None
    t0 = time.perf_counter()
    with open(log, "w") as log_fh:
        log_fh.write(f"$ {job.command}\n")
        log_fh.flush()
        stdout = open(tmp, "w") if tmp is not None else log_fh
        try:
            proc = subprocess.Popen(exec_argv(job, out, place.bench), cwd=out, env=place.env, stdout=stdout,
                                    stderr=log_fh, stdin=subprocess.DEVNULL)
            with lock:
                procs.add(proc)
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # the child's CPU time (its own waited-for children included)
                code = proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
            finally:
                with lock:
                    procs.discard(proc)
        finally:
            if tmp is not None:
                stdout.close()
    wall = time.perf_counter() - t0
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    if code != 0:
        return JobResult(job, "failed", wall, code, cpu, reason=_last_line(log), log=job.log_name, finished=finished)
    missing = [p for p in job.outputs if not (out / p).exists()]
    if missing:
        return JobResult(job, "failed", wall, code, cpu, reason=f"finished but did not write {missing[0]}",
                         log=job.log_name, finished=finished)
    if tmp is not None:
        os.replace(tmp, out / job.stdout)
    marker = _marker(out, job)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"id": job.id, "command": job.command, "wall_s": wall, "cpu_s": cpu,
                                  "finished": finished}, indent=1))
    return JobResult(job, "ran", wall, 0, cpu, log=job.log_name, finished=finished)


def check_graph(jobs: list[Job]) -> None:
    """Every dependency is an earlier job; ids are unique (a programming error otherwise)."""
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise ValueError(f"report job {job.id!r} listed twice")
        unknown = [d for d in job.after if d not in seen]
        if unknown:
            raise ValueError(f"report job {job.id!r} runs after {unknown[0]!r}, which is not listed before it")
        seen.add(job.id)


def _settled_result(job: Job, results: dict[str, JobResult], place: _Workplace) -> JobResult | None:
    """The result of a job whose dependencies have ended, when it needs no process: ``blocked`` (a dependency
    did not finish), ``skipped`` (done by an earlier run) or ``unavailable``; None when it must run."""
    bad = next((results[d] for d in job.after if not results[d].done), None)
    if bad is not None:
        return JobResult(job, "blocked", reason=f"{bad.job.id} {bad.status}")
    record = finished_record(place.out, job)
    if record is not None:
        return JobResult(job, "skipped", record.get("wall_s"), 0, record.get("cpu_s"), log=job.log_name,
                         finished=record.get("finished", ""))
    reason = unavailable_reason(job, place.bench)
    return JobResult(job, "unavailable", reason=reason) if reason else None


def run_jobs(jobs: list[Job], out: str | Path, *, n_jobs: int = 1, threads: int = 1, progress: bool = True,
             bench: str | Path | None = None) -> JobRun:
    """Run ``jobs`` (listed dependencies first), ``n_jobs`` at once; returns every job's result.

    Jobs done by an earlier run are skipped; a failed job's dependents are ``blocked`` and
    the rest go on. Never raises for a failed job: the caller reports :attr:`JobRun.failed`.
    ``bench``: where the ``python bench/...`` jobs' scripts are (:func:`bench_dir`).
    """
    from tqdm import tqdm

    out = Path(out)
    check_graph(jobs)
    if n_jobs < 1 or threads < 1:
        raise StraightflowError(f"report: --jobs and --threads must be >= 1, got {n_jobs} and {threads}")
    place = _Workplace(out, bench_dir(bench),
                       dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)))
    run = JobRun()
    pending = list(jobs)
    running: dict[Future, Job] = {}
    t_start = time.perf_counter()
    bar = tqdm(total=len(jobs), disable=not progress, desc="report jobs", unit="job", dynamic_ncols=True)
    log_path = out / "jobs.jsonl"

    def finish(result: JobResult) -> None:
        run.results[result.job.id] = result
        bar.update(1)
        entry = {"job": result.job.id, "command": result.job.command, "status": result.status, "wall_s": result.wall_s,
                 "cpu_s": result.cpu_s, "returncode": result.returncode, "log": result.log, "reason": result.reason,
                 "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        if progress and result.status != "skipped":
            wall = f" {result.wall_s:.0f} s" if result.wall_s is not None else ""
            why = f" ({result.reason})" if result.reason else ""
            bar.write(f"report: {result.status}{wall}: {result.job.command}{why}")

    pool = ThreadPoolExecutor(max_workers=n_jobs)
    try:
        while pending or running:
            launched = True
            while launched:  # settle every job that needs no process, launch what fits
                launched = False
                for job in list(pending):
                    if not all(d in run.results for d in job.after):
                        continue
                    result = _settled_result(job, run.results, place)
                    if result is None and len(running) >= n_jobs:
                        continue
                    pending.remove(job)
                    launched = True
                    if result is not None:
                        finish(result)
                    else:
                        running[pool.submit(_execute, job, place)] = job
            if not running:
                if pending:  # cannot happen with a checked graph
                    raise RuntimeError(f"report: jobs left that can never run: {[j.id for j in pending]}")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                running.pop(fut)
                finish(fut.result())
    except KeyboardInterrupt:
        with place.lock:
            children = list(place.procs)
        for proc in children:  # they got the same SIGINT (one process group): give them time to checkpoint
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    run.wall_s = time.perf_counter() - t_start
    return run
