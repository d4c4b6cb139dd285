"""Training loop: exact resume, EMA, run directories, couplings."""

import json

import pytest
import torch
from safetensors.torch import load_file

from straightflow.checkpoint import latest_checkpoint, list_checkpoints
from straightflow.couplings import IndependentCoupling, MinibatchOTCoupling
from straightflow.errors import StraightflowError
from straightflow.priors import DiagonalGaussianPrior
from straightflow.run import Run
from straightflow.training import train
from straightflow.training.ema import EMA


def _weights(run_dir):
    ckpt = latest_checkpoint(run_dir)
    return load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors"))


@pytest.mark.parametrize("method", ["rectified", "ot"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, quick_overrides, method):
    full, part = tmp_path / "full", tmp_path / "part"
    train(data="moons", method=method, steps=60, out=str(full), **quick_overrides)
    train(data="moons", method=method, steps=30, out=str(part), **quick_overrides)
    train(out=str(part), steps=60, resume=True)
    for a, b in zip(_weights(full), _weights(part)):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    stats_full = [json.loads(row)["loss"] for row in (full / "stats.jsonl").read_text().splitlines()]
    stats_part = [json.loads(row)["loss"] for row in (part / "stats.jsonl").read_text().splitlines()]
    assert stats_full == stats_part


def test_run_directory_layout_and_keep(tmp_path, quick_overrides):
    run = tmp_path / "r"
    train(data="8gaussians", steps=50, out=str(run), **{**quick_overrides, "keep_checkpoints": 2, "ckpt_every": 10})
    assert (run / "config.yaml").exists()
    assert [p.name for p in list_checkpoints(run)] == ["step-000040", "step-000050"]
    ckpt = latest_checkpoint(run)
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "ema.safetensors", "state.pt", "meta.json"}
    lines = [json.loads(row) for row in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30, 40, 50] and all("loss" in r and "steps_per_sec" in r
                                                                      for r in lines)


def test_existing_run_is_never_overwritten(tmp_path, quick_overrides):
    run = tmp_path / "r"
    train(data="moons", steps=20, out=str(run), **quick_overrides)
    before = (latest_checkpoint(run) / "model.safetensors").read_bytes()
    with pytest.raises(StraightflowError, match="already holds a run"):
        train(data="moons", steps=20, out=str(run), **quick_overrides)
    with pytest.raises(StraightflowError, match="differs from the run's saved"):
        train(out=str(run), steps=40, lr=0.5, resume=True)
    assert (latest_checkpoint(run) / "model.safetensors").read_bytes() == before


def test_leftover_temporary_checkpoint_is_ignored(tmp_path, quick_overrides):
    run = tmp_path / "r"
    train(data="moons", steps=20, out=str(run), **quick_overrides)
    (run / "checkpoints" / ".tmp-step-000030-999").mkdir()  # a crash mid-write
    assert latest_checkpoint(run).name == "step-000020"
    Run.load(run)


def test_ema_warms_up_and_tracks():
    lin = torch.nn.Linear(1, 1, bias=False)
    lin.weight.data.fill_(0.0)
    ema = EMA(lin, decay=0.9999)
    assert ema.effective_decay(0) == pytest.approx(0.1)
    assert ema.effective_decay(4000) < 0.998  # a fixed 0.9999 would still be the init
    lin.weight.data.fill_(1.0)
    for step in range(4000):
        ema.update(step)
    assert ema.shadow.weight.item() > 0.99


def test_ot_coupling_is_a_permutation_that_lowers_cost():
    prior = DiagonalGaussianPrior()
    x = 0.3 * torch.randn(128, 2, generator=torch.Generator().manual_seed(0))
    ind = IndependentCoupling(prior)(x, torch.Generator().manual_seed(1))
    ot_pair = MinibatchOTCoupling(prior)(x, torch.Generator().manual_seed(1))
    # same noise multiset (marginal preserved), re-paired
    assert torch.equal(torch.sort(ot_pair.z[:, 0]).values, torch.sort(ind.z[:, 0]).values)
    assert (ot_pair.x - ot_pair.z).pow(2).sum() < 0.7 * (ind.x - ind.z).pow(2).sum()
    sk = MinibatchOTCoupling(prior, solver="sinkhorn", reg=0.05)(x, torch.Generator().manual_seed(1))
    assert (sk.x - sk.z).pow(2).sum() < (ind.x - ind.z).pow(2).sum()


def test_samples_do_not_depend_on_sampling_batch_size(tmp_path, quick_overrides):
    train(data="moons", steps=20, out=str(tmp_path / "r"), **quick_overrides)
    run = Run.load(tmp_path / "r")
    a = run.sample(2500, nfe=4, seed=3, batch_size=4096).samples
    b = run.sample(2500, nfe=4, seed=3, batch_size=333).samples
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, run.sample(2500, nfe=4, seed=4).samples)


def test_wide_prior_trains_and_samples(tmp_path, quick_overrides):
    train(data="two-gaussians", prior="wide", steps=20, out=str(tmp_path / "r"), **quick_overrides)
    run = Run.load(tmp_path / "r")
    z = run.noise(5000)
    assert 5.5 < float(z[:, 0].std()) < 6.5 and 0.9 < float(z[:, 1].std()) < 1.1


def test_amp_and_compile_are_cuda_only_and_change_nothing_on_cpu(tmp_path, quick_overrides, capsys):
    """On the CPU --amp bf16 / --compile are announced and ignored: the run equals a plain one."""
    plain = train(**quick_overrides, steps=40, out=str(tmp_path / "plain"), device="cpu")
    capsys.readouterr()
    fast = train(**quick_overrides, steps=40, out=str(tmp_path / "fast"), device="cpu", amp="bf16", compile=True)
    assert "apply on CUDA only" in capsys.readouterr().out
    (_, a), (_, b) = _weights(plain), _weights(fast)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _OwnVelocity(torch.nn.Module):
    """A user's own velocity net: not from straightflow.models."""

    def __init__(self, dim: int = 2, width: int = 32):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, width), torch.nn.SiLU(), torch.nn.Linear(width, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=1))


class _OwnEncoder(torch.nn.Module):
    """A user's encoder for the curvature method: twice the channels out, a `.out` head to zero-initialise."""

    def __init__(self, dim: int = 2, width: int = 16):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.SiLU())
        self.out = torch.nn.Linear(width, 2 * dim)

    def forward(self, x, t):
        return self.out(self.body(x))


def test_train_accepts_a_users_own_velocity_module_with_resume_and_loading(tmp_path, quick_overrides):
    full, part = tmp_path / "full", tmp_path / "part"
    torch.manual_seed(5)
    train(data="moons", steps=40, out=str(full), velocity_net=_OwnVelocity(), **quick_overrides)
    torch.manual_seed(5)
    train(data="moons", steps=20, out=str(part), velocity_net=_OwnVelocity(), **quick_overrides)
    with pytest.raises(StraightflowError, match="velocity_net"):
        train(out=str(part), steps=40, resume=True)  # the module must be given again
    torch.manual_seed(5)
    train(out=str(part), steps=40, resume=True, velocity_net=_OwnVelocity())
    for a, b in zip(_weights(full), _weights(part)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "model: custom" in (full / "config.yaml").read_text()
    with pytest.raises(StraightflowError, match="velocity_net"):
        Run.load(full)
    run = Run.load(full, velocity_net=_OwnVelocity())
    out = run.sample(50, nfe=4)
    assert out.samples.shape == (50, 2) and torch.isfinite(out.samples).all()
    assert out.solver == "euler" and out.nfe == 4  # solver=None -> the method's default


def test_curvature_method_wraps_a_users_own_encoder(tmp_path, quick_overrides):
    run_dir = tmp_path / "cur"
    train(data="moons", method="curvature", beta=1.0, steps=20, out=str(run_dir), velocity_net=_OwnVelocity(),
          encoder_net=_OwnEncoder(), **quick_overrides)
    state = load_file(str(latest_checkpoint(run_dir) / "ema.safetensors"))
    assert any(k.startswith("coupling.encoder.out.") for k in state)
    assert "encoder: custom" in (run_dir / "config.yaml").read_text()
    with pytest.raises(StraightflowError, match="encoder_net="):
        Run.load(run_dir, velocity_net=_OwnVelocity())
    run = Run.load(run_dir, velocity_net=_OwnVelocity(), encoder_net=_OwnEncoder())
    mu, logvar = run.module.coupling.encode(torch.zeros(3, 2))
    assert mu.shape == (3, 2) and logvar.shape == (3, 2)


def test_an_encoder_for_a_method_without_one_is_an_error(tmp_path, quick_overrides):
    with pytest.raises(StraightflowError, match="curvature"):
        train(data="moons", steps=2, out=str(tmp_path / "r"), encoder_net=_OwnEncoder(), **quick_overrides)


def test_minibatch_ot_rejects_an_unknown_solver(tmp_path):
    with pytest.raises(StraightflowError, match="OT solver"):
        MinibatchOTCoupling(solver="hungarian")
    with pytest.raises(StraightflowError, match="ot_solver"):
        train(data="moons", method="ot", ot_solver="hungarian", steps=1, out=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_the_encoder_config_field_still_reaches_the_config_through_train(tmp_path, quick_overrides):
    """``encoder="same"`` is the config field (an encoder size), not a module (regression: it was taken for one)."""
    run_dir = train(data="moons", method="curvature", beta=1.0, encoder="same", steps=2, out=str(tmp_path / "r"),
                    **quick_overrides)
    assert "encoder: same" in (run_dir / "config.yaml").read_text()


def test_cosine_lr_schedule_warms_up_then_decays_to_zero_and_is_logged(tmp_path, quick_overrides):
    from straightflow.config import TrainConfig, validate
    from straightflow.training.trainer import lr_at

    cfg = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, lr_schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 10) == pytest.approx(1e-3)
    assert lr_at(cfg, 60) == pytest.approx(5e-4)
    assert lr_at(cfg, 109) < 1e-6
    assert lr_at(TrainConfig(lr=1e-3, warmup_steps=10, steps=110), 109) == pytest.approx(1e-3)  # constant: the default
    with pytest.raises(StraightflowError, match="lr_schedule"):
        validate(TrainConfig(lr_schedule="step"))
    run = tmp_path / "r"
    train(data="moons", steps=40, out=str(run), lr_schedule="cosine", warmup_steps=1, **quick_overrides)
    lrs = [json.loads(row)["lr"] for row in (run / "stats.jsonl").read_text().splitlines()]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.01 * lrs[0]
