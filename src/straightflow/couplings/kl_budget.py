"""Beta by KL budget: dual ascent on log beta so that the learned coupling's KL settles at a target.

The curvature method (curvature paper, Eq. 11) minimises

    E ||(z - x) - v_theta(x_t, t)||^2  +  beta * KL(q_phi(z|x) || p(z)),

with beta fixed by hand. Read as the Lagrangian of the constrained problem

    min_{theta, phi}  E ||(z - x) - v_theta(x_t, t)||^2    subject to    KL(q_phi(z|x) || p(z)) = K

(K in nats per dimension, the per-dimension KL of ``LearnedGaussianCoupling``), beta is the
multiplier of the KL constraint, and a GECO-style dual ascent finds it while training: after
each optimizer step

    kl_ema   <- ema * kl_ema + (1 - ema) * kl                          (kl: this step's batch KL)
    log_beta <- clamp(log_beta + lr * clip((kl_ema - K) / K, -1, 1),  log beta_min, log beta_max)

so beta rises while the smoothed KL is above the budget and falls while it is below; K is the
fixed point. The step is on log beta (beta stays positive and moves by the same factor at any
scale), the error is relative (one ``lr`` serves any K) and clipped to [-1, 1] (at most a factor
``exp(lr)`` per step, also when the KL is many times the budget). beta enters the loss as a
plain number (``exp(log_beta)``, no gradient flows into it). The first ``kl_ema`` is the first
KL seen (no bias towards 0).

Usable in a user's own loop::

    budget = KLBudget(target=0.1, beta=10.0)
    coupling = LearnedGaussianCoupling(prior, encoder, beta=budget.beta)
    for x in batches:
        pair = coupling(x, generator)
        loss = objective(net, pair.x, pair.z, generator)[0] + pair.aux_loss
        opt.zero_grad(); loss.backward(); opt.step()
        coupling.beta = budget.update(float(pair.stats["kl"]))   # under DDP: the KL averaged over ranks

``state_dict`` / ``load_state_dict`` hold the dual variable and the smoothed KL (plain floats),
so a resumed run continues bit for bit. ``docs/kl_target.md``.
"""

from __future__ import annotations

import math

from ..errors import StraightflowError

#: defaults of the controller (also the config's ``kl_target_lr``; docs/kl_target.md)
DEFAULT_LR = 0.01
DEFAULT_EMA = 0.99
BETA_RANGE = (1e-3, 1e4)


def check_target(target, what: str = "kl_target") -> float:
    """``target`` as a float, or a one-line StraightflowError unless it is finite and > 0."""
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise StraightflowError(f"{what} must be a number of nats per dimension > 0, got {target!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise StraightflowError(f"{what} must be finite and > 0 (nats per dimension), got {target!r}")
    return value


class KLBudget:
    """Dual ascent on log beta that drives the per-dimension KL of the learned coupling to ``target``.

    ``target``: K, nats per dimension (> 0). ``beta``: the initial beta (finite, inside
    ``[beta_min, beta_max]``). ``lr``: the step on log beta per unit relative error (default
    0.01: with the KL half the budget, beta falls by a factor e in 200 steps). ``ema``: the
    smoothing of the batch KL (default 0.99, about 100 steps).
    """

    def __init__(self, target: float, beta: float = 10.0, lr: float = DEFAULT_LR, ema: float = DEFAULT_EMA,
                 beta_min: float = BETA_RANGE[0], beta_max: float = BETA_RANGE[1]):
        self.target = check_target(target)
        beta, lr, ema = float(beta), float(lr), float(ema)
        if not (math.isfinite(beta_min) and math.isfinite(beta_max) and 0 < beta_min < beta_max):
            raise StraightflowError(f"the beta range must be 0 < beta_min < beta_max < inf, got [{beta_min}, "
                                    f"{beta_max}]")
        if not (math.isfinite(beta) and beta_min <= beta <= beta_max):
            raise StraightflowError(f"the initial beta of a KL budget must be in [{beta_min:g}, {beta_max:g}], "
                                    f"got {beta}")
        if not (math.isfinite(lr) and lr > 0):
            raise StraightflowError(f"kl_target_lr must be finite and > 0, got {lr}")
        if not (0 <= ema < 1):
            raise StraightflowError(f"the KL smoothing ema must be in [0, 1), got {ema}")
        self.lr, self.ema = lr, ema
        self.log_beta_min, self.log_beta_max = math.log(beta_min), math.log(beta_max)
        self.log_beta = math.log(beta)
        self.kl_ema = math.nan  # no KL seen yet
        self.steps = 0

    @property
    def beta(self) -> float:
        """The beta of the next loss: exp(log_beta), a plain number."""
        return math.exp(self.log_beta)

    def update(self, kl: float) -> float:
        """One dual step from this step's batch KL (per dimension); returns the new beta."""
        kl = float(kl)
        if not math.isfinite(kl):
            raise StraightflowError(f"KL budget: the batch KL is {kl}, not a finite number")
        kl = max(kl, 0.0)  # the closed form can round to -1e-10 at q = p
        self.kl_ema = kl if self.steps == 0 else self.ema * self.kl_ema + (1.0 - self.ema) * kl
        error = min(1.0, max(-1.0, (self.kl_ema - self.target) / self.target))
        self.log_beta = min(self.log_beta_max, max(self.log_beta_min, self.log_beta + self.lr * error))
        self.steps += 1
        return self.beta

    def stats(self) -> dict[str, float]:
        """What the trainer logs per stat line: the current beta and smoothed KL."""
        return {"beta": self.beta, "kl_ema": self.kl_ema, "kl_target": self.target}

    def state_dict(self) -> dict:
        return {"target": self.target, "log_beta": self.log_beta, "kl_ema": self.kl_ema, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        target = float(state["target"])
        if target != self.target:
            raise StraightflowError(f"the checkpoint's KL budget targets {target:g}, this run {self.target:g}")
        self.log_beta, self.kl_ema, self.steps = float(state["log_beta"]), float(state["kl_ema"]), int(state["steps"])

    def __repr__(self) -> str:
        return f"KLBudget(target={self.target:g}, beta={self.beta:.4g}, lr={self.lr:g}, ema={self.ema:g})"
