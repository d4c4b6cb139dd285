"""One-step distillation (curvature paper, Table 1): x_hat(z, 1) = z - v(z, 1), MSE to x*."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..paths import predict_data


def one_step(net, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """x_hat(z, 1) = z - v(z, 1): the one-step prediction from noise (of class ``y`` if given)."""
    return predict_data(net, z, torch.ones(z.shape[0], device=z.device, dtype=z.dtype), y)


@dataclass
class DistillObjective:
    """``loss = mean((z - v(z, 1)) - x*)^2`` on teacher pairs (x*, z)."""

    def __call__(self, net, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        loss = (one_step(net, z, y) - x).pow(2).mean()
        return loss, {"distill_loss": loss.detach()}
