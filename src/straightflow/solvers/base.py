"""Solver contract (``docs/api.md``).

Generation integrates dz/dt = v(z, t) from t = 1 (noise) to t = 0 (data).
Every solver counts its network calls: ``SolveResult.nfe`` is the exact
number of evaluations of ``velocity`` it made (for the whole batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

#: v(z_t, t) with z_t of shape (B, ...) and t of shape (B,)
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SolveResult:
    samples: torch.Tensor  #: the state at the final time (t = 0, or 1e-3 for RK45 without ``to_zero``)
    nfe: int  #: network evaluations used
    trajectory: torch.Tensor | None = None  #: (S + 1, B, ...) states, t = 1 first
    times: torch.Tensor | None = None  #: (S + 1,) times of the trajectory states
    note: str | None = None  #: a caveat every table of these samples prints (e.g. Heun at even NFE evaluates t = 0)


class CountingVelocity:
    """Wraps a velocity function and counts its calls."""

    def __init__(self, fn: VelocityFn):
        self.fn = fn
        self.calls = 0

    def __call__(self, z: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if not torch.is_tensor(t) or t.dim() == 0:
            t = torch.full((z.shape[0],), float(t), device=z.device, dtype=z.dtype)
        return self.fn(z, t)


def uniform_grid(steps: int, t_start: float = 1.0, t_end: float = 0.0) -> list[float]:
    return [t_start + (t_end - t_start) * i / steps for i in range(steps + 1)]
