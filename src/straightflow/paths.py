"""The straight path between data and noise (METHODS.md section 1).

t = 0 is data, t = 1 is noise: ``x_t = (1 - t) x + t z``; velocity ``z - x``;
data prediction ``x_hat = x_t - t v``. Peers (torchcfm, Meta's flow_matching)
use t_peer = 1 - t and v_peer = -v.
"""

from __future__ import annotations

import torch


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


def interpolate(x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t z, with t of shape (B,)."""
    tb = _bcast(t, x)
    return (1 - tb) * x + tb * z


def velocity_target(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return z - x


def data_prediction(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_hat(x_t, t) = x_t - t v(x_t, t)."""
    return x_t - _bcast(t, x_t) * v


def sample_times(n: int, generator: torch.Generator, t_min: float, device=None) -> torch.Tensor:
    """t ~ U(t_min, 1]."""
    u = torch.rand(n, generator=generator, device=device if device is not None else generator.device)
    return t_min + (1.0 - t_min) * (1.0 - u)  # (t_min, 1]
