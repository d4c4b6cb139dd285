"""Fault and fuzz suite: kill -9, damaged files, a full disk, fuzzed CLI input.

    python bench/fault_suite.py                      # N=10 kills each, 500 argv + 300 YAML configs
    python bench/fault_suite.py --kills 3 --argv 60 --yaml 60

Prints one summary block. ``tests/end_to_end/test_faults.py`` runs the same scenarios (imported from this
file) with smaller counts. Scenarios:

1. ``straightflow train`` / ``straightflow pairs`` as subprocesses, SIGKILLed at a random (seeded)
   step or shard plus a random delay, then resumed (``--resume`` / the same command); the final
   weights and every shard must be bit-identical to an uninterrupted run of the same command.
2. Damaged checkpoints and pair folders (truncated, zero-byte, another run's, a newer format):
   ``sample`` / ``eval`` / ``train --resume`` / ``train --pairs`` exit 2 with one
   ``straightflow: error:`` line and delete nothing.
3. A full disk (``OSError(ENOSPC)``) half way through a checkpoint or a shard write: a one-line
   error naming the disk, the previous state stays loadable, and resuming afterwards works.
4. Hypothesis-generated argv lists and YAML config files through ``main(argv)``: never a traceback
   nor an internal error, exit status 0, 2 or 130, and no file changed outside ``--out``. Training,
   pair generation, evaluation, plots, sweeps and the demo are replaced by fast fakes *after* the
   real argument, config and run-directory checks; ``sample`` runs for real (small ``-n``/``--nfe``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # run as a script from a checkout: use this checkout's straightflow
    sys.path.insert(0, str(SRC))

from straightflow.errors import StraightflowError  # noqa: E402

#: the tiny run every kill scenario trains (a few seconds, mostly interpreter start-up)
TRAIN_ARGS = ["--data", "moons", "--width", "16", "--depth", "1", "--batch-size", "64", "--steps", "60",
              "--ckpt-every", "5", "--log-every", "5", "--progress", "false", "--seed", "1"]
PAIRS_N, PAIRS_SHARD = 600, 64


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"  # the same arithmetic in every process of a comparison
    env.pop("STRAIGHTFLOW_DEBUG", None)
    return env


def _cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "straightflow", *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, what: str) -> None:
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {err.strip()[-2000:]}")


def _kill_when(proc: subprocess.Popen, reached, delay: float, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``reached()`` is true; False when it finished first."""
    deadline = time.time() + timeout
    while not reached():
        if proc.poll() is not None:
            proc.communicate()
            return False
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("the kill point was never reached")
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode == -signal.SIGKILL


# ------------------------------------------------------------------ 1. kill -9
def _logged_step(run: Path) -> int:
    try:
        lines = (run / "stats.jsonl").read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            return int(json.loads(line)["step"])
    return 0


def _final_weights(run: Path) -> dict[str, bytes]:
    ckpt = run / "checkpoints" / "step-000060"
    return {name: (ckpt / name).read_bytes() for name in ("model.safetensors", "ema.safetensors")}


def kill_train(base: Path, kills: int, seed: int = 0, workers: int = 2) -> dict:
    """``kills`` training runs, each SIGKILLed once at a random logged step (5..55) plus a random delay,
    then resumed to the end; returns counts of kills and of bit-identical final weights."""
    base.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    plans = [(rng.choice(range(5, 60, 5)), rng.uniform(0.0, 0.15)) for _ in range(kills)]

    def reference() -> dict[str, bytes]:
        _finish(_cli("train", *TRAIN_ARGS, "--out", base / "ref"), "the uninterrupted run")
        return _final_weights(base / "ref")

    def chain(i: int) -> tuple[bool, dict[str, bytes], str]:
        run = base / f"killed-{i}"
        step, delay = plans[i]
        killed = _kill_when(_cli("train", *TRAIN_ARGS, "--out", run), lambda: _logged_step(run) >= step, delay)
        where = f"step >= {step} + {delay:.2f}s"
        _finish(_cli("train", "--out", run, "--resume", "--progress", "false"), f"the resume after a kill at {where}")
        return killed, _final_weights(run), where

    return _compare_chains(reference, chain, kills, workers)


def _compare_chains(reference, chain, kills: int, workers: int) -> dict:
    """Run the uninterrupted ``reference()`` beside ``kills`` killed-and-resumed ``chain(i)``s; count the bit-identical
    ones."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ref = pool.submit(reference)
        chains = [pool.submit(chain, i) for i in range(kills)]
        expected = ref.result()
        results = [c.result() for c in chains]
    mismatched = [where for _, got, where in results if got != expected]
    return {"kills": sum(k for k, _, _ in results), "runs": kills, "identical": kills - len(mismatched),
            "mismatched": mismatched}


def teacher_run(path: Path) -> Path:
    """A tiny trained run to make pairs from (in-process, about a second)."""
    from straightflow.training import train

    if not (path / "checkpoints").is_dir():
        train(data="moons", width=16, depth=1, batch_size=64, steps=20, ckpt_every=20, log_every=10, progress=False,
              out=str(path))
    return path


def _pair_args(teacher: Path, out: Path) -> list:
    return ["pairs", teacher, "-n", PAIRS_N, "--shard-size", PAIRS_SHARD, "--nfe", "64", "--batch-size", "16",
            "--quiet", "--out", out]


def pair_arrays(folder: Path) -> dict[str, bytes]:
    """Every shard array (as raw bytes with dtype and shape) and the manifest's shard list."""
    arrays = {}
    for path in sorted(folder.glob("shard-*.npy")):
        arr = np.load(path, allow_pickle=False)
        arrays[path.name] = f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()
    arrays["manifest shards"] = json.dumps(json.loads((folder / "manifest.json").read_text())["shards"]).encode()
    return arrays


def kill_pairs(base: Path, kills: int, seed: int = 0, workers: int = 2) -> dict:
    """``kills`` pair generations, each SIGKILLed once after a random shard (0..8) plus a random delay,
    then rerun; returns counts of kills and of folders whose every shard equals the uninterrupted one's."""
    base.mkdir(parents=True, exist_ok=True)
    teacher = teacher_run(base / "teacher")
    rng = random.Random(seed + 1)
    plans = [(rng.randrange(0, 9), rng.uniform(0.0, 0.1)) for _ in range(kills)]

    def reference() -> dict[str, bytes]:
        _finish(_cli(*_pair_args(teacher, base / "ref")), "the uninterrupted pairs")
        return pair_arrays(base / "ref")

    def chain(i: int) -> tuple[bool, dict[str, bytes], str]:
        out = base / f"killed-{i}"
        shard, delay = plans[i]
        killed = _kill_when(_cli(*_pair_args(teacher, out)), lambda: (out / f"shard-{shard:05d}.json").exists(), delay)
        where = f"shard {shard} + {delay:.2f}s"
        _finish(_cli(*_pair_args(teacher, out)), f"the rerun after a kill at {where}")
        return killed, pair_arrays(out), where

    return _compare_chains(reference, chain, kills, workers)


# ------------------------------------------------------------------ helpers for in-process commands
def run_main(argv: list) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr); SystemExit (``--help``) is its status."""
    from straightflow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return rc, out.getvalue(), err.getvalue()


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (folders in ``skip`` left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def compare(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """(files lost, files changed or added) between two snapshots."""
    lost = [p for p in before if p not in after]
    changed = [p for p in after if before.get(p, None) != after[p] and p not in lost]
    return lost, changed


def one_line_error(rc: int, out: str, err: str) -> str | None:
    """None when the command failed the way bad input should; else what was wrong."""
    lines = [line for line in err.splitlines() if line.strip()]
    if rc != 2:
        return f"exit status {rc} (want 2): {err.strip()[-500:]}"
    if len(lines) != 1 or not lines[0].startswith("straightflow: error: "):
        return f"not one `straightflow: error:` line: {err.strip()[-500:]}"
    if "Traceback" in out + err or "internal error" in err:
        return f"a traceback / internal error: {err.strip()[-500:]}"
    return None


# ------------------------------------------------------------------ 2. damaged files
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def damaged_workspace(base: Path) -> dict[str, Path]:
    """A tiny run, another run of another model shape and a pairs folder of the first (in-process)."""
    from straightflow.experiments.pairs import pairs_from_run
    from straightflow.training import train

    base.mkdir(parents=True, exist_ok=True)
    run, other, pairs = base / "run", base / "other", base / "pairs"
    if not run.exists():
        train(data="moons", width=16, depth=1, batch_size=64, steps=10, ckpt_every=5, log_every=5, progress=False,
              out=str(run))
    if not other.exists():
        train(data="moons", width=8, depth=2, batch_size=64, steps=5, ckpt_every=5, log_every=5, progress=False,
              out=str(other), seed=7)
    if not pairs.exists():
        pairs_from_run(str(run), 200, str(pairs), nfe=4, shard_size=64, heldout=20, device="cpu", progress=False)
    return {"run": run, "other": other, "pairs": pairs}


def _ckpt(run: Path) -> Path:
    from straightflow.checkpoint import latest_checkpoint

    return latest_checkpoint(run)


def _foreign_checkpoint(run: Path, ws: dict) -> None:
    target = _ckpt(run)
    shutil.rmtree(target)
    shutil.copytree(_ckpt(ws["other"]), target)


def _foreign_shard(pairs: Path, ws: dict) -> None:
    """Shard 1's x array replaced by shard 0's: a valid array from elsewhere, same shape."""
    shutil.copyfile(pairs / "shard-00000.x.npy", pairs / "shard-00001.x.npy")


def _student(pairs: Path, out: Path) -> list:
    return ["train", "--pairs", pairs, "--method", "reflow", "--steps", "2", "--batch-size", "16",
            "--progress", "false", "--out", out]


#: name -> (what is damaged: "run" or "pairs", damage(path, workspace), argv(path, scratch))
DAMAGED_CASES = {
    "truncated ema.safetensors / sample": ("run", lambda p, ws: _truncate(_ckpt(p) / "ema.safetensors"),
                                             lambda p, s: ["sample", p, "-n", "8", "--out", s / "x.npy"]),
    "truncated model.safetensors / train --resume": ("run", lambda p, ws: _truncate(_ckpt(p) / "model.safetensors"),
                                                     lambda p, s: ["train", "--out", p, "--resume", "--steps", "20"]),
    "zero-byte ema.safetensors / eval": ("run", lambda p, ws: (_ckpt(p) / "ema.safetensors").write_bytes(b""),
                                         lambda p, s: ["eval", p, "--nfe", "1", "-n", "16"]),
    "truncated state.pt / train --resume": ("run", lambda p, ws: _truncate(_ckpt(p) / "state.pt"),
                                            lambda p, s: ["train", "--out", p, "--resume", "--steps", "20"]),
    "zero-byte meta.json / sample": ("run", lambda p, ws: (_ckpt(p) / "meta.json").write_bytes(b""),
                                     lambda p, s: ["sample", p, "-n", "8", "--out", s / "x.npy"]),
    "another model's checkpoint / train --resume": ("run", _foreign_checkpoint,
                                                    lambda p, s: ["train", "--out", p, "--resume", "--steps", "20"]),
    "another model's checkpoint / eval": ("run", _foreign_checkpoint,
                                          lambda p, s: ["eval", p, "--nfe", "1", "-n", "16"]),
    "newer checkpoint format / sample": ("run", lambda p, ws: _edit_json(_ckpt(p) / "meta.json", format=99),
                                        lambda p, s: ["sample", p, "-n", "8", "--out", s / "x.npy"]),
    "newer checkpoint format / train --resume": ("run", lambda p, ws: _edit_json(_ckpt(p) / "meta.json", format=99),
                                                 lambda p, s: ["train", "--out", p, "--resume", "--steps", "20"]),
    "config.yaml with an unknown key / eval": ("run",
                                               lambda p, ws: (p / "config.yaml").write_text(
                                                   (p / "config.yaml").read_text() + "from_the_future: 1\n"),
                                               lambda p, s: ["eval", p, "--nfe", "1", "-n", "16"]),
    "truncated shard / train --pairs": ("pairs", lambda p, ws: _truncate(p / "shard-00001.z.npy"), _student),
    "zero-byte shard / train --pairs": ("pairs", lambda p, ws: (p / "shard-00002.x.npy").write_bytes(b""), _student),
    "another folder's shard / train --pairs": ("pairs", _foreign_shard, _student),
    "truncated manifest / train --pairs": ("pairs", lambda p, ws: _truncate(p / "manifest.json"), _student),
    "newer pairs format / train --pairs": ("pairs", lambda p, ws: _edit_json(p / "manifest.json", format=99), _student),
}


def damaged_case(name: str, ws: dict, scratch: Path) -> dict:
    """Copy the workspace's run or pairs folder, damage it, run the command: its error and what it deleted."""
    kind, damage, argv = DAMAGED_CASES[name]
    scratch.mkdir(parents=True, exist_ok=True)
    victim = scratch / kind
    shutil.copytree(ws[kind], victim)
    damage(victim, ws)
    before = snapshot(scratch)
    rc, out, err = run_main(argv(victim, scratch))
    lost, _ = compare(before, snapshot(scratch))
    return {"problem": one_line_error(rc, out, err), "lost": lost, "err": err.strip()}


def damaged_files(base: Path) -> dict:
    ws = damaged_workspace(base / "ws")
    results = {name: damaged_case(name, ws, base / f"case-{i}") for i, name in enumerate(DAMAGED_CASES)}
    return {"cases": len(results), "one_line": sum(r["problem"] is None for r in results.values()),
            "lost": sum(len(r["lost"]) for r in results.values()),
            "failures": {k: r["problem"] or f"lost {r['lost']}" for k, r in results.items()
                         if r["problem"] or r["lost"]}}


# ------------------------------------------------------------------ 3. full disk
class _FullDiskFile:
    """A binary file object that writes half of what it is given, then fails like a full disk."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data) -> int:
        self._fh.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@contextlib.contextmanager
def full_disk(module, when):
    """``open`` in ``module`` (its writes of checkpoint / shard files) fails with ENOSPC for the paths ``when(path)``
    accepts."""
    def fake_open(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return _FullDiskFile(fh) if "w" in mode and when(Path(path)) else fh

    with mock.patch.object(module, "open", fake_open, create=True):
        yield


def full_disk_checkpoint(base: Path) -> dict:
    """The disk fills while step 10's checkpoint is written: a one-line error, step 5 loadable, resume bit-identical."""
    import straightflow.checkpoint as ckpt_mod
    from straightflow.checkpoint import latest_checkpoint, load_train_state
    from straightflow.run import Run
    from straightflow.training import train

    cfg = dict(data="moons", width=16, depth=1, batch_size=64, steps=10, ckpt_every=5, log_every=5, progress=False)
    ref, run = base / "disk-ref", base / "disk-run"
    train(out=str(ref), **cfg)
    error = None
    try:
        with full_disk(ckpt_mod, lambda p: "step-000010" in str(p) and p.name == "ema.safetensors"):
            train(out=str(run), **cfg)
    except StraightflowError as exc:
        error = str(exc)
    checks = {"one-line error naming the disk": error is not None and "No space left on device" in error
              and "\n" not in error}
    last = latest_checkpoint(run)
    checks["step 5 is the latest checkpoint"] = last is not None and last.name == "step-000005"
    checks["no half-written folder left"] = not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    Run.load(run)
    load_train_state(last)
    train(out=str(run), resume=True, steps=10, progress=False)
    checks["resumed bit-identical"] = _weights(run, 10) == _weights(ref, 10)
    return {"error": error, "checks": checks, "ok": all(checks.values())}


def _weights(run: Path, step: int) -> dict[str, bytes]:
    ckpt = run / "checkpoints" / f"step-{step:06d}"
    return {name: (ckpt / name).read_bytes() for name in ("model.safetensors", "ema.safetensors")}


def full_disk_pairs(base: Path) -> dict:
    """The disk fills while shard 2 is written: a one-line error, shards 0-1 kept, the rerun equals an uninterrupted
    folder."""
    import straightflow.files as files_mod  # pair shards are written by files.atomic_write
    from straightflow.data.pairs import complete_shard
    from straightflow.experiments.pairs import pairs_from_run

    teacher = teacher_run(base / "teacher")
    kw = dict(nfe=4, shard_size=64, device="cpu", progress=False)
    ref, out = base / "disk-pairs-ref", base / "disk-pairs"
    pairs_from_run(str(teacher), 300, str(ref), **kw)
    error = None
    try:
        with full_disk(files_mod, lambda p: "shard-00002.x.npy" in p.name):
            pairs_from_run(str(teacher), 300, str(out), **kw)
    except StraightflowError as exc:
        error = str(exc)
    settings = json.loads((out / "settings.json").read_text())
    checks = {"one-line error naming the disk": error is not None and "No space left on device" in error
              and "\n" not in error,
              "shards 0 and 1 kept": all(complete_shard(out, i, 64 * i, 64, settings) is not None for i in (0, 1)),
              "no temporary file left": not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]}
    pairs_from_run(str(teacher), 300, str(out), **kw)
    checks["rerun equals an uninterrupted folder"] = pair_arrays(out) == pair_arrays(ref)
    return {"error": error, "checks": checks, "ok": all(checks.values())}


# ------------------------------------------------------------------ 4. fuzzing
def fuzz_workspace(base: Path) -> dict[str, Path]:
    """A trained run, a pairs folder, config files and data files to point fuzzed flags at; ``outs`` receives
    outputs."""
    ws = damaged_workspace(base / "ws")
    ws["outs"] = base / "outs"
    ws["outs"].mkdir(parents=True, exist_ok=True)
    files = base / "files"
    files.mkdir(exist_ok=True)
    (files / "good.yaml").write_text("width: 16\ndepth: 1\nsteps: 3\n")
    (files / "bad.yaml").write_text("width: [1, 2\n")
    (files / "points.csv").write_text("x,y\n0,1\n2,3\nnan,1\n")
    np.save(files / "points.npy", np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    ws["files"] = files
    ws["base"] = base
    return ws


def _fake_train(cfg, ctx, **sections):
    """Stands in for the training loop after train()'s real config / run-directory checks."""
    from straightflow.methods import resolve_method

    resolve_method(cfg, sections.get("custom_method"))
    return Path(cfg.out)


def _fake_job(job, out, env, procs, lock):
    """Stands in for a report job's subprocess (which the in-process stubs would not reach): it fails at once."""
    from straightflow.report.jobs import JobResult

    return JobResult(job, "failed", 0.0, 1, 0.0, reason="not run: the fault suite stands in for report jobs")


def _fake_generate(teacher, n, out, shape, seed, prior, to_model, size, held, *rest):
    return {"out": str(out), "n": n, "generated_shards": 0, "reused_shards": 0, "generated_pairs": 0, "seconds": 0.0,
            "pairs_per_sec": math.nan}


@contextlib.contextmanager
def fast_stubs():
    """The heavy work of each command replaced by a fake, after its real checks (see the module docstring)."""
    import straightflow.plots as plots

    fake_plots = {name: (lambda run, out, **kw: None) for name in plots.PLOTS}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("straightflow.training.trainer._train", _fake_train))
        stack.enter_context(mock.patch("straightflow.teachers._generate", _fake_generate))
        stack.enter_context(mock.patch("straightflow.evaluate.evaluate", lambda run, nfes, **kw: {"rows": []}))
        stack.enter_context(mock.patch("straightflow.evaluate.format_table", lambda report: "table"))
        stack.enter_context(mock.patch.dict(plots.PLOTS, fake_plots))
        stack.enter_context(mock.patch("straightflow.experiments.sweep.run_sweep", lambda *a, **k: None))
        stack.enter_context(mock.patch("straightflow.experiments.demo.run_demo", lambda *a, **k: None))
        # `report` would run the real experiments
        stack.enter_context(mock.patch("straightflow.report.jobs._execute", _fake_job))
        yield


def parser_flags() -> dict[str, list[str]]:
    """command -> its real option strings (from the CLI's own parser)."""
    from straightflow.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    return {name: sorted(s for a in p._actions for s in a.option_strings if s not in ("-h", "--help"))
            for name, p in sub.choices.items()}


#: flags whose size sets how much real work ``sample`` does; fuzzed values above BOUND become BOUND
BOUNDED = {"-n", "--nfe", "--steps"}
BOUND = 16


def _strategies(ws: dict):
    from hypothesis import strategies as st

    from straightflow.config import TrainConfig

    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/\\"), max_size=8)
    numbers = st.one_of(st.integers(-(10**12), 10**12).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["nan", "-nan", "inf", "-inf", "1e400", "-1", "0", "1", "2", "0.5", "-0",
                                         "1_000", "0x10"]))
    words = st.sampled_from(["", " ", "true", "false", "yes", "all", "moons", "8gaussians", "rectified", "ot",
                             "curvature", "reflow", "distill", "lines", "euler", "heun", "rk45", "lines", "mlp", "unet",
                             "auto", "cpu", "cuda", "adamw", "bf16", "mse", "lpips", "grid", "trajectories", "0,1",
                             "1,2,4", "mnist", "cifar10", "--", "-"])
    paths = st.sampled_from([ws["run"], ws["other"], ws["pairs"], ws["files"] / "good.yaml", ws["files"] / "bad.yaml",
                             ws["files"] / "points.csv", ws["files"] / "points.npy", ws["base"] / "missing",
                             ws["files"]]).map(str)
    value = st.one_of(numbers, words, text, paths)
    return st, value, text, TrainConfig


def argv_strategy(ws: dict):
    """Random argv lists: a subcommand (or garbage), real flags of that command, garbage tokens, random values."""
    st, value, text, _ = _strategies(ws)
    flags = parser_flags()
    counter = iter(range(10**9))

    @st.composite
    def argv(draw):
        command = draw(st.one_of(st.sampled_from(sorted(flags)), text))
        known = flags.get(command, ["--out"])
        tokens = [command]
        if command in ("sample", "eval", "plot", "pairs") and draw(st.booleans()):
            tokens.append(str(draw(st.sampled_from([ws["run"], ws["other"], ws["pairs"], ws["base"] / "missing"]))))
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.integers(0, 9))
            if kind <= 6:  # a real flag and (usually) a value
                flag = draw(st.sampled_from(known))
                tokens.append(flag)
                if kind <= 5:
                    tokens.append(draw(value))
            elif kind == 7:
                tokens.append(draw(value))
            else:
                tokens.append("--" + draw(text))
        if draw(st.booleans()):  # usually an --out of our own, where outputs are allowed
            suffix = draw(st.sampled_from(["", ".npy", ".png", ".txt"]))
            if command == "train" and draw(st.integers(0, 3)) == 0:
                tokens += ["--out", str(ws["run"]), "--resume"]
            else:
                tokens += ["--out", str(ws["outs"] / f"out-{next(counter)}{suffix}")]
        return _bound(tokens)

    return argv()


def _bound(tokens: list[str]) -> list[str]:
    out = list(tokens)
    for i in range(len(out) - 1):
        if out[i] in BOUNDED:
            with contextlib.suppress(ValueError):
                if int(out[i + 1]) > BOUND:
                    out[i + 1] = str(BOUND)
    return out


def yaml_strategy(ws: dict):
    """Random config files: TrainConfig keys and garbage keys, values of every YAML type, nesting, invalid YAML."""
    st, value, text, TrainConfig = _strategies(ws)
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                       st.floats(allow_nan=True, allow_infinity=True), text, value)
    nested = st.recursive(scalar,
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(text, inner, max_size=3)), max_leaves=6)
    keys = st.one_of(st.sampled_from(TrainConfig.field_names()), text, st.integers(-5, 5), st.booleans(), st.none(),
                     st.floats())
    mapping = st.dictionaries(keys, nested, max_size=8)

    @st.composite
    def config(draw):
        import yaml

        kind = draw(st.integers(0, 9))
        if kind <= 6:
            body = yaml.safe_dump(draw(mapping), allow_unicode=True)
        elif kind == 7:
            body = yaml.safe_dump(draw(nested), allow_unicode=True)  # not a mapping
        elif kind == 8:
            body = draw(st.text(max_size=40))  # anything, often invalid YAML
        else:
            body = draw(st.sampled_from(["{", "a: [1,", "- a\nb: 1", "\t\tx: 1", ": :", "!!python/object:os.system x",
                                         "a: *b", "%YAML 9.9\n---\n"]))
        extra = draw(st.sampled_from([[], ["--resume"], ["--steps", "2"], ["--width", "abc"]]))
        out = draw(st.sampled_from(["new", "run", "none"]))
        return body, extra, out

    return config()


def check_argv(ws: dict, argv: list) -> str | None:
    """Run ``main(argv)`` with the fast stubs; None when it behaved (exit 0/2/130, no traceback, nothing lost
    or changed outside ``outs``), else what went wrong."""
    base = ws["base"]
    before = snapshot(base, skip=(ws["outs"],))
    cwd = os.getcwd()
    os.chdir(ws["outs"])  # relative --out values land in outs
    try:
        with fast_stubs():
            rc, out, err = run_main(argv)
    except BaseException as exc:  # noqa: BLE001 - anything escaping main() is the failure we look for
        return f"main raised {type(exc).__name__}: {exc}"
    finally:
        os.chdir(cwd)
    lost, changed = compare(before, snapshot(base, skip=(ws["outs"],)))
    if rc not in (0, 2, 130) or "Traceback" in out + err or "internal error" in err:
        return f"exit {rc}: {err.strip()[-800:]}"
    if rc == 2 and not err.strip().splitlines()[-1].startswith("straightflow: error: "):
        return f"exit 2 without a one-line error: {err.strip()[-800:]}"
    if lost or changed:
        return f"files lost {lost} or changed {changed} outside --out"
    return None


def check_yaml(ws: dict, body: str, extra: list, out: str, index: int) -> str | None:
    path = ws["outs"] / f"config-{index}.yaml"
    path.write_text(body, encoding="utf-8")
    argv = ["train", "--config", path, "--steps", "2", *extra]
    if out == "new":
        argv += ["--out", ws["outs"] / f"yaml-run-{index}"]
    elif out == "run":
        argv += ["--out", ws["run"]]
    return check_argv(ws, [str(a) for a in argv])


def fuzz(ws: dict, n_argv: int, n_yaml: int, seed: int = 0) -> dict:
    """Run ``n_argv`` generated argv lists and ``n_yaml`` generated config files; count what went wrong."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    found = {"argv": 0, "yaml": 0, "problems": []}
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False)

    @hseed(seed)
    @settings(max_examples=n_argv, **common)
    @given(argv_strategy(ws))
    def argv_case(argv):
        found["argv"] += 1
        problem = check_argv(ws, argv)
        if problem:
            found["problems"].append((argv, problem))

    @hseed(seed)
    @settings(max_examples=n_yaml, **common)
    @given(yaml_strategy(ws))
    def yaml_case(case):
        found["yaml"] += 1
        problem = check_yaml(ws, *case, found["yaml"])
        if problem:
            found["problems"].append((case, problem))

    if n_argv:
        argv_case()
    if n_yaml:
        yaml_case()
    tracebacks = sum("files lost" not in p for _, p in found["problems"])
    return {**found, "tracebacks": tracebacks, "files": len(found["problems"]) - tracebacks}


# ------------------------------------------------------------------ the summary
def _scenarios(base: Path, args) -> tuple:
    kt = kill_train(base / "kill-train", args.kills, args.seed)
    kp = kill_pairs(base / "kill-pairs", args.kills, args.seed)
    dmg = damaged_files(base / "damaged")
    disks = [full_disk_checkpoint(base / "disk"), full_disk_pairs(base / "disk")]
    fz = fuzz(fuzz_workspace(base / "fuzz"), args.argv, args.yaml, args.seed)
    return kt, kp, dmg, disks, fz


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="kill -9 runs of train and of pairs each (default 10)")
    ap.add_argument("--argv", type=int, default=500, help="fuzzed argv lists (default 500)")
    ap.add_argument("--yaml", type=int, default=300, help="fuzzed YAML config files (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sf-faults-"))
    t0 = time.perf_counter()
    try:  # the runs' own progress lines go to stderr; stdout is the summary block
        with contextlib.redirect_stdout(sys.stderr):
            kt, kp, dmg, disks, fz = _scenarios(base, args)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"fault suite: kill -9 points: train {kt['kills']}, pairs {kp['kills']}; "
          f"resumed bit-identical: {kt['identical'] + kp['identical']}/{kt['runs'] + kp['runs']}")
    print(f"damaged files: {dmg['cases']} cases, one-line errors {dmg['one_line']}/{dmg['cases']}, files lost "
          f"{dmg['lost']}")
    print(f"full disk: {len(disks)} cases, previous state loadable {sum(d['ok'] for d in disks)}/{len(disks)}")
    print(f"fuzz: {fz['argv']} CLI argv + {fz['yaml']} YAML configs, tracebacks {fz['tracebacks']}, files changed "
          f"outside --out {fz['files']}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    problems = (kt["mismatched"] + kp["mismatched"] + list(dmg["failures"].items())
                + [d["checks"] for d in disks if not d["ok"]] + fz["problems"][:10])
    for problem in problems:
        print("  problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
