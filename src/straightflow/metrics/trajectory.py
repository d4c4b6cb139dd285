"""Trajectory metrics: curvature (curvature paper Eq. 5) and prediction drift."""

from __future__ import annotations

import torch

from ..paths import data_prediction
from ..solvers import euler
from ..solvers.base import VelocityFn


@torch.no_grad()
def curvature(velocity: VelocityFn, z: torch.Tensor, steps: int = 128) -> float:
    """E[C(Z)] of the curvature paper's Eq. 5, as its reference code computes it.

    Along a ``steps``-step Euler path from ``z`` (t = 1) to t = 0, with chord
    ``z_1 - z_0`` (start minus end: over unit time the path's mean velocity),
    the per-element mean of ``(v_i - chord)^2`` averaged over steps, batch and
    dimensions: the variance of the velocity over time, per dimension.
    """
    vels = []

    def recording(x, t):
        v = velocity(x, t)
        vels.append(v)
        return v

    result = euler(recording, z, steps)
    chord = z - result.samples  # z_1 - z_0
    return float(torch.stack([(v - chord).pow(2).mean() for v in vels]).mean())


@torch.no_grad()
def prediction_drift(velocity: VelocityFn, z: torch.Tensor, steps: int = 32) -> float:
    """Mean squared change of the data prediction x_hat(z_t, t) = z_t - t v
    between consecutive steps of an Euler path, summed over the path and
    averaged per element: 0 for a perfectly temporally consistent model."""
    preds = []

    def recording(x, t):
        v = velocity(x, t)
        preds.append(data_prediction(x, t, v))
        return v

    euler(recording, z, steps)
    return float(sum((b - a).pow(2).mean() for a, b in zip(preds[:-1], preds[1:])))
