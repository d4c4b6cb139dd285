"""Couplings: how a training pair (x, z) is drawn (METHODS.md section 2).

A coupling is an ``nn.Module`` so that a learned one (the curvature method's
encoder) trains, checkpoints and averages (EMA) together with the velocity net.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..priors import DiagonalGaussianPrior


@dataclass
class CoupledBatch:
    x: torch.Tensor  #: data endpoint (t = 0)
    z: torch.Tensor  #: noise endpoint (t = 1)
    aux_loss: torch.Tensor | None = None  #: extra loss term (e.g. beta * KL), already weighted
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Coupling(nn.Module):
    name = "coupling"

    def __init__(self, prior: DiagonalGaussianPrior):
        super().__init__()
        self.prior = prior

    def forward(self, batch, generator: torch.Generator) -> CoupledBatch:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def data_of(batch) -> torch.Tensor:
        return batch[0] if isinstance(batch, (tuple, list)) else batch
