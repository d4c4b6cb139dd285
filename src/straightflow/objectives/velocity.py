"""Flow-matching velocity objective (curvature paper Eq. 1 / 21; rectified flow).

``mean_elem((z - x) - v_theta(x_t, t))^2`` with t ~ U(t_min, 1], on the straight
line x_t = (1 - t) x + t z. Unweighted, it equals the 1/t^2-weighted x-loss;
its value on held-out data upper-bounds the degree of intersection (Eq. 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..conditioning import call_velocity
from ..paths import interpolate, sample_times, velocity_target


@dataclass
class VelocityObjective:
    """``loss, stats = VelocityObjective()(net, x, z, generator)`` for any ``net(x_t, t)``
    (``net(x_t, t, y)`` when labels ``y`` are given)."""

    t_min: float = 1e-5

    def __call__(self, net, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        t = sample_times(x.shape[0], generator, self.t_min, device=x.device)
        loss = (call_velocity(net, interpolate(x, z, t), t, y) - velocity_target(x, z)).pow(2).mean()
        return loss, {"flow_loss": loss.detach()}
