"""Couplings: how a training pair (x, z) is drawn.

A coupling is called on a batch of (normalised) data ``x`` with a
``torch.Generator`` and returns a :class:`CoupledBatch`. It is an
``nn.Module`` so that a learned one (the curvature method's encoder) trains,
checkpoints and is averaged (EMA) together with the velocity net. Every
coupling works on a plain batch in a user's own loop::

    pair = coupling(x, generator)        # pair.x, pair.z (+ pair.aux_loss, pair.stats)
    pair = coupling(x, generator, y)     # class-conditional: labels y travel with x (pair.y)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from ..priors import DiagonalGaussianPrior


@dataclass
class CoupledBatch:
    x: torch.Tensor  #: data endpoint (t = 0)
    z: torch.Tensor  #: noise endpoint (t = 1)
    y: torch.Tensor | None = None  #: class labels of x (conditional training), else None
    aux_loss: torch.Tensor | None = None  #: extra loss term (e.g. beta * KL), already weighted
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Coupling(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``forward(batch, generator, y=None) -> CoupledBatch``; ``prior`` defaults to N(0, I).

    ``y`` (class labels, or None) is passed by the training module to every coupling; a coupling that
    does not use labels passes them on as ``CoupledBatch.y``."""

    def __init__(self, prior: DiagonalGaussianPrior | None = None):
        super().__init__()
        self.prior = prior if prior is not None else DiagonalGaussianPrior()

    @abc.abstractmethod
    def forward(self, batch, generator: torch.Generator, y: torch.Tensor | None = None) -> CoupledBatch:
        """The pair (x, z) of ``batch`` (and its labels ``y``) drawn with ``generator``."""

    @staticmethod
    def data_of(batch) -> torch.Tensor:
        """The data tensor of a batch given as ``x`` or as a tuple ``(x, ...)``."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def noise_like(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """z ~ prior, shaped like ``x``, from ``generator``."""
        return self.prior.sample(x.shape, generator=generator, device=x.device, dtype=x.dtype)
