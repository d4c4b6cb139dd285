"""The line sampler of the lines method ("Generative Lines Matching Models"; ``docs/lines.md``).

Keep the initial noise ``z_1`` and, at every step, re-project onto the
straight line through it and the current data prediction::

    x_hat = z_t - t v(z_t, t)
    z_{t_next} = (1 - t_next) x_hat + t_next z_1

on a uniform grid from t = 1 to t = 0; NFE = number of steps. With an exact
endpoint predictor (x_hat = x* anywhere on the line from z_1 to x*) every
step lands on that line and the result is x* at any NFE. With NFE = 1 it is
the same as one Euler step: z_1 - v(z_1, 1).
"""

from __future__ import annotations

import torch

from ..errors import StraightflowError
from ..paths import data_prediction
from .base import CountingVelocity, SolveResult, VelocityFn, uniform_grid


def lines(velocity: VelocityFn, z: torch.Tensor, nfe: int, return_trajectory: bool = False) -> SolveResult:
    """``nfe`` line-sampler steps from t = 1 to t = 0; NFE = steps."""
    if nfe < 1:
        raise StraightflowError(f"lines needs nfe >= 1, got {nfe}")
    v = CountingVelocity(velocity)
    grid = uniform_grid(nfe)
    z1, state = z, z
    traj = [z] if return_trajectory else None
    for t, t_next in zip(grid[:-1], grid[1:]):
        x_hat = data_prediction(state, t, v(state, t))
        state = (1.0 - t_next) * x_hat + t_next * z1
        if return_trajectory:
            traj.append(state)
    if return_trajectory:
        return SolveResult(state, v.calls, torch.stack(traj), torch.tensor(grid))
    return SolveResult(state, v.calls)

