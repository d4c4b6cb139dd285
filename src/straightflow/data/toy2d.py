"""Built-in 2D sets, generated on the fly from a torch generator.

Each set yields unlimited fresh samples with a natural class label (:data:`CLASS_NAMES`); ``reference`` and
``floor_reference`` draw from their own named noise streams (:mod:`straightflow.noise`), disjoint
from training and from sampling noise, so held-out comparisons are honest.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..noise import stream_generator
from .base import DataSource

#: (n, generator, labels=None) -> (points, labels); with ``labels`` given, points of those classes
Sampler = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _moons(n: int, g: torch.Generator, labels: torch.Tensor | None = None):
    upper = torch.rand(n, generator=g, device=g.device) < 0.5 if labels is None else labels.to(g.device) == 0
    angle = torch.rand(n, generator=g, device=g.device) * math.pi
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    pts = torch.stack([x, y], dim=1) + 0.05 * torch.randn(n, 2, generator=g, device=g.device)
    # centre and scale to roughly unit spread
    return (pts - torch.tensor([0.5, 0.25], device=g.device)) * 2.0, (~upper).long()


def _eight_gaussians(n: int, g: torch.Generator, labels: torch.Tensor | None = None):
    k = torch.randint(0, 8, (n,), generator=g, device=g.device) if labels is None else labels.to(g.device)
    angle = k.float() * (2 * math.pi / 8)
    centres = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * 2.0
    return centres + 0.2 * torch.randn(n, 2, generator=g, device=g.device), k.long()


def _checkerboard(n: int, g: torch.Generator, labels: torch.Tensor | None = None):
    # 4x4 board on [-2, 2]^2, points uniform in the 8 "black" squares; the label is the square (2 * col + row // 2)
    if labels is None:
        col = torch.randint(0, 4, (n,), generator=g, device=g.device)
        half = torch.randint(0, 2, (n,), generator=g, device=g.device)
    else:
        col, half = labels.to(g.device) // 2, labels.to(g.device) % 2
    row = 2 * half + (col % 2)
    u = torch.rand(n, 2, generator=g, device=g.device)
    x = col.float() + u[:, 0] - 2.0
    y = row.float() + u[:, 1] - 2.0
    return torch.stack([x, y], dim=1), (2 * col + half).long()


def _spirals(n: int, g: torch.Generator, labels: torch.Tensor | None = None):
    r = torch.sqrt(torch.rand(n, generator=g, device=g.device)) * 3.0 * math.pi
    first = torch.rand(n, generator=g, device=g.device) < 0.5 if labels is None else labels.to(g.device) == 0
    arm = torch.where(first, 1.0, -1.0)
    x = arm * r * torch.cos(r)
    y = arm * r * torch.sin(r)
    pts = torch.stack([x, y], dim=1) / 3.0
    return pts + 0.1 * torch.randn(n, 2, generator=g, device=g.device), (~first).long()


def _two_gaussians(n: int, g: torch.Generator, labels: torch.Tensor | None = None):
    # curvature paper's toy: means (-8, 8) and (8, 8), covariance diag(3, 0.1)
    left = torch.rand(n, generator=g, device=g.device) < 0.5 if labels is None else labels.to(g.device) == 0
    sign = torch.where(left, -1.0, 1.0)
    mean = torch.stack([8.0 * sign, torch.full((n,), 8.0, device=g.device)], dim=1)
    pts = mean + torch.randn(n, 2, generator=g, device=g.device) * torch.tensor(
        [math.sqrt(3.0), math.sqrt(0.1)], device=g.device)
    return pts, (~left).long()


BUILTIN_2D: dict[str, Sampler] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
    "two-gaussians": _two_gaussians,
}

#: the natural label of each set: moon, mode, board square, spiral arm, component
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "moons": ("upper", "lower"),
    "8gaussians": tuple(f"mode{k}" for k in range(8)),
    "checkerboard": tuple(f"square{k}" for k in range(8)),
    "spirals": ("arm0", "arm1"),
    "two-gaussians": ("left", "right"),
}


class Toy2D(DataSource):
    """One of :data:`BUILTIN_2D`; unlimited fresh samples."""

    kind = "vector"

    def __init__(self, name: str):
        self.name = name
        self.shape = (2,)
        self._sampler = BUILTIN_2D[name]
        self.class_names = CLASS_NAMES[name]  # every class equally likely

    def sample_train(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sampler(n, generator)

    def sample_class(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Points of the given classes (one per label)."""
        return self._sampler(labels.shape[0], generator, labels)[0]

    def reference(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sampler(n, stream_generator("reference", seed))

    def floor_reference(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sampler(n, stream_generator("floor", seed))

    def with_validation(self, fraction: float, seed: int) -> "Toy2D":
        """Generated data: training draws are unchanged (unlimited fresh samples) and :meth:`validation`
        draws from a stream of its own, never the ``reference`` stream ``eval`` scores against."""
        return self

    def validation(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sampler(n, stream_generator("validation", seed))
