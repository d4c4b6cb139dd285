"""Every method of ``METHODS`` (so every coupling and objective they build), unconditional and class-conditional,
goes through the training module for a few steps, resumes, exports, loads from the export and samples."""

import math

import pytest
import torch

import straightflow as sf
from straightflow.experiments.pairs import pairs_from_run
from straightflow.methods import METHODS, Method

SMALL = dict(data="8gaussians", width=16, depth=2, batch_size=32, ckpt_every=3, log_every=3, progress=False)
#: what a method needs beyond SMALL to exercise its own pieces (the curvature method's KL budget, the lines critic)
EXTRA = {"curvature": dict(kl_target=0.1, beta=3.0), "lines": dict(adv=0.1)}


@pytest.fixture(scope="module")
def teacher_pairs(tmp_path_factory):
    """Pairs of a small teacher, unconditional and conditional."""
    out = {}
    for conditional in (False, True):
        root = tmp_path_factory.mktemp(f"teacher-{conditional}")
        teacher = sf.train(out=str(root / "run"), steps=6, conditional=conditional, **SMALL)
        pairs_from_run(teacher, 200, root / "pairs", nfe=2, device="cpu", progress=False)
        out[conditional] = root / "pairs"
    return out


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_resumes_exports_loads_and_samples(name, conditional, teacher_pairs, tmp_path):
    method = METHODS[name]
    kw = dict(SMALL, method=name, conditional=conditional, **EXTRA.get(name, {}))
    if method.trains_on_pairs:
        kw.update(pairs=str(teacher_pairs[conditional]))
    run_dir = sf.train(out=str(tmp_path / "run"), steps=6, **kw)
    sf.train(out=str(run_dir), resume=True, steps=9)
    run = sf.load(run_dir, device="cpu")
    assert run.step == 9 and run.method is method and run.conditional == conditional
    sf.export(run_dir, tmp_path / "model")
    model = sf.load(tmp_path / "model", device="cpu")
    out = model.sample(16, nfe=2, seed=1)
    assert out.samples.shape == (16, 2) and bool(torch.isfinite(out.samples).all())
    assert torch.equal(out.samples, run.sample(16, nfe=2, seed=1).samples)  # the export is the run's EMA weights
    assert model.recommended["nfe"] == method.default_nfe(run.cfg)
    assert method.description and method.name == name


def test_the_facts_of_a_method_live_on_the_method():
    for name, method in METHODS.items():
        assert isinstance(method, Method) and method.name == name and method.description
        assert method.default_nfe(sf.TrainConfig(method=name)) >= 1
    assert METHODS["curvature"].accepts_encoder and not METHODS["rectified"].accepts_encoder
    assert METHODS["curvature"].coupling_label(sf.TrainConfig(method="curvature", beta=math.inf)) == "beta = inf"
    assert METHODS["lines"].default_nfe(sf.TrainConfig(method="lines", sampler_steps=3)) == 3


def test_a_run_of_a_users_own_method_asks_for_it_again(tmp_path):
    class Mine(Method):
        name = "mine"

    run_dir = sf.train(out=str(tmp_path / "run"), method=Mine(), steps=3, **SMALL)
    assert sf.load(run_dir, method=Mine()).cfg.method == "custom"
    with pytest.raises(sf.StraightflowError, match="method: custom"):
        sf.load(run_dir)
    with pytest.raises(sf.StraightflowError, match="method: custom"):
        sf.train(out=str(run_dir), resume=True, steps=4)
    with pytest.raises(sf.StraightflowError, match="must be an instance of straightflow.methods.Method"):
        sf.load(run_dir, method=object())
    with pytest.raises(sf.StraightflowError, match="but this run's method is 'rectified'"):
        sf.load(sf.train(out=str(tmp_path / "plain"), steps=3, **SMALL), method=Mine())
