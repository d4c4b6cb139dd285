"""A prior fitted to a curvature run's aggregate posterior (``Run.fit_prior``, ``straightflow fit-prior``):
the mixture's sampling and fit against known answers, its file, and what a run does with it."""


import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.errors import StraightflowError
from straightflow.evaluate import evaluate
from straightflow.priors import FITTED_PRIOR_FILE, MixturePrior, check_mixture, fit_mixture
from straightflow.run import Run
from straightflow.training import train


def _two_gaussians(covariance: str) -> MixturePrior:
    means = torch.tensor([[-4.0, 0.0, 1.0], [4.0, 2.0, -1.0]])
    if covariance == "full":
        scale = torch.stack([torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 0.2]]), torch.eye(3) * 0.3])
    else:
        scale = torch.tensor([[1.0, 0.5, 0.2], [0.3, 0.3, 0.3]])
    return MixturePrior(torch.tensor([0.25, 0.75]), means, scale, (3,))


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_a_mixture_draws_each_component_with_its_weight_mean_and_covariance(covariance):
    prior = _two_gaussians(covariance)
    z = prior.sample((40_000, 3), generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, prior.sample((40_000, 3), generator=torch.Generator().manual_seed(0)))  # seeded
    right = z[:, 0] > 0  # the components are 8 standard deviations apart along the first axis
    assert abs(right.float().mean().item() - 0.75) < 0.01
    for k, rows in enumerate((z[~right], z[right])):
        scale = prior.scale[k] if covariance == "full" else torch.diag(prior.scale[k])
        cov = scale @ scale.T
        assert torch.allclose(rows.mean(0), prior.means[k], atol=0.03)
        assert torch.allclose(torch.cov(rows.T), cov, atol=0.04)
    with pytest.raises(ValueError, match="shape"):
        prior.sample((4, 2))


def test_fitting_recovers_a_known_mixture():
    truth = _two_gaussians("full")
    z = truth.sample((6000, 3), generator=torch.Generator().manual_seed(1))
    fit = fit_mixture(z, components=2, covariance="full", seed=0)
    order = torch.argsort(fit.means[:, 0])
    assert torch.allclose(fit.weights[order], truth.weights, atol=0.02)
    assert torch.allclose(fit.means[order], truth.means, atol=0.06)
    cov = fit.scale[order] @ fit.scale[order].transpose(1, 2)
    assert torch.allclose(cov, truth.scale @ truth.scale.transpose(1, 2), atol=0.06)
    assert fit.shape == (3,) and fit.covariance == "full"


def test_the_fitted_prior_file_round_trips_and_a_bad_one_gets_a_one_line_error(tmp_path):
    prior = _two_gaussians("diag")
    prior.save(tmp_path / "p.safetensors")
    back = MixturePrior.load(tmp_path / "p.safetensors")
    pairs = zip((back.weights, back.means, back.scale), (prior.weights, prior.means, prior.scale))
    assert back.shape == (3,) and all(torch.equal(a, b) for a, b in pairs)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StraightflowError, match="not a fitted prior") as err:
        MixturePrior.load(tmp_path / "bad.safetensors")
    assert "\n" not in str(err.value)
    MixturePrior(prior.weights, prior.means * float("nan"), prior.scale, (3,)).save(tmp_path / "nan.safetensors")
    with pytest.raises(StraightflowError, match="non-finite"):
        MixturePrior.load(tmp_path / "nan.safetensors")


@pytest.mark.parametrize("args, message", [((8, 100, 10, "spherical"), "full or diag"),
                                           ((8, 15, 10, "full"), "2 points per component"),
                                           ((0, 100, 10, "full"), "components >= 1"),
                                           ((2, 100, 2048, "full"), "diag")])
def test_sizes_a_mixture_cannot_be_fitted_at_are_refused(args, message):
    with pytest.raises(StraightflowError, match=message):
        check_mixture(*args)


@pytest.fixture(scope="module")
def ring_runs(tmp_path_factory):
    """A 10-D point cloud (8 tight clusters) and, on it, a curvature run at a low beta and a (2-step) rectified one.
    At this size one step from the fitted prior scored about 0.32x the W2 of one step from N(0, I)."""
    root = tmp_path_factory.mktemp("fitted")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 10))
    centres *= 3.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, 8, 6000)] + 0.1 * rng.normal(size=(6000, 10))
    np.save(root / "clusters.npy", x.astype(np.float32))
    common = dict(data=str(root / "clusters.npy"), batch_size=256, width=64, depth=3, seed=0, progress=False)
    curv = train(method="curvature", beta=0.1, steps=400, ckpt_every=400, out=str(root / "curv"), **common)
    base = train(method="rectified", steps=2, out=str(root / "base"), **common)
    return root, curv, base


def test_a_fitted_prior_is_what_one_step_needs_and_sampling_eval_use_it(ring_runs, capsys):
    root, curv, _ = ring_runs
    plain = evaluate(Run.load(curv), [1], n=1000, seeds=2)
    assert "noise" not in plain
    assert main(["fit-prior", str(curv), "--dry-run"]) == 0
    assert not list(root.glob(f"curv/checkpoints/*/{FITTED_PRIOR_FILE}"))  # a dry run writes nothing
    assert main(["fit-prior", str(curv), "-n", "4000"]) == 0
    assert "written to" in capsys.readouterr().out
    run = Run.load(curv)
    assert run.fitted_prior and (run.checkpoint / FITTED_PRIOR_FILE).exists()
    assert torch.equal(run.noise(50, seed=3), run.noise(50, seed=3))
    fitted = evaluate(run, [1], n=1000, seeds=2)
    assert fitted["noise"].startswith("a fitted mixture of 8 Gaussians")
    # one step from noise like the encoder's z beats one step from N(0, I) (docs/guide.md, "A fitted prior")
    assert fitted["results"][0]["w2"] < 0.7 * plain["results"][0]["w2"], (fitted["results"], plain["results"])
    out = root / "s.npy"
    assert main(["sample", str(curv), "-n", "64", "--out", str(out)]) == 0
    expected = run.sample(64, nfe=1).samples.numpy()
    assert np.allclose(np.load(out), expected, atol=1e-6)


def _refused(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_what_cannot_carry_a_fitted_prior_says_so(ring_runs, tmp_path, capsys):
    root, curv, base = ring_runs
    run = Run.load(curv)
    if not run.fitted_prior:
        run.fit_prior(n=2000)
    _refused(["pairs", str(curv), "-n", "10", "--out", str(tmp_path / "p")], "fitted prior", capsys)
    _refused(["export", str(curv), "--out", str(tmp_path / "e")], "fitted prior", capsys)
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()
    _refused(["fit-prior", str(base)], "no encoder", capsys)
    _refused(["fit-prior", str(curv), "-n", "5", "--dry-run"], "2 points per component", capsys)
    (run.checkpoint / FITTED_PRIOR_FILE).write_text("garbage")
    _refused(["sample", str(curv), "-n", "4", "--out", str(tmp_path / "s.npy")], "not a fitted prior", capsys)
    (run.checkpoint / FITTED_PRIOR_FILE).unlink()
    assert not Run.load(curv).fitted_prior
