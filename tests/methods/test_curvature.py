"""The curvature method: learned coupling q_phi(z|x), eval extras, plots and the beta sweep."""

import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from straightflow.cli.main import main
from straightflow.config import TrainConfig
from straightflow.couplings import IndependentCoupling, LearnedGaussianCoupling
from straightflow.data import load_data
from straightflow.errors import StraightflowError
from straightflow.evaluate import evaluate
from straightflow.methods import build_module
from straightflow.paths import interpolate, sample_times, velocity_target
from straightflow.plots import PLOTS
from straightflow.priors import DiagonalGaussianPrior
from straightflow.run import Run
from straightflow.training import train


def _cfg(**kw):
    cfg = TrainConfig()
    for k, v in {**dict(width=32, depth=2, method="curvature", beta=10.0), **kw}.items():
        setattr(cfg, k, v)
    return cfg


def _module(**kw):
    cfg = _cfg(**kw)
    data = load_data(cfg.data, cfg)
    torch.manual_seed(0)
    module, method, prior = build_module(cfg, data)
    module.objective, _ = method.build_objective(cfg, data, torch.device("cpu"))
    return module, data, prior, cfg


@pytest.mark.parametrize("std", [None, torch.tensor([6.0, 1.0])])
def test_kl_matches_closed_form_per_dimension(std):
    prior = DiagonalGaussianPrior(std)
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    p_std = torch.ones(2) if std is None else std
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(2), p_std)).mean(dim=1)
    torch.testing.assert_close(prior.kl_per_dim(mu, logvar), ref)

    # the coupling's aux loss is beta * (per-dimension KL averaged over the batch)
    class Fixed(torch.nn.Module):  # encoder emitting (mu', logvar') in the prior's standardised units
        out = torch.nn.Linear(1, 1)

        def forward(self, x, t):
            return self.h

    enc = Fixed()
    mu_s = mu if std is None else mu / std
    lv_s = logvar if std is None else logvar - 2 * std.log()
    enc.h = torch.cat([mu_s, lv_s], dim=1)
    coupling = LearnedGaussianCoupling(prior, enc, beta=3.0)
    pair = coupling(torch.zeros(64, 2), torch.Generator().manual_seed(1))
    torch.testing.assert_close(pair.aux_loss, 3.0 * ref.mean())
    torch.testing.assert_close(pair.stats["kl"], ref.mean())
    m, lv = coupling.encode(torch.zeros(64, 2))
    torch.testing.assert_close(m, mu)
    torch.testing.assert_close(lv, logvar)


@pytest.mark.parametrize("prior_name", ["standard", "wide"])
def test_zero_init_head_starts_at_the_independent_coupling(prior_name):
    module, data, prior, cfg = _module(prior=prior_name)
    coupling = module.coupling
    x, _ = data.sample_train(128, torch.Generator().manual_seed(0))
    mu, logvar = coupling.encode(x)
    assert torch.all(mu == 0)
    expected_lv = torch.zeros_like(x) if prior.std is None else (2 * prior.std.log()).expand_as(x)
    torch.testing.assert_close(logvar, expected_lv)
    # the first step's pair, z and loss equal the independent coupling's (same generator)
    learned = coupling(x, torch.Generator().manual_seed(5))
    indep = IndependentCoupling(prior)(x, torch.Generator().manual_seed(5))
    assert torch.equal(learned.z, indep.z)
    assert float(learned.aux_loss.detach()) == 0.0
    base_cfg = _cfg(prior=prior_name, method="rectified")
    torch.manual_seed(0)
    base, base_method, _ = build_module(base_cfg, data)
    base.objective, _ = base_method.build_objective(base_cfg, data, torch.device("cpu"))
    loss_l, _ = module(x, torch.Generator().manual_seed(9))
    loss_b, _ = base(x, torch.Generator().manual_seed(9))
    assert torch.equal(loss_l, loss_b)


def test_gradients_reach_the_encoder_through_x_t_and_through_the_target():
    module, data, prior, cfg = _module(beta=1.0)
    x, _ = data.sample_train(128, torch.Generator().manual_seed(0))
    head = module.coupling.encoder.out

    def encoder_grad(which):
        module.zero_grad(set_to_none=True)
        g = torch.Generator().manual_seed(3)
        pair = module.coupling(x, g)
        t = sample_times(x.shape[0], g, cfg.t_min)
        z_xt = pair.z if which in ("x_t", "both") else pair.z.detach()
        z_tg = pair.z if which in ("target", "both") else pair.z.detach()
        loss = (module.velocity(interpolate(x, z_xt, t), t) - velocity_target(x, z_tg)).pow(2).mean()
        loss.backward()
        return head.weight.grad.clone(), head.bias.grad.clone()

    for which in ("x_t", "target"):
        gw, gb = encoder_grad(which)
        assert gw.abs().sum() > 0 and gb.abs().sum() > 0, which
    # no stop-gradient anywhere: the full training loss sends both contributions
    both = encoder_grad("both")
    parts = [encoder_grad(w) for w in ("x_t", "target")]
    torch.testing.assert_close(both[1], parts[0][1] + parts[1][1], rtol=1e-4, atol=1e-6)
    module.zero_grad(set_to_none=True)
    loss, stats = module(x, torch.Generator().manual_seed(3))
    loss.backward()
    assert head.weight.grad.abs().sum() > 0
    assert {"flow_loss", "kl", "z_norm", "z_norm_prior"} <= set(stats)


def test_beta_inf_is_the_independent_coupling_without_an_encoder():
    module, data, prior, cfg = _module(beta=math.inf)
    assert module.coupling.encoder is None and sum(p.numel() for p in module.coupling.parameters()) == 0
    x, _ = data.sample_train(64, torch.Generator().manual_seed(0))
    a = module.coupling(x, torch.Generator().manual_seed(2))
    b = IndependentCoupling(prior)(x, torch.Generator().manual_seed(2))
    assert torch.equal(a.z, b.z) and a.aux_loss is None
    with pytest.raises(StraightflowError):
        _module(beta=-1.0)
    with pytest.raises(StraightflowError):
        _module(encoder="huge")


def test_encoder_sizes():
    small, *_ = _module(width=256, depth=3, encoder="small")
    same, *_ = _module(width=256, depth=3, encoder="same")
    n_vel = sum(p.numel() for p in small.velocity.parameters())
    n_small = sum(p.numel() for p in small.coupling.parameters())
    n_same = sum(p.numel() for p in same.coupling.parameters())
    assert n_vel / n_small > 10  # Table 2: about 20x smaller
    assert n_same > 0.9 * n_vel


def test_very_large_beta_trains_like_the_baseline(tmp_path):
    common = dict(data="moons", steps=600, batch_size=256, width=64, depth=2, seed=0, progress=False, ckpt_every=600)
    base = Run.load(train(method="rectified", out=str(tmp_path / "base"), **common))
    big = Run.load(train(method="curvature", beta=1e6, out=str(tmp_path / "big"), **common))
    rb = evaluate(base, [1, 8], n=1000)
    rc = evaluate(big, [1, 8], n=1000)
    assert rc["kl"] < 1e-4
    assert abs(rc["flow_loss_heldout"] - rb["flow_loss_heldout"]) < 0.1 * rb["flow_loss_heldout"]
    assert abs(rc["curvature"] - rb["curvature"]) < 0.25 * rb["curvature"]
    for a, b in zip(rc["results"], rb["results"]):
        assert abs(a["w2"] - b["w2"]) < 0.15 * b["w2"] + 0.02, (a, b)
    # the eval extras of a curvature run: KL, ||z|| and reconstruction per NFE
    assert [r["nfe"] for r in rc["recon_results"]] == [1, 8]
    assert rc["recon_w2"] == rc["recon_results"][-1]["recon_w2"] and rc["recon_nfe"] == 8
    assert abs(rc["z_norm"] - rc["z_norm_prior"]) < 0.1


def test_sweep_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--data", "moons", "--betas", "1,inf", "--steps", "100", "--out", str(out), "--nfe", "1,4", "-n",
            "300", "--width", "32", "--depth", "2", "--batch-size", "128", "--progress", "false", "--log-every", "50"]
    assert main(argv) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["beta"] for r in sweep["runs"]] == [1.0, "inf"]
    assert [r["method"] for r in sweep["runs"]] == ["curvature", "rectified"]
    cur = sweep["runs"][0]["report"]
    assert {"kl", "recon_w2", "z_norm", "curvature"} <= set(cur)
    table = (out / "sweep.md").read_text()
    assert "w2 NFE 1" in table and "w2 NFE 4" in table and "| inf | rectified |" in table
    for name in ("curvature_vs_beta.png", "quality_vs_nfe.png", "recon_gap.png", "trajectories.png"):
        assert (out / name).stat().st_size > 1000, name
    # stats of the curvature run carry the flow loss, KL and ||z|| under q vs the prior
    rec = json.loads((out / "beta-1" / "stats.jsonl").read_text().splitlines()[-1])
    assert {"flow_loss", "kl", "z_norm", "z_norm_prior"} <= set(rec)
    # run plots: forward/reverse trajectories and the ||z|| histogram
    run = Run.load(out / "beta-1")
    args = dict(n=100, nfe=10, solver=None, seed=0)
    PLOTS["trajectories"](run, tmp_path / "traj.png", **args)
    PLOTS["znorm"](run, tmp_path / "znorm.png", **args)
    assert (tmp_path / "traj.png").exists() and (tmp_path / "znorm.png").exists()
    with pytest.raises(StraightflowError):
        PLOTS["znorm"](Run.load(out / "beta-inf"), tmp_path / "z.png", **args)
    # resumable: a second call retrains nothing and reuses the evaluations
    capsys.readouterr()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert log.count("skipping training") == 2 and log.count("reusing") == 2
    # bad betas are a one-line error
    assert main(["sweep", "--data", "moons", "--betas", "1,x", "--steps", "1", "--out", str(tmp_path / "bad")]) == 2


def test_sweep_trains_betas_in_parallel_processes(tmp_path, capsys):
    """--jobs 2: both betas train at once as `straightflow train` processes; the table and runs are complete."""
    out = tmp_path / "sweep"
    argv = ["sweep", "--data", "moons", "--betas", "3,inf", "--steps", "30", "--out", str(out), "--nfe", "1",
            "-n", "200", "--width", "16", "--depth", "1", "--batch-size", "64", "--progress", "false", "--jobs", "2",
            "--no-trajectories"]
    assert main(argv) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["method"] for r in sweep["runs"]] == ["curvature", "rectified"]
    assert Run.load(out / "beta-3").cfg.beta == 3.0 and Run.load(out / "beta-3").step == 30
    assert "run written" in (out / "beta-inf.train.log").read_text()
    # a failing training names its beta and log
    bad = ["sweep", "--data", "moons", "--betas", "1,inf", "--steps", "5", "--out", str(tmp_path / "bad"),
           "--jobs", "2", "--lr", "-1"]
    capsys.readouterr()
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "beta=1" in err and "lr must be finite and > 0" in err and err.count("\n") == 1
