"""Teacher pairs, the line sampler, and the pair methods (reflow, distill, lines)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from straightflow import teachers as pairs_mod
from straightflow.checkpoint import latest_checkpoint
from straightflow.cli.main import main
from straightflow.data.pairs import PairData, write_pair_folder
from straightflow.errors import StraightflowError
from straightflow.evaluate import evaluate
from straightflow.experiments.pairs import pairs_from_run as generate_pairs
from straightflow.noise import seeded_noise
from straightflow.objectives import one_step
from straightflow.priors import DiagonalGaussianPrior
from straightflow.run import Run
from straightflow.solvers import solve
from straightflow.training import train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "t"
    train(data="moons", steps=40, out=str(run), width=32, depth=2, batch_size=64, log_every=10, ckpt_every=40,
          progress=False)
    return run


@pytest.fixture(scope="module")
def pairdir(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "p"
    generate_pairs(teacher, 600, out, solver="euler", nfe=4, seed=3, shard_size=256, progress=False)
    return out


def _all_pairs(folder):
    data = PairData.open(folder)
    return data.gather(np.arange(data.n))


def _checksums(folder):
    return [(s["z_sha256"], s["x_sha256"]) for s in json.loads((folder / "manifest.json").read_text())["shards"]]


# ------------------------------------------------------------------ pairs
def test_pair_noise_depends_only_on_seed_and_index():
    prior = DiagonalGaussianPrior()
    whole = seeded_noise(3000, (2,), 7, "pairs", prior)
    parts = torch.cat([seeded_noise(min(a + 700, 3000) - a, (2,), 7, "pairs", prior, start=a)
                       for a in range(0, 3000, 700)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, seeded_noise(3000, (2,), 8, "pairs", prior))


def test_pairs_reproduce_for_a_seed_whatever_the_batch_and_shard_size(teacher, pairdir, tmp_path):
    again = tmp_path / "again"
    generate_pairs(teacher, 600, again, solver="euler", nfe=4, seed=3, shard_size=256, progress=False)
    assert _checksums(again) == _checksums(pairdir)  # bit-identical files
    other = tmp_path / "other"
    generate_pairs(teacher, 600, other, solver="euler", nfe=4, seed=3, shard_size=100, batch_size=37, progress=False)
    (xa, za), (xb, zb) = _all_pairs(pairdir), _all_pairs(other)
    assert torch.equal(za, zb)
    torch.testing.assert_close(xa, xb, rtol=0, atol=1e-5)
    manifest = json.loads((pairdir / "manifest.json").read_text())
    assert manifest["n"] == 600 and manifest["nfe_used"] == 4 and manifest["seed"] == 3 and manifest["shape"] == [2]
    assert manifest["teacher"] == str(teacher.resolve()) and manifest["teacher_config"]["width"] == 32
    # x* is the teacher's Euler solve of z (model units)
    run = Run.load(teacher)
    torch.testing.assert_close(xa[:50], solve(run.velocity, za[:50].to(run.device), "euler", 4).samples.cpu(), rtol=0,
                               atol=1e-5)


def test_pairs_survive_an_interrupted_run(teacher, pairdir, tmp_path, monkeypatch):
    out = tmp_path / "p"
    real_write, written = pairs_mod.write_shard, []

    def dying_write(*args, **kwargs):
        if len(written) == 1:
            raise KeyboardInterrupt  # killed while the second shard is being made
        written.append(args[1])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pairs_mod, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        generate_pairs(teacher, 600, out, solver="euler", nfe=4, seed=3, shard_size=256, progress=False)
    monkeypatch.setattr(pairs_mod, "write_shard", real_write)
    assert not (out / "manifest.json").exists()
    with pytest.raises(StraightflowError, match="incomplete"):
        PairData.open(out)
    summary = generate_pairs(teacher, 600, out, solver="euler", nfe=4, seed=3, shard_size=256, progress=False)
    assert summary["reused_shards"] == 1 and summary["generated_shards"] == 2
    assert _checksums(out) == _checksums(pairdir)
    # a shard damaged after the fact is detected by its checksum and regenerated
    (out / "shard-00001.x.npy").write_bytes((out / "shard-00001.x.npy").read_bytes()[:-40])
    summary = generate_pairs(teacher, 600, out, solver="euler", nfe=4, seed=3, shard_size=256, progress=False)
    assert summary["reused_shards"] == 2 and summary["generated_shards"] == 1
    assert _checksums(out) == _checksums(pairdir)
    # other settings never mix into an existing folder
    with pytest.raises(StraightflowError, match="other settings"):
        generate_pairs(teacher, 600, out, solver="euler", nfe=8, seed=3, shard_size=256, progress=False)


def test_pairs_split_across_torchrun_ranks(teacher, pairdir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "straightflow",
           "pairs", str(teacher), "-n", "600", "--nfe", "4", "--seed", "3", "--shard-size", "256", "--out", str(out),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("pairs in") == 1  # rank 0 reports and writes the manifest
    assert json.loads((out / "manifest.json").read_text())["world_size"] == 2
    if Run.load(teacher).device.type == "cpu":  # same device as the single-process fixture: bit-identical
        assert _checksums(out) == _checksums(pairdir)


def test_pair_data_samples_with_the_training_generator(pairdir):
    data = PairData.open(pairdir)
    assert data.n_train == 540 and data.heldout == 60
    a, ya = data.sample_train(32, torch.Generator().manual_seed(0))
    b, _ = data.sample_train(32, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (32, 2) and ya is None
    x_all, z_all = _all_pairs(pairdir)
    xh, zh = data.heldout_pairs()
    assert torch.equal(xh, x_all[540:]) and torch.equal(zh, z_all[540:])


# ------------------------------------------------------------------ line sampler
def test_line_sampler_with_an_exact_endpoint_predictor_returns_x_star_at_any_nfe():
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[1.5, 0.3], [-0.4, 0.8]])
    b = torch.tensor([0.5, -1.0])
    z = torch.randn(64, 2, generator=g)
    x_star = z @ A.T + b

    def velocity(y, t):
        # the exact endpoint of the line through y: y = ((1 - t) A + t I) z + (1 - t) b
        tt = t.view(-1, 1, 1)
        M = (1 - tt) * A + tt * torch.eye(2)
        z1 = torch.linalg.solve(M, (y - (1 - t).view(-1, 1) * b).unsqueeze(-1)).squeeze(-1)
        return (y - (z1 @ A.T + b)) / t.view(-1, 1)

    for nfe in (1, 2, 3, 7, 16):
        res = solve(velocity, z, "lines", nfe, return_trajectory=True)
        assert res.nfe == nfe
        torch.testing.assert_close(res.samples, x_star, rtol=0, atol=1e-5)
        assert res.trajectory.shape == (nfe + 1, 64, 2)


# ------------------------------------------------------------------ methods
def test_lines_student_recovers_a_straight_map(tmp_path):
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[1.2, 0.5], [-0.3, 0.7]])
    b = torch.tensor([0.4, -0.6])
    z = torch.randn(4096, 2, generator=g)
    folder = write_pair_folder(tmp_path / "map", z, z @ A.T + b, teacher_config={"data": "moons"}, heldout=512)
    run_dir = train(method="lines", pairs=str(folder), init_from_teacher=False, steps=300, width=64, depth=2,
                    batch_size=256, lr=2e-3, out=str(tmp_path / "s"), log_every=100, ckpt_every=300, progress=False)
    run = Run.load(run_dir)
    assert run.method.default_solver == "lines"
    zt = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    target = zt @ A.T + b
    for nfe in (1, 2):
        err = (solve(run.velocity, zt.to(run.device), "lines", nfe).samples.cpu() - target).pow(2).mean()
        assert err < 2e-3, (nfe, float(err))  # target variance is ~1; ~1e-4 reached
    report = evaluate(run, [1], n=300)
    assert report["distill_error"] < 2e-3 and report["heldout_pairs"] == 300 and "prediction_drift" in report


def test_reflow_and_distill_end_to_end(teacher, pairdir, tmp_path):
    r = train(method="reflow", pairs=str(pairdir), steps=20, out=str(tmp_path / "r"), batch_size=64, log_every=10,
              ckpt_every=20, progress=False)
    run = Run.load(r)
    # teacher architecture, fresh init
    assert run.cfg.width == 32 and run.cfg.depth == 2 and not run.cfg.init_from_teacher
    report = evaluate(run, [1, 2], n=200)
    assert {"distill_error", "prediction_drift", "curvature"} <= set(report) and len(report["pair_results"]) == 2
    # distill starts from the teacher's EMA weights (lr ~ 0: the student stays the teacher)
    d = train(method="distill", pairs=str(pairdir), steps=2, lr=1e-12, out=str(tmp_path / "d"), batch_size=64,
              progress=False)
    student = Run.load(d)
    assert student.cfg.init_from_teacher and student.cfg.teacher == str(teacher.resolve())
    t_ema = load_file(str(latest_checkpoint(teacher) / "ema.safetensors"))
    s_ema = load_file(str(latest_checkpoint(d) / "ema.safetensors"))
    for k, v in t_ema.items():
        torch.testing.assert_close(s_ema[k], v)
    x, z = PairData.open(pairdir).heldout_pairs()
    t_run = Run.load(teacher)
    teacher_err = float((one_step(t_run.velocity, z.to(t_run.device)).cpu() - x).pow(2).mean())
    assert abs(evaluate(student, [1], n=200)["distill_error"] - teacher_err) < 1e-5


def test_lines_with_adversary_resumes_exactly(pairdir, tmp_path):
    common = dict(method="lines", pairs=str(pairdir), adv=0.1, sampler_steps=2, recon="pseudo-huber", batch_size=64,
                  log_every=10, ckpt_every=20, progress=False)
    full, part = tmp_path / "full", tmp_path / "part"
    train(steps=40, out=str(full), **common)
    train(steps=20, out=str(part), **common)
    train(out=str(part), steps=40, resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(latest_checkpoint(full) / name)), load_file(str(latest_checkpoint(part) / name))
        assert all(torch.equal(a[k], b[k]) for k in a)
    stats = [json.loads(row) for row in (full / "stats.jsonl").read_text().splitlines()]
    assert {"adv_d_loss", "adv_g_loss", "recon_loss"} <= set(stats[-1])
    state = torch.load(latest_checkpoint(part) / "state.pt", weights_only=False)
    assert "disc" in state["aux"]


# ------------------------------------------------------------------ errors
def _one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = [e for e in capsys.readouterr().err.strip().splitlines() if e.strip()]
    assert len(err) == 1 and pattern in err[0], err


def test_bad_pairs_folders_give_one_line_errors(pairdir, tmp_path, capsys):
    out = str(tmp_path / "run")
    _one_line_error(capsys, ["train", "--method", "lines", "--pairs", str(tmp_path / "nope"), "--out", out],
                    "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["train", "--method", "lines", "--pairs", str(tmp_path / "empty"), "--out", out],
                    "not a pairs folder")
    _one_line_error(capsys, ["train", "--method", "lines", "--out", out], "--pairs PAIRDIR")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in pairdir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "shard-00002.z.npy").unlink()
    _one_line_error(capsys,
                    ["train", "--method", "reflow", "--pairs", str(broken), "--out", out, "--progress", "false"],
                    "shard-00002.z.npy")
    _one_line_error(capsys, ["train", "--method", "lines", "--pairs", str(pairdir), "--recon", "lpips", "--out", out],
                    "lpips is for images")
    _one_line_error(capsys, ["train", "--method", "lines", "--pairs", str(pairdir), "--recon", "l2", "--out", out],
                    "unknown --recon")
    _one_line_error(capsys, ["pairs", str(tmp_path / "noteacher"), "-n", "10", "--out", str(tmp_path / "x")],
                    "not a run directory")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_lpips_needs_weights(tmp_path):
    from straightflow.objectives import load_lpips

    with pytest.raises(StraightflowError, match="needs LPIPS weights"):
        load_lpips(str(tmp_path / "missing.pt"))

    class Dist(torch.nn.Module):
        def forward(self, a, b):
            return (a - b).pow(2).flatten(1).mean(1)

    torch.jit.script(Dist()).save(str(tmp_path / "lpips.pt"))
    net = load_lpips(str(tmp_path / "lpips.pt"))
    assert net(torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)).shape == (3,)


def test_pairs_record_their_prior_and_a_student_of_another_prior_is_refused(pairdir, tmp_path, capsys):
    """A pairs folder names the prior its z came from; a student sampling another prior exits 2 with one line."""
    assert PairData.open(pairdir).manifest["prior"] == "N(0, I)"
    wide = tmp_path / "wide-teacher"
    train(data="moons", prior="wide", steps=4, out=str(wide), width=16, depth=2, batch_size=32, ckpt_every=4,
          progress=False)
    wide_pairs = tmp_path / "wide-pairs"
    generate_pairs(wide, 200, wide_pairs, solver="euler", nfe=2, progress=False)
    manifest = PairData.open(wide_pairs).manifest
    assert manifest["prior"] == "N(0, diag(36, 1))"
    _, z = _all_pairs(wide_pairs)
    assert 4.0 < float(z[:, 0].std()) and float(z[:, 1].std()) < 1.5  # the stored z are the wide prior's
    student = ["train", "--method", "lines", "--steps", "2", "--progress", "false", "--width", "16", "--depth", "2"]
    _one_line_error(capsys,
                    [*student, "--pairs", str(wide_pairs), "--prior", "standard", "--out", str(tmp_path / "s1")],
                    "start from noise z ~ N(0, diag(36, 1)), but this run samples z ~ N(0, I)")
    _one_line_error(capsys, [*student, "--pairs", str(pairdir), "--prior", "wide", "--out", str(tmp_path / "s2")],
                    "start from noise z ~ N(0, I), but this run samples z ~ N(0, diag(36, 1))")
    assert not (tmp_path / "s1" / "checkpoints").exists() and not (tmp_path / "s2" / "checkpoints").exists()
    # the same prior as the teacher's (inherited from its config) trains
    assert main([*student, "--pairs", str(wide_pairs), "--out", str(tmp_path / "s3")]) == 0


def test_a_lines_student_of_vector_pairs_takes_the_measured_recipe_unless_told(pairdir, tmp_path):
    common = dict(pairs=str(pairdir), steps=2, batch_size=64, progress=False)
    run = Run.load(train(method="lines", out=str(tmp_path / "l"), **common))
    recipe = (run.cfg.sampler_steps, run.cfg.t1_fraction, run.cfg.lr, run.cfg.recon)
    assert recipe == (2, 0.9, 3e-3, "pseudo-huber")  # docs/student_gap.md
    assert run.method.default_nfe(run.cfg) == 2
    told = Run.load(train(method="lines", sampler_steps=0, t1_fraction=None, lr=1e-3, recon="mse",
                          out=str(tmp_path / "t"), **common))
    assert (told.cfg.sampler_steps, told.cfg.t1_fraction, told.cfg.lr, told.cfg.recon) == (0, None, 1e-3, "mse")
    # the t = 1 share comes with the default times: a student given its own sampler steps keeps them uniform
    k4 = Run.load(train(method="lines", sampler_steps=4, out=str(tmp_path / "k4"), **common))
    assert (k4.cfg.sampler_steps, k4.cfg.t1_fraction, k4.cfg.lr, k4.cfg.recon) == (4, None, 3e-3, "pseudo-huber")
    k4f = Run.load(train(method="lines", sampler_steps=4, t1_fraction=0.5, out=str(tmp_path / "k4f"), **common))
    assert (k4f.cfg.sampler_steps, k4f.cfg.t1_fraction) == (4, 0.5)
    other = Run.load(train(method="distill", out=str(tmp_path / "d"), **common))
    assert (other.cfg.sampler_steps, other.cfg.t1_fraction, other.cfg.lr, other.cfg.recon) == (0, None, 1e-3, "mse")


def test_a_lines_student_of_image_pairs_takes_the_image_recipe_unless_told(tmp_path):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(96, 1, 8, 8, generator=g)
    folder = write_pair_folder(tmp_path / "img", z, z.clamp(-1, 1), teacher_config={"data": "digits"}, heldout=16)
    common = dict(pairs=str(folder), init_from_teacher=False, steps=2, batch_size=16, channels=8, num_res_blocks=1,
                  progress=False)
    default = train(method="lines", out=str(tmp_path / "l"), **common)
    run = Run.load(default)
    recipe = (run.cfg.sampler_steps, run.cfg.t1_fraction, run.cfg.lr, run.cfg.recon)
    assert recipe == (2, 0.9, 1e-3, "pseudo-huber")  # the base lr: docs/student_gap.md, "Digits"
    spelt = train(method="lines", sampler_steps=2, t1_fraction=0.9, recon="pseudo-huber", out=str(tmp_path / "s"),
                  **common)
    weights = [load_file(str(latest_checkpoint(d) / "model.safetensors")) for d in (default, spelt)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the default is those flags, bit for bit
    told = Run.load(train(method="lines", sampler_steps=0, recon="mse", out=str(tmp_path / "t"), **common))
    assert (told.cfg.sampler_steps, told.cfg.t1_fraction, told.cfg.lr, told.cfg.recon) == (0, None, 1e-3, "mse")
    lp = Run.load(train(method="lines", recon="mse", lr=2e-3, out=str(tmp_path / "m"), **common))
    assert (lp.cfg.sampler_steps, lp.cfg.t1_fraction, lp.cfg.lr, lp.cfg.recon) == (2, 0.9, 2e-3, "mse")
