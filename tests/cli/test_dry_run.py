"""``--dry-run`` on train, pairs, sample, eval and sweep: the real run's checks, a plan on stdout, nothing written,
exit 0; or the real run's one-line error, exit 2."""

import hashlib
from pathlib import Path

import pytest

from straightflow.cli.main import main

TINY = ["--width", "16", "--depth", "1", "--batch-size", "32", "--progress", "false"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes' digest and its modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dry") / "teacher"
    assert main(["train", "--data", "moons", "--steps", "20", "--ckpt-every", "10", "--out", str(run), *TINY]) == 0
    return run


def test_train_beta_auto_dry_run_creates_nothing(tmp_path, capsys):
    out = tmp_path / "R"
    code, stdout, _ = run_cli(capsys, "train", "--data", "moons", "--method", "curvature", "--beta", "auto",
                              "--dry-run", "--out", out)
    assert code == 0
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert ("would train curvature on moons" in stdout and "pilot beta=inf: trains" in stdout
            and "pilot beta=0.3: trains" in stdout)
    assert f"nothing written to {out}" in stdout


@pytest.mark.parametrize("args, error", [
    (["--betta", "3"], "unrecognized arguments: --betta 3"),
    (["--data", "missing.npy"], "data path missing.npy does not exist"),
])
def test_train_dry_run_gives_the_real_error(tmp_path, capsys, monkeypatch, args, error):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", "moons", "--method", "curvature", "--beta", "auto", "--out", "R"]
    code, _, err = run_cli(capsys, *base, "--dry-run", *args)
    assert code == 2 and err.strip() == f"straightflow: error: {error}"
    assert list(tmp_path.iterdir()) == []
    real_code, _, real_err = run_cli(capsys, *base, *args)  # the real run stops at the same line
    assert (real_code, real_err) == (code, err)


def test_train_dry_run_names_a_misspelt_config_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("bta: 3\n")
    code, _, err = run_cli(capsys, "train", "--config", config, "--data", "moons", "--dry-run", "--out", tmp_path / "R")
    assert code == 2 and "unknown config key 'bta'" in err and "did you mean 'beta'" in err
    assert not (tmp_path / "R").exists()


def test_resume_dry_run_loads_the_checkpoint_and_changes_nothing(teacher, capsys):
    before = snapshot(teacher)
    code, stdout, _ = run_cli(capsys, "train", "--data", "moons", "--steps", "40", "--resume", "--dry-run", "--out",
                              teacher, *TINY)
    assert code == 0 and "starts with step 20 of 40" in stdout
    code, _, err = run_cli(capsys, "train", "--data", "moons", "--steps", "40", "--resume", "--dry-run", "--out",
                           teacher, *TINY[:1], "32", *TINY[2:])
    assert code == 2 and "width=32 differs from the run's saved width=16" in err
    code, _, err = run_cli(capsys, "train", "--data", "moons", "--dry-run", "--out", teacher)
    assert code == 2 and "already holds a run" in err
    assert snapshot(teacher) == before


def test_dry_run_refuses_a_checkpoint_that_does_not_fit(teacher, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(teacher, copy)
    (copy / "checkpoints" / "step-000020" / "ema.safetensors").write_bytes(b"not weights")
    code, _, err = run_cli(capsys, "train", "--steps", "40", "--resume", "--dry-run", "--out", copy)
    assert code == 2 and "ema.safetensors" in err


def test_pairs_dry_run_tries_the_teacher_and_checks_the_folder(teacher, tmp_path, capsys):
    out = tmp_path / "pairs"
    code, stdout, _ = run_cli(capsys, "pairs", teacher, "-n", "300", "--nfe", "4", "--out", out, "--dry-run")
    assert code == 0 and not out.exists()
    assert "0 of 1 shards reused, 300 pairs to generate" in stdout and "4 evaluations each" in stdout
    assert main(["pairs", str(teacher), "-n", "300", "--nfe", "4", "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    code, stdout, _ = run_cli(capsys, "pairs", teacher, "-n", "300", "--nfe", "4", "--out", out, "--dry-run")
    assert code == 0 and "1 of 1 shards reused, 0 pairs to generate" in stdout
    code, _, err = run_cli(capsys, "pairs", teacher, "-n", "300", "--nfe", "8", "--out", out, "--dry-run")
    assert code == 2 and "holds pairs made with other settings (nfe: 4 -> 8)" in err
    code, stdout, _ = run_cli(capsys, "train", "--method", "lines", "--pairs", out, "--steps", "5", "--dry-run",
                              "--out", tmp_path / "s")
    assert code == 0 and "would train lines on 270 teacher pairs" in stdout and not (tmp_path / "s").exists()
    assert snapshot(out) == before


def test_sample_and_eval_dry_runs(teacher, tmp_path, capsys):
    before = snapshot(teacher)
    out = tmp_path / "s.npy"
    code, stdout, _ = run_cli(capsys, "sample", teacher, "--nfe", "3", "--solver", "heun", "--out", out, "--dry-run")
    assert code == 0 and "would draw 1000 samples" in stdout and "heun at NFE 3" in stdout and not out.exists()
    code, _, err = run_cli(capsys, "sample", teacher, "--solver", "eulr", "--out", out, "--dry-run")
    assert code == 2 and "unknown solver 'eulr'" in err
    code, _, err = run_cli(capsys, "sample", teacher, "--guidance", "2", "--out", out, "--dry-run")
    assert code == 2 and "not class-conditional" in err
    code, stdout, _ = run_cli(capsys, "eval", teacher, "--nfe", "1,4", "-n", "500", "--dry-run")
    assert code == 0 and "at NFE 1,4 with euler: 500 samples" in stdout
    code, _, err = run_cli(capsys, "eval", teacher, "--nfe", "1,0", "--dry-run")
    assert code == 2 and "--nfe needs positive integers" in err
    assert snapshot(teacher) == before and list(tmp_path.iterdir()) == []


def test_sweep_dry_run_checks_every_beta(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, _ = run_cli(capsys, "sweep", "--data", "moons", "--betas", "1,inf", "--steps", "10", "--out", out,
                              "--dry-run", *TINY)
    assert code == 0 and not out.exists()
    assert f"run dir {out / 'beta-1'}" in stdout and f"run dir {out / 'beta-inf'}" in stdout
    code, _, err = run_cli(capsys, "sweep", "--data", "moons", "--betas", "1", "--steps", "10", "--solver", "rk5",
                           "--out", out, "--dry-run")
    assert code == 2 and "unknown solver 'rk5'" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--warmup-steps", "-1", "warmup_steps must be >= 0"),
    ("--grad-clip", "-1", "grad_clip must be finite and >= 0"),
    ("--lr", "inf", "lr must be finite and > 0"),
    ("--seed", "-3", "seed and split_seed must be >= 0"),
    ("--split-seed", "-1", "seed and split_seed must be >= 0"),
    ("--image-size", "-8", "image_size must be >= 0"),
])
def test_every_numeric_field_has_a_range(tmp_path, capsys, flag, value, message):
    code, _, err = run_cli(capsys, "train", "--data", "moons", flag, value, "--dry-run", "--out", tmp_path / "R")
    assert code == 2 and err.startswith(f"straightflow: error: {message}") and len(err.strip().splitlines()) == 1


def test_python_dry_run_leaves_a_users_module_untouched(tmp_path, capsys):
    import torch

    import straightflow as sf

    def net():
        torch.manual_seed(5)
        return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2))

    class Velocity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net()

        def forward(self, x, t):
            return self.body(torch.cat([x, t.reshape(-1, 1).to(x)], 1))

    run = tmp_path / "custom"
    sf.train(data="moons", steps=4, ckpt_every=4, progress=False, out=str(run), velocity_net=Velocity())
    mine = Velocity()
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    out = sf.train(resume=True, steps=8, out=str(run), velocity_net=mine, dry_run=True)
    assert out == run and "starts with step 4 of 8" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in mine.state_dict().items())
