"""Image metrics: FD, KID and precision/recall against closed forms; eval --seeds; progress in samples."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from straightflow.errors import StraightflowError
from straightflow.metrics import kernel_distance, mmd2_unbiased, precision_recall
from straightflow.metrics import manifold as manifold_module
from straightflow.metrics.frechet import frechet_distance, gaussian_stats, trace_sqrt_product
from straightflow.metrics.manifold import knn_radii


def _spd(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / d + (0 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


# ---------------------------------------------------------------- Fréchet distance: our own matrix square root
def test_frechet_of_commuting_gaussians_is_the_closed_form():
    """Diagonal covariances commute: Tr (S_a S_b)^(1/2) = sum sqrt(a_i b_i), and FD = |dmu|^2 + sum (sqrt a_i - sqrt
    b_i)^2."""
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu_a, mu_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, -1.0, 2.0])
    expected = float((mu_a - mu_b).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())  # 5 + 4 + 1 + 0
    assert expected == pytest.approx(10.0)
    assert frechet_distance(mu_a, torch.diag(a), mu_b, torch.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(mu_a, torch.diag(a), mu_a, torch.diag(a)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("rank_b", [None, 3])  # full rank; singular (fewer images than feature dimensions)
def test_trace_sqrt_product_matches_scipy_sqrtm(rank_b):
    s_a, s_b = _spd(8, 0), _spd(8, 1, rank=rank_b)
    expected = float(np.real(np.trace(scipy.linalg.sqrtm(s_a.numpy() @ s_b.numpy()))))
    assert trace_sqrt_product(s_a, s_b) == pytest.approx(expected, rel=1e-8)
    # the eigenvalues of S_a S_b and S_b S_a agree
    assert trace_sqrt_product(s_b, s_a) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_gaussian_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(3)
    s_a, s_b = _spd(4, 4), _spd(4, 5)
    mu_a, mu_b = torch.zeros(4, dtype=torch.float64), torch.tensor([0.5, 0.0, -0.5, 1.0], dtype=torch.float64)
    closed = frechet_distance(mu_a, s_a, mu_b, s_b)
    x = mu_a + torch.randn(200_000, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s_a).T
    y = mu_b + torch.randn(200_000, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s_b).T
    fitted = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert fitted == pytest.approx(closed, rel=0.02)


# ---------------------------------------------------------------- kernel distance (KID)
def _mmd2_by_loops(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    k = lambda x, y: (float(x @ y) / d + 1.0) ** 3
    n, m = len(a), len(b)
    kaa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kbb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return kaa + kbb - 2 * kab


def test_mmd2_is_the_unbiased_statistic_written_out():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(12, 3, generator=g, dtype=torch.float64),
            torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.3)
    assert mmd2_unbiased(a, b) == pytest.approx(_mmd2_by_loops(a.numpy(), b.numpy()), rel=1e-10)
    # every point in one subset: KID is that statistic, with no spread over subsets
    kid = kernel_distance(a, b, subsets=3, subset_size=100)
    assert kid.mean == pytest.approx(mmd2_unbiased(a, b), rel=1e-12) and kid.subset_sd == pytest.approx(0.0, abs=1e-12)
    assert (kid.subset_size_a, kid.subset_size_b) == (12, 9)


def test_kid_of_identical_distributions_is_zero_in_expectation():
    """Unbiased: the mean over many draws is near 0, and single draws go below 0 (the FD never does)."""
    g = torch.Generator().manual_seed(1)
    values = np.array([mmd2_unbiased(torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g))
                       for _ in range(200)])
    se = values.std() / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * se
    assert (values < 0).sum() > 20


def test_kid_of_a_shifted_gaussian_is_the_closed_form():
    """In 1-D the cubic kernel (xy + 1)^3 = 1 + 3xy + 3x^2y^2 + x^3y^3, so
    MMD^2 = 3 (E x - E y)^2 + 3 (E x^2 - E y^2)^2 + (E x^3 - E y^3)^2; for N(0, 1) against N(delta, 1)
    that is 3 delta^2 + 3 delta^4 + (delta^3 + 3 delta)^2."""
    delta = 0.5
    closed = 3 * delta**2 + 3 * delta**4 + (delta**3 + 3 * delta) ** 2
    g = torch.Generator().manual_seed(2)
    kids = [kernel_distance(torch.randn(2000, 1, generator=g, dtype=torch.float64),
                            delta + torch.randn(2000, 1, generator=g, dtype=torch.float64),
                            subsets=10, subset_size=1000, seed=s) for s in range(10)]
    values = np.array([k.mean for k in kids])
    assert abs(values.mean() - closed) < 4 * values.std() / np.sqrt(len(values)) + 1e-3, (values.mean(), closed)
    assert all(k.subset_sd > 0 for k in kids)


# ---------------------------------------------------------------- precision and recall
def test_precision_and_recall_of_identical_sets_are_one_and_of_far_apart_sets_zero():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    same = precision_recall(x, x[torch.randperm(200)])
    assert (same.precision, same.recall) == (1.0, 1.0)
    far = precision_recall(x, x + 100.0)
    assert (far.precision, far.recall) == (0.0, 0.0)
    half = precision_recall(x, torch.cat([x[:50], x[50:100] + 100.0]))  # 50 real points and 50 far away
    assert half.precision == 0.5


def test_precision_and_recall_tell_mode_collapse_from_overdispersion():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(500, 2, generator=g)
    collapsed = precision_recall(real, 0.2 * torch.randn(500, 2, generator=g))
    spread = precision_recall(real, 3.0 * torch.randn(500, 2, generator=g))
    truth = precision_recall(real, torch.randn(500, 2, generator=g))
    assert collapsed.precision > 0.85 and collapsed.recall < 0.3
    assert spread.precision < 0.5 and spread.recall > 0.9
    assert truth.precision > 0.8 and truth.recall > 0.8


def test_knn_radii_in_blocks_match_sorted_distances_and_recall_uses_equal_chunks(monkeypatch):
    x = torch.randn(37, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    expected = d.sort(dim=1).values[:, 2]  # the 3rd nearest other point
    monkeypatch.setattr(manifold_module, "KNN_BLOCK", 50)  # one row at a time
    assert torch.allclose(knn_radii(x, 3), expected)
    pr = precision_recall(x, torch.randn(120, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    # 120 generated points: 3 chunks of the real set's size
    assert (pr.chunk_size, pr.recall_chunks, pr.k) == (37, 3, 3)
    with pytest.raises(ValueError, match="more than 3 points"):
        precision_recall(x[:3], x)


# ---------------------------------------------------------------- torch-fidelity is an extra
def test_inception_without_torch_fidelity_names_the_extra(tmp_path, monkeypatch):
    from straightflow.metrics.frechet import InceptionFeatures

    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(StraightflowError, match=r"'fidelity' extra: pip install 'straightflow\[fidelity\]'") as err:
        InceptionFeatures(str(weights))
    assert "\n" not in str(err.value)


def test_kid_in_our_feature_spaces_does_not_depend_on_their_scale():
    """The cubic kernel expects features of order 1: in straightflow's own spaces KID is taken on features divided by
    the reference's root mean square, so multiplying the features by a constant changes nothing (it would without)."""
    from straightflow.metrics.images import ImageQuality

    g = torch.Generator().manual_seed(4)
    x, ref = torch.rand(80, 1, 4, 4, generator=g) * 2 - 1, torch.rand(60, 1, 4, 4, generator=g) * 2 - 1
    kid = {(c, rescale): ImageQuality(lambda im, c=c: c * im.flatten(1), "test",
                                      kid_rescale=rescale).score(x, ref)["kid"]
           for c in (1.0, 50.0) for rescale in (True, False)}
    assert kid[(50.0, True)] == pytest.approx(kid[(1.0, True)], rel=1e-5)  # features are float32
    assert abs(kid[(50.0, False)]) > 100 * abs(kid[(1.0, False)])


# ---------------------------------------------------------------- eval: sizes, floors, --seeds, progress in samples
@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny UNet on a folder of 30 synthetic images: 24 for training, 6 held out; random-conv features."""
    import straightflow as sf
    from image_helpers import TINY_UNET, write_folder
    from straightflow.cli.main import main

    root = tmp_path_factory.mktemp("imgs")
    data = write_folder(root / "imgs", n=30)
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--steps", "4", "--batch-size", "8",
                 "--progress", "false", *TINY_UNET]) == 0
    return sf.Run.load(root / "run")


def test_image_eval_generates_more_than_the_heldout_set_and_floors_every_metric(folder_run):
    from straightflow.evaluate import IMAGE_N, evaluate
    from straightflow.metrics.images import image_metric

    report = evaluate(folder_run, [1], curvature_n=8)
    # all held-out images, all training images
    assert (report["n"], report["n_reference"], report["n_floor"]) == (IMAGE_N, 6, 24)
    assert "fewer than the 5000 generated" in report["floor_note"]
    row = report["results"][0]
    assert {"fd", "kid", "kid_subset_sd", "precision", "recall"} <= set(row) and report["features"] == "random-conv-v1"
    # training vs held-out images
    expected = image_metric(folder_run).score(folder_run.data.train_images(), folder_run.data.heldout)
    for key in ("fd", "kid", "precision", "recall"):
        assert report[f"{key}_floor"] == pytest.approx(expected[key], rel=1e-9, abs=1e-12)
    small = evaluate(folder_run, [1], n=20, curvature_n=8)
    # the floor at the size of the generated set
    assert (small["n"], small["n_floor"]) == (20, 20) and "floor_note" not in small


def test_eval_seeds_report_mean_and_sd_of_every_number(folder_run):
    from straightflow.evaluate import evaluate, format_table

    report = evaluate(folder_run, [1, 2], n=40, seeds=3, curvature_n=8)
    assert report["seeds"] == [0, 1, 2]
    for row in report["results"]:
        for key in ("fd", "kid", "precision", "recall"):
            values = row[f"{key}_seeds"]
            assert (len(values) == 3 and row[key] == pytest.approx(np.mean(values))
                    and row[f"{key}_sd"] == pytest.approx(np.std(values, ddof=1)))
        assert "kid_subset_sd_sd" not in row
    one = evaluate(folder_run, [2], n=40, seed=1, curvature_n=8)["results"][0]
    # seed 1's value is eval --seed 1's
    assert report["results"][1]["fd_seeds"][1] == pytest.approx(one["fd"], rel=1e-9)
    table = format_table(report)
    assert "mean ± sd over seeds 0-2" in table.splitlines()[0]
    assert f"{report['results'][0]['fd']:.4g} ± {report['results'][0]['fd_sd']:.2g}" in table.splitlines()[3]


def test_eval_cli_seeds(folder_run, capsys):
    from straightflow.cli.main import main

    assert main(["eval", str(folder_run.dir), "--nfe", "1", "-n", "30", "--seeds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seeds"] == [0, 1] and len(report["results"][0]["kid_seeds"]) == 2
    assert main(["eval", str(folder_run.dir), "--nfe", "1", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "straightflow: error: --seeds must be >= 1, got 0"


def test_progress_bars_count_samples_not_batches(folder_run, monkeypatch):
    import importlib

    from tqdm.auto import tqdm

    # the modules themselves (the package's `evaluate` attribute is the function)
    evaluate_mod, frechet_mod, run_mod = (importlib.import_module(f"straightflow.{m}")
                                          for m in ("evaluate", "metrics.frechet", "run"))

    bars = []

    class Recorded(tqdm):  # what each bar counted, whenever (if ever) it was redrawn
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    for mod in (run_mod, evaluate_mod, frechet_mod):
        monkeypatch.setattr(mod, "tqdm", Recorded)
    counted = lambda: [(b.n, b.total, b.unit) for b in bars]
    folder_run.sample(10, nfe=1, batch_size=4, progress=True)
    assert counted() == [(10, 10, "sample")]  # 10 samples in 3 batches
    bars.clear()
    evaluate_mod.evaluate(folder_run, [1, 2], n=12, seeds=2, curvature_n=8, progress=True, batch_size=5)
    assert (48, 48, "sample") in counted()  # 2 NFEs x 2 seeds x 12 samples
    bars.clear()
    images, labels = torch.rand(20, 1, 8, 8) * 2 - 1, torch.arange(20) % 2
    frechet_mod.train_classifier(images, labels, steps=3, batch_size=8, progress=True)
    assert counted() == [(24, 24, "img")]  # 3 steps of 8 images
