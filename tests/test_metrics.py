"""Metrics against closed forms."""

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
    shrunk = [energy_distance(0.8 * torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)) for _ in range(30)]
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * se  # zero in expectation
    assert np.mean(shrunk) > np.mean(same) + 5 * se


def test_w2_floor_can_be_beaten_by_shrinking_but_energy_cannot():
    # METHODS.md 5: why W2 alone can reward shrunken samples
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(500, 2, generator=g)
    truth = torch.randn(500, 2, generator=g)
    shrunk = 0.9 * torch.randn(500, 2, generator=g)
    assert energy_distance(shrunk, ref) > energy_distance(truth, ref) - 0.01


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
