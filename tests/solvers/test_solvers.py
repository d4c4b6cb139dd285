"""Solvers against ODEs with known solutions, and honest NFE counts."""

import math

import pytest
import torch

from straightflow.errors import StraightflowError
from straightflow.solvers import HEUN_EVEN_NOTE, euler, heun, lines, rk45, solve


def linear_field(z, t):
    # dz/dt = z  =>  integrating from t = 1 down to 0 gives z(0) = z(1) * e^{-1}
    return z


def test_euler_matches_its_closed_form():
    z1 = torch.randn(5, 3, dtype=torch.float64)
    for n in (1, 2, 7, 50):
        res = euler(linear_field, z1, n)
        assert res.nfe == n
        # each step multiplies by (1 - 1/n)
        torch.testing.assert_close(res.samples, z1 * (1 - 1 / n) ** n)


def test_constant_velocity_is_exact_at_one_step():
    z1 = torch.randn(4, 2)
    c = torch.tensor([0.5, -2.0])
    res = euler(lambda z, t: c.expand_as(z), z1, 1)
    torch.testing.assert_close(res.samples, z1 - c)


@pytest.mark.parametrize("nfe", [1, 3, 5, 9, 2, 4, 8])
def test_heun_uses_exactly_nfe_calls(nfe):
    res = heun(linear_field, torch.randn(6, 2, dtype=torch.float64), nfe)
    assert res.nfe == nfe


def test_heun_even_nfe_converges_at_second_order():
    z1 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.exp(-1)
    errs = [abs(heun(linear_field, z1, n).samples.item() - exact) for n in (8, 16, 32)]
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert 3.5 < coarse / fine < 4.5  # halving the step quarters the error


@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 7, 8])
def test_heun_at_even_nfe_evaluates_t0_and_says_so(nfe):
    times = []

    def field(z, t):
        times.append(float(t[0]))
        return z

    res = heun(field, torch.randn(2, 2, dtype=torch.float64), nfe)
    evaluates_t0 = 0.0 in times
    assert evaluates_t0 == (nfe % 2 == 0)
    assert res.note == (HEUN_EVEN_NOTE if evaluates_t0 else None)
    assert heun(field, torch.randn(2, 2), nfe, return_trajectory=True).note == res.note
    for other in (euler, lines):
        times.clear()
        assert other(field, torch.randn(2, 2), nfe).note is None and 0.0 not in times


def test_heun_odd_variant_ends_with_euler_step():
    # NFE 3: two steps of size 1/2: one Heun step then one Euler step
    z1 = torch.ones(1, 1, dtype=torch.float64)
    res = heun(linear_field, z1, 3)
    h = -0.5
    after_heun = 1 + 0.5 * h * (1 + (1 + h))
    assert res.samples.item() == pytest.approx(after_heun * (1 + h))


def test_rk45_is_accurate_and_counts_calls():
    z1 = torch.randn(3, 2, dtype=torch.float64)
    calls = []

    def field(z, t):
        calls.append(1)
        return z

    res = rk45(field, z1)
    assert res.nfe == len(calls) > 6
    # integrates to t = 1e-3: z = z1 * exp(1e-3 - 1)
    torch.testing.assert_close(res.samples, z1 * math.exp(1e-3 - 1), rtol=1e-4, atol=1e-4)


def test_rk45_to_zero_ends_at_t0_with_one_more_counted_call():
    # dz/dt = z: z(t) = z1 exp(t - 1). Plain RK45 stops at t = 1e-3, off from z(0) by the
    # factor exp(1e-3); to_zero adds x_hat = z - 1e-3 v(z, 1e-3), which lands on z(0) up to
    # O(1e-6) (docs/api.md "Solvers").
    z1 = torch.randn(3, 2, dtype=torch.float64)
    at_zero = z1 * math.exp(-1)
    plain = rk45(linear_field, z1)
    finished = rk45(linear_field, z1, to_zero=True)
    assert finished.nfe == plain.nfe + 1
    torch.testing.assert_close(finished.samples, at_zero, rtol=2e-5, atol=2e-5)
    assert (plain.samples - at_zero).abs().max() > 5e-4 * at_zero.abs().max()  # the old 1e-3 offset
    traj = rk45(linear_field, z1, to_zero=True, return_trajectory=True)
    assert traj.times[-1] == 0.0 and traj.times[-2] == pytest.approx(1e-3)
    torch.testing.assert_close(traj.trajectory[-1], traj.samples)


def test_trajectory_shapes_and_times():
    z1 = torch.randn(4, 2)
    res = solve(linear_field, z1, "euler", 8, return_trajectory=True)
    assert res.trajectory.shape == (9, 4, 2)
    assert res.times[0] == 1.0 and res.times[-1] == 0.0
    torch.testing.assert_close(res.trajectory[0], z1)
    torch.testing.assert_close(res.trajectory[-1], res.samples)


def test_unknown_solver_and_bad_nfe():
    with pytest.raises(StraightflowError, match="unknown solver"):
        solve(linear_field, torch.zeros(1, 2), "rk4", 4)
    with pytest.raises(StraightflowError, match="nfe"):
        euler(linear_field, torch.zeros(1, 2), 0)
