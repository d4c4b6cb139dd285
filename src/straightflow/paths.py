"""The straight path between data and noise: one time convention everywhere.

t = 0 is data, t = 1 is noise (the curvature paper's convention)::

    x_t = (1 - t) x + t z          velocity target  z - x
    x_hat(x_t, t) = x_t - t v(x_t, t)     the data (endpoint) prediction

Generation integrates dz/dt = v(z, t) from t = 1 down to t = 0. Peers
(torchcfm, Meta's flow_matching) use t_peer = 1 - t and v_peer = -v; see
``docs/api.md`` for the one-line adapters.
"""

from __future__ import annotations

import torch

from .conditioning import call_velocity


def broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (B,) time tensor so that it broadcasts against ``like`` (B, ...)."""
    return t.view(-1, *([1] * (like.dim() - 1)))


def interpolate(x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t z, with t of shape (B,)."""
    tb = broadcast_time(t, x)
    return (1 - tb) * x + tb * z


def velocity_target(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """d x_t / dt = z - x along the straight path."""
    return z - x


def data_prediction(x_t: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """x_hat(x_t, t) = x_t - t v(x_t, t): where the straight line through x_t with velocity v meets t = 0."""
    if not torch.is_tensor(t) or t.dim() == 0:
        return x_t - float(t) * v
    return x_t - broadcast_time(t, x_t) * v


def predict_data(net, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """x_hat of a velocity network ``net(x_t, t)`` (t of shape (B,)), or ``net(x_t, t, y)`` given labels ``y``."""
    return data_prediction(x_t, t, call_velocity(net, x_t, t, y))


def sample_times(n: int, generator: torch.Generator, t_min: float, device=None) -> torch.Tensor:
    """t ~ U(t_min, 1] (curvature paper Eq. 1: t = 1 is included, t = 0 is not)."""
    u = torch.rand(n, generator=generator, device=device if device is not None else generator.device)
    return t_min + (1.0 - t_min) * (1.0 - u)  # (t_min, 1]
