"""Metrics against closed forms."""

import math

import numpy as np
import pytest
import torch

from straightflow.metrics import curvature, energy_distance, prediction_drift, wasserstein2
from straightflow.priors import DiagonalGaussianPrior


def test_w2_of_a_shift_is_the_shift_length():
    a = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.3, -0.4, 1.2])
    assert wasserstein2(a, a + shift) == pytest.approx(float(shift.norm()), rel=1e-6)
    assert wasserstein2(a, a) == pytest.approx(0.0, abs=1e-9)


def test_w2_of_permuted_points_is_zero():
    a = torch.randn(100, 2, generator=torch.Generator().manual_seed(1))
    assert wasserstein2(a, a[torch.randperm(100)]) == pytest.approx(0.0, abs=1e-9)


def test_energy_distance_is_unbiased_at_the_truth_and_detects_shrinkage():
    g = torch.Generator().manual_seed(2)
    same = [energy_distance(torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)) for _ in range(30)]
    shrunk = [energy_distance(0.8 * torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g))
              for _ in range(30)]
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * se  # zero in expectation
    assert np.mean(shrunk) > np.mean(same) + 5 * se


def test_w2_floor_can_be_beaten_by_shrinking_but_energy_cannot():
    """Finite-sample W2 rewards samples shrunk toward the mean (below the two-sample floor, METHODS.md 5), while the
    unbiased energy distance is ~0 at the truth and matches its closed form for the shrunk Gaussian."""
    d, n, c = 10, 500, 0.8
    # E||X - Y|| for X ~ N(0, a^2 I), Y ~ N(0, b^2 I) in d dims: sqrt(a^2 + b^2) * kappa,
    # kappa = sqrt(2) G((d+1)/2) / G(d/2)
    kappa = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    exact = kappa * (2 * math.sqrt(1 + c * c) - math.sqrt(2) * (1 + c))  # about 0.048
    truth_energy, shrunk_energy = [], []
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        ref, truth, shrunk = (torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
                              c * torch.randn(n, d, generator=g))
        assert wasserstein2(shrunk, ref) < wasserstein2(truth, ref)  # below the floor: W2 alone would call this better
        truth_energy.append(energy_distance(truth, ref))
        shrunk_energy.append(energy_distance(shrunk, ref))
        assert shrunk_energy[-1] > truth_energy[-1] + 0.02
    assert abs(np.mean(truth_energy)) < 0.005
    assert np.mean(shrunk_energy) == pytest.approx(exact, rel=0.25)


def test_curvature_of_straight_field_is_zero():
    c = torch.tensor([1.0, -2.0])
    z = torch.randn(10, 2)
    assert curvature(lambda x, t: c.expand_as(x), z) == pytest.approx(0.0, abs=1e-10)


def test_curvature_equals_velocity_variance_over_time():
    # v(z, t) = a * (t - 0.5): the Euler path's velocities are a * (t_i - 0.5)
    # at t_i = 1 - i/128; the chord is their mean, so the curvature is
    # a^2 * Var_i(t_i), per element.
    a = torch.tensor([2.0, 3.0], dtype=torch.float64)
    z = torch.zeros(5, 2, dtype=torch.float64)
    got = curvature(lambda x, t: a * (t[:, None] - 0.5), z, steps=128)
    ti = 1 - np.arange(128) / 128
    expected = float((a**2).mean()) * ti.var()
    assert got == pytest.approx(expected, rel=1e-9)


def test_prediction_drift_zero_for_straight_lines_to_a_point():
    # v = (z - x*) / t  points every state at x*; the data prediction is constant
    target = torch.tensor([0.7, -0.2])
    z = torch.randn(8, 2)
    drift = prediction_drift(lambda x, t: (x - target) / t[:, None].clamp_min(1e-6), z)
    assert drift == pytest.approx(0.0, abs=1e-10)


def test_prior_kl_matches_closed_form():
    mu = torch.randn(4, 3)
    logvar = torch.randn(4, 3)
    std = torch.tensor([6.0, 1.0, 2.0])
    prior = DiagonalGaussianPrior(std)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), std)
    expected = torch.distributions.kl_divergence(q, p).mean(dim=1)
    torch.testing.assert_close(prior.kl_per_dim(mu, logvar), expected)


# ------------------------------------------------------------------ large n
def _energy_full(a, b):
    # the formula energy_distance used before it was chunked: three full n x n / n x m / m x m matrices
    # (distances computed directly, as torch.cdist does for <= 25 rows, so the diagonal is exactly 0)
    a, b = a.double(), b.double()
    n, m = a.shape[0], b.shape[0]
    d = lambda x, y: torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")  # noqa: E731
    return float(2 * d(a, b).mean() - d(a, a).sum() / (n * (n - 1)) - d(b, b).sum() / (m * (m - 1)))


@pytest.mark.parametrize("n,m,dim", [(20, 24, 3), (300, 200, 2), (90, 70, 40)])
@pytest.mark.parametrize("block", [16, 64 * 64, None])
def test_energy_distance_in_blocks_equals_the_full_formula(n, m, dim, block, monkeypatch):
    from straightflow.metrics import distances

    if block is not None:
        monkeypatch.setattr(distances, "ENERGY_BLOCK", block)
    g = torch.Generator().manual_seed(n + m)
    a, b = torch.randn(n, dim, generator=g), 1.5 * torch.randn(m, dim, generator=g) + 0.3
    assert abs(energy_distance(a, b) - _energy_full(a, b)) < 1e-10


def test_energy_distance_holds_at_most_one_block_of_distances(monkeypatch):
    from straightflow.metrics import distances

    monkeypatch.setattr(distances, "ENERGY_BLOCK", 64)
    real, sizes = torch.cdist, []

    def spy(x, y, *args, **kwargs):
        out = real(x, y, *args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "cdist", spy)
    a, b = torch.randn(300, 2), torch.randn(250, 2)
    value = energy_distance(a, b)
    monkeypatch.setattr(torch, "cdist", real)
    assert max(sizes) <= 64 and value == pytest.approx(_energy_full(a, b), abs=1e-10)


def test_w2_above_its_size_cap_is_a_noted_seeded_subsample_never_a_huge_matrix(monkeypatch):
    from straightflow.metrics import distances
    from straightflow.noise import stream_generator

    monkeypatch.setattr(distances, "W2_MAX_ENTRIES", 100 * 100)
    g = torch.Generator().manual_seed(5)
    a, b = (torch.randn(300, 2, generator=g, dtype=torch.float64),
            torch.randn(200, 2, generator=g, dtype=torch.float64) + 0.5)
    real, sizes = torch.cdist, []
    monkeypatch.setattr(torch, "cdist",
                        lambda x, y, *args, **kw: sizes.append(x.shape[0] * y.shape[0]) or real(x, y, *args, **kw))
    notes = []
    value = wasserstein2(a, b, notes)
    monkeypatch.setattr(torch, "cdist", real)
    assert max(sizes) <= 100 * 100
    assert notes == ["w2 on a seeded subsample of 122 of 300 x 81 of 200 points (exact W2 is limited to 10,000 "
                     "cost entries)"]
    sub = stream_generator("w2-subsample", 0)
    ia, ib = torch.randperm(300, generator=sub)[:122], torch.randperm(200, generator=sub)[:81]
    monkeypatch.setattr(distances, "W2_MAX_ENTRIES", 10**9)
    assert value == pytest.approx(wasserstein2(a[ia], b[ib]), rel=1e-12)  # the documented subsample, exactly
    monkeypatch.setattr(distances, "W2_MAX_ENTRIES", 100 * 100)
    with pytest.warns(UserWarning, match="seeded subsample"):  # no notes list: a warning, not silence
        again = wasserstein2(a, b)
    assert again == value  # seeded: the same subsample every time


def test_pot_stopping_early_is_a_note_not_a_lost_warning(monkeypatch):
    import warnings

    from straightflow.couplings import minibatch_ot
    from straightflow.couplings.minibatch_ot import MinibatchOTCoupling, ot_plan
    from straightflow.metrics import distances

    monkeypatch.setattr(distances, "W2_NUM_ITERMAX", 3)
    monkeypatch.setattr(minibatch_ot, "SINKHORN_NUM_ITERMAX", 2)
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    notes, plan_notes = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes as a warning when the caller takes notes
        wasserstein2(a, b, notes)
        ot_plan(a, b, "sinkhorn", 0.05, plan_notes)
    assert len(notes) == 1 and "numItermax reached" in notes[0] and "overestimated" in notes[0]
    assert len(plan_notes) == 1 and "Sinkhorn did not converge" in plan_notes[0]
    # minibatch OT in training: the fraction of a batch's OT solves that stopped early is a logged stat

    coupling = MinibatchOTCoupling()
    assert float(coupling(a, torch.Generator().manual_seed(0)).stats["ot_unconverged"]) == 0.0
    monkeypatch.setattr(minibatch_ot, "EMD_NUM_ITERMAX", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(coupling(a, torch.Generator().manual_seed(0)).stats["ot_unconverged"]) == 1.0
