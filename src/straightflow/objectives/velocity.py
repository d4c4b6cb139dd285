"""Flow-matching velocity objective (curvature paper Eq. 1/21, METHODS.md 1).

``mean_elem((z - x) - v_theta(x_t, t))^2`` with t ~ U(t_min, 1]. Its value on
held-out data upper-bounds the degree of intersection (Eq. 8).
"""

from __future__ import annotations

import torch

from ..couplings import CoupledBatch
from ..paths import interpolate, sample_times, velocity_target


def velocity_loss(net, pair: CoupledBatch, generator: torch.Generator, t_min: float) -> tuple[torch.Tensor, dict]:
    t = sample_times(pair.x.shape[0], generator, t_min, device=pair.x.device)
    x_t = interpolate(pair.x, pair.z, t)
    loss = (net(x_t, t) - velocity_target(pair.x, pair.z)).pow(2).mean()
    return loss, {"flow_loss": loss.detach()}
