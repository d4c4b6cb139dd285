"""The command-line contract, and one-line errors for bad input."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

QUICK = ["--width", "32", "--depth", "2", "--batch-size", "64", "--progress", "false", "--log-every", "10"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "straightflow", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def assert_one_line_error(proc, pattern):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [e for e in proc.stderr.strip().splitlines() if e.strip()]
    assert len(lines) == 1, proc.stderr
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    proc = cli("train", "--data", "moons", "--method", "rectified", "--steps", "40", "--out", run, "--seed", "1",
               "--ckpt-every", "20", *QUICK)
    assert proc.returncode == 0, proc.stderr
    return run


def test_train_sample_eval_plot(trained, tmp_path):
    out = tmp_path / "s.npy"
    proc = cli("sample", trained, "--nfe", "3", "--solver", "heun", "-n", "100", "--out", out, "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape == (100, 2)
    proc = cli("eval", trained, "--nfe", "1,2", "-n", "200", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["method"] == "rectified" and report["data"] == "moons"
    assert isinstance(report["curvature"], float)
    assert [(r["nfe"], r["solver"]) for r in report["results"]] == [(1, "euler"), (2, "euler")]
    assert {"w2", "energy"} <= set(report["results"][0]) and "w2_floor" in report
    proc = cli("eval", trained, "--nfe", "2", "--solver", "rk45", "-n", "50", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"][0]["nfe"] > 6
    png = tmp_path / "t.png"
    proc = cli("plot", trained, "--kind", "trajectories", "--out", png)
    assert proc.returncode == 0 and png.stat().st_size > 10_000


def test_eval_with_reference_file(trained, tmp_path):
    ref = tmp_path / "ref.npy"
    np.save(ref, np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32))
    proc = cli("eval", trained, "--nfe", "1", "-n", "100", "--reference", ref, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_reference"] == 300
    np.save(ref, np.zeros((10, 3)))
    assert_one_line_error(cli("eval", trained, "--reference", ref), "expected N x 2")


def test_unknown_data_name(tmp_path):
    assert_one_line_error(cli("train", "--data", "moonz", "--out", tmp_path / "r", "--steps", "5"),
                          "unknown data 'moonz'")
    assert not (tmp_path / "r").exists()


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 0.1\n")
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "r"), "unknown config key 'learning_rate'")
    assert_one_line_error(cli("train", "--stepz", "5", "--out", tmp_path / "r"), "unrecognized arguments: --stepz")


def test_nan_in_npy(tmp_path):
    arr = np.random.default_rng(0).normal(size=(100, 3))
    arr[17, 1] = np.nan
    np.save(tmp_path / "p.npy", arr)
    assert_one_line_error(cli("train", "--data", tmp_path / "p.npy", "--out", tmp_path / "r", "--steps", "5"),
                          "non-finite")


def test_checkpoint_from_another_model(trained, tmp_path):
    other = tmp_path / "other"
    assert cli("train", "--data", "moons", "--steps", "20", "--out", other, "--width", "48", *QUICK[2:]).returncode == 0
    victim = tmp_path / "victim"
    shutil.copytree(trained, victim)
    ckpt = sorted((victim / "checkpoints").iterdir())[-1]
    shutil.copy(sorted((other / "checkpoints").iterdir())[-1] / "ema.safetensors", ckpt / "ema.safetensors")
    shutil.copy(sorted((other / "checkpoints").iterdir())[-1] / "model.safetensors", ckpt / "model.safetensors")
    shutil.copy(sorted((other / "checkpoints").iterdir())[-1] / "meta.json", ckpt / "meta.json")  # with its checksums
    before = tree_digest(victim)
    assert_one_line_error(cli("sample", victim, "-n", "5", "--out", tmp_path / "x.npy"),
                          "does not match this run's model")
    assert_one_line_error(cli("train", "--out", victim, "--steps", "60", "--resume"), "does not match this run's model")
    assert tree_digest(victim) == before


def test_truncated_checkpoint(trained, tmp_path):
    victim = tmp_path / "victim"
    shutil.copytree(trained, victim)
    ckpt = sorted((victim / "checkpoints").iterdir())[-1]
    data = (ckpt / "ema.safetensors").read_bytes()
    (ckpt / "ema.safetensors").write_bytes(data[: len(data) // 2])
    before = tree_digest(victim)
    assert_one_line_error(cli("eval", victim, "--nfe", "1", "-n", "10"), "corrupt or truncated")
    assert tree_digest(victim) == before


def test_train_refuses_to_overwrite_a_run(trained):
    before = tree_digest(trained)
    assert_one_line_error(cli("train", "--data", "moons", "--out", trained, "--steps", "5"), "already holds a run")
    assert tree_digest(trained) == before


def test_not_a_run_directory(tmp_path):
    assert_one_line_error(cli("eval", tmp_path), "not a run directory")
