"""``straightflow demo``: the project's story on one 2D set, in a few minutes on 2 CPU cores.

Trains the rectified-flow baseline, draws teacher pairs from it, trains the
curvature method (beta = 10) and a lines student of the baseline's pairs, and
evaluates all three at a few NFEs (W2 beside the two-sample floor). Writes into
``OUT``: ``story.png`` (their reverse paths side by side, W2 vs NFE),
``story.md`` (the quality table, also printed), ``trajectories.png`` (the
baseline's reverse paths), ``quality_vs_nfe.txt`` (each run's full ``eval``
table) and ``report.json`` (each run's ``eval`` report).

The runs and the pairs live in ``OUT/runs`` and are recreated by every demo: the
demo marks that folder (``OUT/runs/.straightflow-demo``), holds its lock while it
works, and empties only a folder so marked that holds nothing but what the demo
writes; any other ``OUT/runs`` is left alone with a one-line error. ``OUT/run``,
the single run of an older demo, is removed when the older demo made it and is
left alone otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import torch
import yaml

from ..data import load_data
from ..errors import StraightflowError
from ..evaluate import evaluate, format_table
from ..locks import LOCK_NAME, FolderLock
from ..plots import plot_story, plot_trajectories
from ..run import Run
from ..training import train
from .pairs import pairs_from_run

#: the file that marks ``OUT/runs`` (and, before, ``OUT/run``) as the demo's own
DEMO_MARKER = ".straightflow-demo"
#: the NFEs of the quality-vs-NFE panel and of ``report.json``; the table shows :data:`TABLE_NFES`
NFES = (1, 2, 4, 8, 16, 100)
TABLE_NFES = (1, 2, 4, 100)
#: the demo's three runs in ``OUT/runs``, in the order they are shown
RUN_NAMES = ("baseline", "curvature", "lines")
PAIRS_NAME = "pairs"
#: what a run directory of the demo holds
_RUN_ENTRIES = {"config.yaml", "stats.jsonl", "checkpoints", LOCK_NAME}
#: what the demo's pair folder holds (shards, their records, an atomic write's temporary file)
_PAIR_ENTRY = re.compile(r"\.lock|manifest\.json|settings\.json|shard-\d+\.json|shard-\d+\.\w+\.npy|\..+\.tmp-\d+")
#: ``OUT/run``: the single run of the demo before it trained three
_OLD_RUN_ENTRIES = {DEMO_MARKER, *_RUN_ENTRIES}
BATCH_SIZE = 256


def _stage(i: int, text: str) -> None:
    print(f"straightflow demo [{i}/6] {text}", flush=True)


# ---------------------------------------------------------------- the demo's folders
def _foreign_entry(runs: Path) -> Path | None:
    """The first thing in ``runs`` the demo did not write (None: all of it is the demo's)."""
    for entry in sorted(runs.iterdir()):
        if entry.name in (DEMO_MARKER, LOCK_NAME):
            continue
        if entry.name not in (*RUN_NAMES, PAIRS_NAME) or entry.is_symlink() or not entry.is_dir():
            return entry
        for inner in sorted(entry.iterdir()):
            if not (inner.name in _RUN_ENTRIES if entry.name != PAIRS_NAME else _PAIR_ENTRY.fullmatch(inner.name)):
                return inner
    return None


def _claim_runs(out: Path, runs: Path) -> FolderLock:
    """Lock ``runs``, empty it and mark it as the demo's; a folder the demo did not make is an error."""
    if runs.is_symlink() or (runs.exists() and not runs.is_dir()):
        raise StraightflowError(f"demo --out {out}: {runs} is not a folder the demo made; choose another --out or "
                                f"remove {runs}")
    if runs.is_dir():
        names = {p.name for p in runs.iterdir()}
        foreign = _foreign_entry(runs)
        if foreign is not None or (names - {LOCK_NAME} and DEMO_MARKER not in names):
            what = f" ({foreign})" if foreign is not None else " (it has no demo marker)"
            raise StraightflowError(f"demo --out {out}: {runs} holds files the demo did not make{what}; choose another "
                                    f"--out or remove {runs}")
    lock = FolderLock(runs, "the demo's run folder").acquire()  # a second demo on the same OUT stops here
    try:
        for entry in runs.iterdir():
            if entry.name != LOCK_NAME:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        (runs / DEMO_MARKER).write_text("made by `straightflow demo`: emptied and refilled by the next demo\n")
    except BaseException:
        lock.release()
        raise
    return lock


def _made_by_an_older_demo(run_dir: Path) -> bool:
    """A run written before the marker existed: the demo's fixed settings in config.yaml."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (isinstance(cfg, dict) and cfg.get("method") == "rectified" and cfg.get("batch_size") == 256
            and cfg.get("ckpt_every") == cfg.get("steps") and Path(str(cfg.get("out", ""))).name == "run")


def _remove_old_demo_run(run_dir: Path) -> None:
    """Remove ``OUT/run`` if an older demo made it (marked, or its config); anything else there is the user's and
    stays."""
    if run_dir.is_symlink() or not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir()}
    if names and names <= _OLD_RUN_ENTRIES and (DEMO_MARKER in names or _made_by_an_older_demo(run_dir)):
        with FolderLock(run_dir, "the older demo's run directory"):
            shutil.rmtree(run_dir)


# ---------------------------------------------------------------- the story table
def story_table(data: str, reports: dict[str, dict], labels: dict[str, str], notes: list[str]) -> str:
    """Markdown: W2 at :data:`TABLE_NFES` per run, with the two-sample floor as its own row."""
    first = next(iter(reports.values()))
    floor = first["w2_floor"]
    lines = [f"W2 to {first['n_reference']} held-out points of {data} ({first['n']} samples; lower is better, "
             f"the two-sample floor {floor:.4g} is what a perfect model scores)", "",
             "| method | sampler | " + " | ".join(f"NFE {k}" for k in TABLE_NFES) + " |",
             "|---|---|" + "---:|" * len(TABLE_NFES)]
    for name, report in reports.items():
        w2 = {r["nfe"]: r["w2"] for r in report["results"]}
        lines.append(f"| {labels[name]} | {report['results'][0]['solver']} | "
                     + " | ".join(f"{w2[k]:.4g}" for k in TABLE_NFES) + " |")
    lines.append("| two-sample floor | | " + " | ".join(f"{floor:.4g}" for _ in TABLE_NFES) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


# ---------------------------------------------------------------- the demo
def run_demo(out: Path, data: str = "moons", steps: int = 3000, student_steps: int = 1000, n_pairs: int = 20000,
             teacher_nfe: int = 100, beta: float = 10.0, n: int = 2000, progress: bool = True,
             threads: int | None = 1) -> dict:
    """Train, evaluate and draw the three runs into ``out`` (see the module docstring); returns each run's eval report.

    ``steps``: baseline and curvature training steps; ``student_steps``: the lines student's;
    ``n_pairs`` teacher pairs from the baseline at Euler ``teacher_nfe``; ``n``: samples per evaluation.
    ``threads``: torch's CPU threads while the demo runs (restored after; None leaves them): one, since
    the 2D MLP's steps are too small to split, and a second thread only waits on a busy machine.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(Path(out), data, steps, student_steps, n_pairs, teacher_nfe, beta, n, progress)
    finally:
        torch.set_num_threads(before)


def _run_demo(out: Path, data: str, steps: int, student_steps: int, n_pairs: int, teacher_nfe: int, beta: float,
              n: int, progress: bool) -> dict:
    for flag, value, least in (("--steps", steps, 1), ("--student-steps", student_steps, 1), ("--n-pairs", n_pairs, 10),
                               ("teacher_nfe", teacher_nfe, 1), ("n", n, 2)):
        if value < least:  # before any work, in the demo's own words
            raise StraightflowError(f"demo {flag} must be >= {least}, got {value}")
    if not beta >= 0:
        raise StraightflowError(f"demo --beta must be >= 0 (or inf), got {beta}")
    shape = tuple(load_data(data).shape)
    if shape != (2,):
        raise StraightflowError(f"demo needs 2D data (it draws trajectories); {data} has shape {shape}")
    runs = out / "runs"
    lock = _claim_runs(out, runs)
    try:
        _remove_old_demo_run(out / "run")
        t0 = time.perf_counter()
        dirs = {name: runs / name for name in RUN_NAMES}
        common = dict(data=data, batch_size=BATCH_SIZE, steps=steps, ckpt_every=steps, progress=progress)
        _stage(1, f"training the baseline (rectified flow, independent coupling) on {data}: {steps} steps, batch "
                  f"{BATCH_SIZE}")
        train(method="rectified", out=str(dirs["baseline"]), **common)
        _stage(2, f"teacher pairs: {n_pairs:,} (noise, sample) pairs from the baseline, Euler {teacher_nfe} NFE each")
        pairs_from_run(dirs["baseline"], n_pairs, runs / PAIRS_NAME, solver="euler", nfe=teacher_nfe, progress=progress)
        _stage(3, f"training the curvature method (learned coupling q_phi(z|x), beta = {beta:g}): {steps} steps")
        train(method="curvature", beta=beta, out=str(dirs["curvature"]), **common)
        _stage(4, f"training the lines student on the pairs (from the baseline's weights): {student_steps} steps")
        train(method="lines", pairs=str((runs / PAIRS_NAME).resolve()), steps=student_steps, batch_size=BATCH_SIZE,
              out=str(dirs["lines"]), ckpt_every=student_steps, progress=progress)
        loaded = {name: Run.load(d) for name, d in dirs.items()}
        _stage(5, f"evaluating all three at NFE {', '.join(map(str, NFES))} (W2 and energy distance on {n} samples)")
        reports = {name: evaluate(run, list(NFES), n=n, progress=progress) for name, run in loaded.items()}
        labels = {"baseline": "baseline (rectified flow)", "curvature": f"curvature method (beta = {beta:g})",
                  "lines": "lines student of the baseline"}
        _stage(6, "drawing the figures")
        ref, _ = loaded["baseline"].data.reference(n, 0)
        panels = []
        for name, run in loaded.items():
            # the student's paths are its straight lines: one step of the line sampler
            k = 1 if name == "lines" else 100
            res = run.sample(200, nfe=k, seed=0, return_trajectory=True)
            how = (f"Euler, NFE {res.nfe}"
                   if res.solver == "euler" else f"{res.solver} sampler, NFE {res.nfe}: straight lines")
            panels.append({"label": labels[name], "trajectory": res.trajectory, "paths": how,
                           "w2": {r["nfe"]: r["w2"] for r in reports[name]["results"]}})
        story_png = out / "story.png"
        plot_story(panels, ref, reports["baseline"]["w2_floor"], story_png, title=f"straightflow demo on {data}")
        plot_trajectories(loaded["baseline"], out / "trajectories.png", n=300, nfe=100, solver="euler", seed=0)
    finally:
        lock.release()
    notes = [f"baseline and curvature: {steps} training steps each; the lines student: {student_steps} steps on "
             f"{n_pairs:,} teacher pairs, each of which cost the baseline {teacher_nfe} NFE once, before training",
             "euler: N uniform Euler steps; lines: the line sampler (NFE = steps); the full tables are in "
             "quality_vs_nfe.txt"]
    table = story_table(data, reports, labels, notes)
    (out / "story.md").write_text(table + "\n")
    (out / "quality_vs_nfe.txt").write_text("\n\n".join(format_table(r) for r in reports.values()) + "\n")
    (out / "report.json").write_text(json.dumps({"data": data, "runs": reports}, indent=1))
    print(table)
    print(f"straightflow demo: done in {time.perf_counter() - t0:.0f} s")
    print(f"  the story (paths and W2 vs NFE): {story_png}")
    print(f"  the table: {out / 'story.md'}; every run's eval table: {out / 'quality_vs_nfe.txt'} (JSON: "
          f"{out / 'report.json'})")
    print(f"  the baseline's trajectory plot: {out / 'trajectories.png'}")
    print(f"  run directories: {', '.join(str(d) for d in dirs.values())}; teacher pairs: {runs / PAIRS_NAME}")
    return reports
