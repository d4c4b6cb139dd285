"""The objectives against closed forms: ``LinesObjective``, ``DistillObjective`` and ``AdversarialTerm``."""

import math

import pytest
import torch
from torch import nn

from straightflow.errors import StraightflowError
from straightflow.objectives import AdversarialTerm, DistillObjective, LinesObjective
from straightflow.objectives.endpoint import PSEUDO_HUBER_C


def _linear_velocity(a: float, b: float):
    """v(x, t) = a x + b t: x_hat(x_t, t) = x_t - t (a x_t + b t) in closed form."""
    return lambda x, t: a * x + b * t[:, None]


def test_lines_objective_at_the_one_step_time_is_the_endpoint_mse():
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g)
    loss, stats = LinesObjective(sampler_steps=1)(_linear_velocity(0.5, 2.0), x, z, torch.Generator().manual_seed(1))
    x_hat = z - (0.5 * z + 2.0)  # t = 1: x_t = z
    assert loss.item() == pytest.approx(float((x_hat - x).pow(2).mean()), rel=1e-6)
    assert stats["recon_loss"].item() == pytest.approx(loss.item())


def test_lines_objective_draws_t_from_the_k_step_samplers_times():
    x, z = torch.zeros(4000, 1), torch.ones(4000, 1)
    objective = LinesObjective(sampler_steps=4)
    t = objective.times(4000, torch.Generator().manual_seed(0), "cpu")
    assert sorted(set(t.tolist())) == [0.25, 0.5, 0.75, 1.0]
    # v = 0: x_hat = x_t = t z, so the per-sample error is t^2 and the loss is the mean of t^2 over the k times
    loss, _ = LinesObjective(sampler_steps=4)(lambda x_t, t: torch.zeros_like(x_t), x, z,
                                              torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(float(t.pow(2).mean()), rel=1e-6)
    assert loss.item() == pytest.approx((1 / 16 + 1 / 4 + 9 / 16 + 1) / 4, rel=0.05)


@pytest.mark.parametrize("k", [0, 2, 4])
def test_t1_fraction_puts_that_share_of_the_times_at_t1_and_the_rest_on_the_other_times(k):
    n, f = 200_000, 0.9
    t = LinesObjective(sampler_steps=k, t1_fraction=f).times(n, torch.Generator().manual_seed(0), "cpu")
    at_one = t == 1.0
    se = math.sqrt(f * (1 - f) / n)
    assert abs(at_one.float().mean().item() - f) < 4 * se
    rest = t[~at_one]
    if k == 0:  # the continuous draw: U(t_min, 1], mean 1/2, variance 1/12
        assert abs(rest.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / rest.numel())
        assert rest.min().item() > 0
    else:  # uniform over {(k-1)/k, ..., 1/k}
        values = sorted(set(rest.tolist()))
        assert values == pytest.approx([j / k for j in range(1, k)])
        counts = torch.stack([(rest == v).float().mean() for v in values])
        assert torch.allclose(counts, torch.full_like(counts, 1 / (k - 1)), atol=4 * math.sqrt(1 / rest.numel()))


def test_t1_fraction_none_draws_bit_for_bit_as_before_and_bad_values_are_refused():
    for k in (0, 3):
        new = LinesObjective(sampler_steps=k).times(100, torch.Generator().manual_seed(5), "cpu")
        if k:
            j = torch.randint(1, k + 1, (100,), generator=torch.Generator().manual_seed(5))
            assert torch.equal(new, j.float() / k)
        else:
            u = torch.rand(100, generator=torch.Generator().manual_seed(5))
            assert torch.equal(new, 1e-5 + (1.0 - 1e-5) * (1.0 - u))
    one = LinesObjective(sampler_steps=1, t1_fraction=0.5).times(100, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(one, torch.ones(100))  # k = 1: every time is already t = 1
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(StraightflowError, match="--t1-fraction must be in"):
            LinesObjective(sampler_steps=2, t1_fraction=bad)


def test_lines_pseudo_huber_is_sqrt_of_squared_distance_plus_c2_minus_c():
    d = 8
    x, z = torch.zeros(2, d), torch.zeros(2, d)
    shift = torch.tensor([[0.3] * d, [1.0] * d])  # x_hat = x_t - t * (-shift) = shift at t = 1 (x_t = z = 0)
    loss, _ = LinesObjective(recon="pseudo-huber", sampler_steps=1)(lambda x_t, t: -shift, x, z,
                                                                    torch.Generator().manual_seed(0))
    c = PSEUDO_HUBER_C * math.sqrt(d)
    expected = sum(math.sqrt(float(s.pow(2).sum()) + c * c) - c for s in shift) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_lines_objective_adds_the_weighted_adversarial_term():
    class Adversary:
        def generator_loss(self, x_hat, y=None):
            return x_hat.sum() * 0 + 0.5

    x, z = torch.zeros(8, 2), torch.ones(8, 2)
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    plain, _ = LinesObjective(sampler_steps=1)(zero, x, z, torch.Generator().manual_seed(0))
    mixed, stats = LinesObjective(sampler_steps=1, adv_weight=0.2,
                                  adversary=Adversary())(zero, x, z, torch.Generator().manual_seed(0))
    assert mixed.item() == pytest.approx(plain.item() + 0.2 * 0.5) and stats["adv_g_loss"].item() == 0.5


def test_distill_objective_is_the_one_step_mse_to_the_teacher_sample():
    g = torch.Generator().manual_seed(3)
    x, z = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)
    loss, stats = DistillObjective()(_linear_velocity(-1.0, 0.5), x, z)
    one_step = z - (-1.0 * z + 0.5)  # x_hat(z, 1) = z - v(z, 1)
    assert loss.item() == pytest.approx(float((one_step - x).pow(2).mean()), rel=1e-6)
    assert stats["distill_loss"].item() == pytest.approx(loss.item())


def test_adversarial_term_hinge_losses_of_a_linear_critic():
    critic = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, -2.0]]))
    real = torch.tensor([[1.0, 0.0], [0.0, -1.0]])  # D(real) = 1, 2
    term = AdversarialTerm(critic, lambda n, generator: (real[:n], None), lr=0.0)  # lr 0: the critic stays as it is
    fake = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], requires_grad=True)  # D(fake) = -2, -1
    g_loss = term.generator_loss(fake)
    assert g_loss.item() == pytest.approx(1.5)  # -mean D(fake)
    g_loss.backward()
    assert torch.allclose(fake.grad, -critic.weight.detach().expand(2, 2) / 2)  # d(-mean D)/d fake
    assert critic.weight.grad is None  # the critic is frozen for the student's loss
    stats = term.step(torch.Generator().manual_seed(0))
    # hinge: mean relu(1 - D(real)) + mean relu(1 + D(fake)) = mean(0, 0) + mean(0, 0) = 0
    assert stats["adv_d_loss"].item() == pytest.approx(0.0)
    assert stats["adv_d_real"].item() == pytest.approx(1.5) and stats["adv_d_fake"].item() == pytest.approx(-1.5)
    term.generator_loss(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))  # D = 2, 0: relu(1 + 2) and relu(1 + 0)
    assert term.step(torch.Generator().manual_seed(0))["adv_d_loss"].item() == pytest.approx((3 + 1) / 2)
