"""The command line is safe with the user's files: Ctrl-C says what is left, --out is checked before
any work, the demo removes only its own runs, and runs remember where their data is."""

import os

import pytest

from straightflow.cli import main as cli_main
from straightflow.cli.main import main

#: argv that parses for each command (the command itself is replaced in these tests)
ARGV = {
    "train": ["train", "--data", "moons", "--out", "R"],
    "sample": ["sample", "R", "--out", "s.npy"],
    "eval": ["eval", "R"],
    "plot": ["plot", "R", "--out", "p.png"],
    "sweep": ["sweep", "--data", "moons", "--steps", "5", "--out", "S"],
    "pairs": ["pairs", "R", "-n", "10", "--out", "P"],
    "demo": ["demo", "--out", "D"],
    "export": ["export", "R", "--out", "E"],
    "push": ["push", "E", "me/model"],
    "report": ["report", "--smoke", "--out", "R"],
}

CTRL_C = {
    "train": "the last checkpoint is intact (use --resume)",
    "pairs": "finished shards are kept; rerun the same command to resume",
    "sweep": "finished runs are kept; rerun the same command to continue",
    "eval": "nothing was written",
    "sample": "nothing was written",
    "plot": "nothing was written",
    "demo": "rerun the demo to start it again",
    "export": "rerun the export; files already in --out are whole (each is written under a temporary name first)",
    "push": "nothing is committed until the upload finishes; rerun the push",
    "report": "finished jobs are kept; rerun the same command to continue",
}


@pytest.mark.parametrize("command", sorted(ARGV))
def test_ctrl_c_says_what_each_command_leaves_behind(command, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    help_text, add, _ = cli_main.COMMANDS[command]
    monkeypatch.setitem(cli_main.COMMANDS, command, (help_text, add, interrupted))
    assert main(ARGV[command]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"straightflow: interrupted; {CTRL_C[command]}"]
    if command != "train":
        assert "--resume" not in err[0]  # only train has --resume


# ---------------------------------------------------------------- --out is checked before any work
#: the first piece of work of each command: reaching it fails the test (main() then returns 1)
WORK = {
    "train": ("straightflow.training", "train"),
    "sample": ("straightflow.run.Run", "load"),
    "plot": ("straightflow.run.Run", "load"),
    "sweep": ("straightflow.experiments.sweep", "run_sweep"),
    "pairs": ("straightflow.experiments.pairs", "pairs_from_run"),
    "demo": ("straightflow.experiments.demo", "run_demo"),
    "export": ("straightflow.export", "export"),
    "report": ("straightflow.report", "run_report"),
}
FILE_OUT = {"sample": "s.npy", "plot": "p.png"}


def _argv_with_out(command: str, out) -> list[str]:
    argv = list(ARGV[command])
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _no_work(monkeypatch, command):
    import importlib

    module, name = WORK[command]
    if module.endswith(".Run"):
        target = importlib.import_module(module.rsplit(".", 1)[0]).Run
    else:
        target = importlib.import_module(module)

    def work(*args, **kwargs):
        raise AssertionError(f"{command} started working before checking --out")

    monkeypatch.setattr(target, name, work)


def _bad_outs(command: str, tmp_path):
    """(out, expected message) pairs that every command must refuse, root or not."""
    a_file = tmp_path / "a_file"
    a_file.write_text("user data\n")
    if command in FILE_OUT:
        folder = tmp_path / FILE_OUT[command]
        folder.mkdir()
        return [(folder, "is a folder; give a file name"),
                (a_file / FILE_OUT[command], f"cannot be created: {a_file} is a file"),
                (a_file / "deeper" / FILE_OUT[command], f"cannot be created: {a_file} is a file")]
    return [(a_file, "is a file; give a folder"),
            (a_file / "run", f"cannot be created: {a_file} is a file"),
            (a_file / "deeper" / "run", f"cannot be created: {a_file} is a file")]


@pytest.mark.parametrize("command", sorted(WORK))
def test_a_bad_out_is_a_one_line_error_before_any_work(command, tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, command)
    for out, message in _bad_outs(command, tmp_path):
        assert main(_argv_with_out(command, out)) == 2, capsys.readouterr().err
        err = capsys.readouterr().err.strip().splitlines()
        assert (len(err) == 1 and err[0].startswith(f"straightflow: error: {command} --out {out}: ")
                and message in err[0]), err


def _permissions_apply() -> bool:
    """False for root (it ignores permissions; a root without CAP_DAC_OVERRIDE does not)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o500)
        try:
            return not os.access(d, os.W_OK)
        finally:
            os.chmod(d, 0o700)


@pytest.mark.skipif(not _permissions_apply(),
                    reason="root ignores permissions (the 'below a file' cases above still run)")
@pytest.mark.parametrize("command", sorted(WORK))
def test_an_out_in_a_read_only_folder_is_a_one_line_error_before_any_work(command, tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, command)
    ro = tmp_path / "ro"
    ro.mkdir()
    name = FILE_OUT.get(command, "run")
    (ro / f"old-{name}").write_text("")
    if command not in FILE_OUT:
        (ro / "existing").mkdir()
    ro.chmod(0o500)
    try:
        cases = [(ro / name, f"cannot write in {ro} (permission denied)"),
                 (ro / "new" / name, f"cannot write in {ro} (permission denied)")]
        if command in FILE_OUT:
            (ro / f"old-{name}").chmod(0o400)
            cases.append((ro / f"old-{name}", "the file is not writable"))
        for out, message in cases:
            assert main(_argv_with_out(command, out)) == 2, capsys.readouterr().err
            err = capsys.readouterr().err.strip().splitlines()
            assert (len(err) == 1 and err[0].startswith(f"straightflow: error: {command} --out {out}: ")
                    and message in err[0]), err
    finally:
        ro.chmod(0o700)


def test_a_bad_report_page_is_a_one_line_error_before_any_work(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, "report")
    a_file = tmp_path / "a_file"
    a_file.write_text("user data\n")
    (tmp_path / "docs").mkdir()
    cases = [(tmp_path / "docs", "is a folder; give a Markdown file name"),
             (tmp_path / "page.txt", "give a Markdown file name ending in .md"),
             (a_file / "page.md", f"cannot be created: {a_file} is a file")]
    for page, message in cases:
        assert main(["report", "--smoke", "--out", str(tmp_path / "R"),
                     "--page", str(page)]) == 2, capsys.readouterr().err
        err = capsys.readouterr().err.strip().splitlines()
        assert (len(err) == 1 and err[0].startswith(f"straightflow: error: report --page {page}: ")
                and message in err[0]), err
    assert a_file.read_text() == "user data\n" and not (tmp_path / "page.txt").exists()


def test_train_checks_an_out_given_in_its_config_file(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, "train")
    (tmp_path / "a_file").write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'a_file'}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "train --out" in capsys.readouterr().err


# ---------------------------------------------------------------- the demo removes only its own runs
@pytest.fixture
def quick_demo(monkeypatch):
    """run_demo with real (short) training and pairs; the slow evaluation and plots are stubbed."""
    from straightflow.experiments import demo

    monkeypatch.setattr(demo, "evaluate", lambda run, nfes, **k: {"run": str(run.dir), "w2_floor": 0.1, "n": 10,
                                                                  "n_reference": 10,
                                                                  "results": [{"nfe": k, "solver": "euler", "w2": 1.0}
                                                                              for k in nfes]})
    monkeypatch.setattr(demo, "format_table", lambda report: "table")
    monkeypatch.setattr(demo, "plot_trajectories", lambda run, path, **k: path.write_bytes(b"png"))
    monkeypatch.setattr(demo, "plot_story", lambda panels, data, floor, path, **k: path.write_bytes(b"png"))
    return lambda out: demo.run_demo(out, steps=5, student_steps=2, n_pairs=40, n=10, progress=False)


DEMO_ARGV = ["--steps", "5", "--student-steps", "2", "--n-pairs", "40"]


def test_the_demo_reruns_over_its_own_runs_but_never_removes_a_users_files(quick_demo, tmp_path, capsys):
    from straightflow.experiments.demo import DEMO_MARKER

    out = tmp_path / "D"
    runs = out / "runs"
    quick_demo(out)
    assert (runs / DEMO_MARKER).exists() and all((runs / name / "config.yaml").exists()
                                                 for name in ("baseline", "curvature", "lines"))
    assert (runs / "pairs" / "manifest.json").exists()
    quick_demo(out)  # rerunning over its own output (make demo twice) is fine
    for mine in [runs / "notes.txt", runs / "baseline" / "loss.png", runs / "pairs" / "notes.txt"]:
        mine.write_text("mine")
        capsys.readouterr()
        assert main(["demo", "--out", str(out), *DEMO_ARGV]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (len(err) == 1
                and f"{runs} holds files the demo did not make ({mine}); choose another --out or "
                    f"remove {runs}" in err[0]), err
        assert mine.read_text() == "mine" and (runs / "lines" / "config.yaml").exists()
        mine.unlink()
    quick_demo(out)
    assert (runs / DEMO_MARKER).exists()


def test_the_demo_refuses_a_runs_folder_it_did_not_make(tmp_path, monkeypatch, capsys):
    from straightflow.experiments import demo

    monkeypatch.setattr(demo, "train", lambda **k: (_ for _ in ()).throw(AssertionError("the demo trained")))
    mine = tmp_path / "D" / "runs"
    (mine / "baseline" / "checkpoints").mkdir(parents=True)
    # the user's own runs, shaped like the demo's, unmarked
    (mine / "baseline" / "config.yaml").write_text("method: rectified\n")
    (tmp_path / "E").mkdir()
    (tmp_path / "E" / "runs").write_text("a file")
    (tmp_path / "F").mkdir()
    (tmp_path / "F" / "runs").symlink_to(mine)
    before = {p: p.read_bytes() for p in [mine / "baseline" / "config.yaml", tmp_path / "E" / "runs"]}
    for out in [tmp_path / "D", tmp_path / "E", tmp_path / "F"]:
        assert main(["demo", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (len(err) == 1 and err[0].startswith(f"straightflow: error: demo --out {out}: {out / 'runs'} ")
                and "choose another --out" in err[0]), err
    assert {p: p.read_bytes() for p in before} == before and (mine / "baseline" / "checkpoints").is_dir()


def test_the_demo_removes_an_older_demos_run_and_leaves_a_users(quick_demo, tmp_path):
    from straightflow.experiments.demo import DEMO_MARKER

    old, user = tmp_path / "D" / "run", tmp_path / "E" / "run"
    (old / "checkpoints").mkdir(parents=True)
    (old / "config.yaml").write_text("method: rectified\n")
    (old / DEMO_MARKER).write_text("made by `straightflow demo`\n")
    (user / "checkpoints").mkdir(parents=True)
    (user / "config.yaml").write_text("method: ot\nbatch_size: 512\nsteps: 100\nckpt_every: 50\nout: E/run\n")
    quick_demo(tmp_path / "D")
    quick_demo(tmp_path / "E")
    assert (not old.exists() and (user / "config.yaml").read_text().startswith("method: ot")
            and (user / "checkpoints").is_dir())


@pytest.mark.parametrize("flag, value",
                         [("--steps", "0"), ("--student-steps", "-1"), ("--n-pairs", "3"), ("--beta", "-1")])
def test_the_demo_checks_its_budget_before_any_work(flag, value, tmp_path, monkeypatch, capsys):
    from straightflow.experiments import demo

    monkeypatch.setattr(demo, "train", lambda **k: (_ for _ in ()).throw(AssertionError("the demo trained")))
    assert main(["demo", "--out", str(tmp_path / "D"), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"straightflow: error: demo {flag} must be >= "), err
    assert not (tmp_path / "D" / "runs").exists()


def test_the_demo_needs_2d_data_and_says_so_before_training(tmp_path, monkeypatch, capsys):
    import numpy as np

    from straightflow.experiments import demo

    monkeypatch.setattr(demo, "train", lambda **k: (_ for _ in ()).throw(AssertionError("the demo trained")))
    np.save(tmp_path / "pts.npy", np.zeros((50, 3), np.float32))
    assert main(["demo", "--data", str(tmp_path / "pts.npy"), "--out", str(tmp_path / "D")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "demo needs 2D data" in err[0] and "(3,)" in err[0], err
    assert not (tmp_path / "D" / "runs").exists()


# ---------------------------------------------------------------- runs remember where their data is
QUICK = ["--width", "16", "--depth", "1", "--batch-size", "32", "--progress", "false", "--log-every", "5"]


def test_a_run_trained_on_a_relative_path_loads_from_any_directory(tmp_path, monkeypatch, capsys):
    import numpy as np
    import yaml

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    (here / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    np.save(here / "sub" / "pts.npy", np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32))
    monkeypatch.chdir(here)
    assert main(["train", "--data", "sub/pts.npy", "--steps", "10", "--out", "runs/r",
                 *QUICK]) == 0, capsys.readouterr().err
    monkeypatch.chdir(elsewhere)
    assert main(["eval", str(here / "runs" / "r"), "--nfe", "1", "-n", "50", "--json"]) == 0, capsys.readouterr().err
    assert main(["sample", str(here / "runs" / "r"), "-n", "5", "--out", "s.npy"]) == 0, capsys.readouterr().err
    assert np.load(elsewhere / "s.npy").shape == (5, 3)
    saved = here / "runs" / "r" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["data"] == str(here / "sub" / "pts.npy")
    # the original command line, repeated with --resume, still resumes (also a run recorded with the relative path)
    monkeypatch.chdir(here)
    assert main(["train", "--data", "sub/pts.npy", "--steps", "15", "--out", "runs/r",
                 "--resume", *QUICK]) == 0, capsys.readouterr().err
    saved.write_text(saved.read_text().replace(str(here / "sub" / "pts.npy"), "sub/pts.npy"))
    assert main(["train", "--data", "sub/pts.npy", "--steps", "20", "--out", "runs/r",
                 "--resume", *QUICK]) == 0, capsys.readouterr().err
    assert yaml.safe_load(saved.read_text())["data"] == "sub/pts.npy"


def test_path_fields_are_made_absolute_but_names_stay_names(tmp_path, monkeypatch):
    from straightflow.cli.main import absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "moons").mkdir()  # a folder named like a built-in set: --data moons is still the set
    (tmp_path / "imgs").mkdir()
    (tmp_path / "c.yaml").write_text("data: imgs\npairs: p\n")
    assert absolute_paths({"data": "moons"}) == {"data": "moons"}
    assert absolute_paths({"data": "missing.npy"}) == {"data": "missing.npy"}  # train's own error names it as given
    assert (absolute_paths({"data": "imgs", "data_root": "roots", "lr": 0.1})
            == {"data": str(tmp_path / "imgs"), "data_root": str(tmp_path / "roots"), "lr": 0.1})
    # from --config too
    assert absolute_paths({}, "c.yaml") == {"data": str(tmp_path / "imgs"), "pairs": str(tmp_path / "p")}


@pytest.mark.parametrize("command", ["sweep", "pairs", "demo"])
def test_sweep_pairs_and_demo_pass_on_an_absolute_data_path(command, tmp_path, monkeypatch):
    import numpy as np

    from straightflow.experiments import demo, pairs, sweep

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "pts.npy", np.zeros((10, 2), np.float32))
    seen = {}
    if command == "sweep":
        monkeypatch.setattr(sweep, "run_sweep", lambda out, data, *a, **k: seen.update(data=data))
        argv = ["sweep", "--data", "pts.npy", "--steps", "5", "--out", "S"]
    elif command == "pairs":
        monkeypatch.setattr(pairs, "pairs_from_callable",
                            lambda spec, data, *a, **k: seen.update(data=data)
                            or {"generated_pairs": 0, "generated_shards": 0, "reused_shards": 0})
        argv = ["pairs", "--teacher-callable", "t.py:f", "--data", "pts.npy", "-n", "10", "--out", "P", "--quiet"]
    else:
        monkeypatch.setattr(demo, "run_demo", lambda out, data, **k: seen.update(data=data))
        argv = ["demo", "--data", "pts.npy", "--out", "D"]
    assert main(argv) == 0
    assert seen["data"] == str(tmp_path / "pts.npy")


# ---------------------------------------------------------------- the Makefile's torch is the CPU build
# unless told otherwise
@pytest.mark.skipif(__import__("shutil").which("make") is None, reason="needs make")
def test_the_makefile_installs_the_cpu_torch_by_default(tmp_path):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def torch_line(*variables):
        proc = subprocess.run(["make", "-n", "-C", str(root), "install", f"VENV={tmp_path / 'venv'}", *variables],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return next(line for line in proc.stdout.splitlines() if "torch==" in line)

    assert '--extra-index-url "https://download.pytorch.org/whl/cpu"' in torch_line()
    assert '--extra-index-url "https://download.pytorch.org/whl/cu126"' in torch_line(
        "TORCH_INDEX=https://download.pytorch.org/whl/cu126")
    assert "index-url" not in torch_line("TORCH_INDEX=")
