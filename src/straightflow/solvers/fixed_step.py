"""Fixed-step solvers: Euler and Heun (the curvature paper's odd-NFE variant)."""

from __future__ import annotations

import torch

from ..errors import StraightflowError
from .base import CountingVelocity, SolveResult, VelocityFn, uniform_grid

#: ``SolveResult.note`` of Heun at even NFE (``docs/api.md`` "Solvers")
HEUN_EVEN_NOTE = ("heun at even NFE evaluates the network at t = 0, a time training never draws (t in (t_min, 1]); odd "
                  "NFE does not")


def _finish(z, v: CountingVelocity, traj, grid, keep, note: str | None = None) -> SolveResult:
    if keep:
        return SolveResult(z, v.calls, torch.stack(traj), torch.tensor(grid[: len(traj)]), note)
    return SolveResult(z, v.calls, note=note)


def euler(velocity: VelocityFn, z: torch.Tensor, nfe: int, return_trajectory: bool = False) -> SolveResult:
    """N uniform Euler steps from t = 1 to t = 0; NFE = N."""
    if nfe < 1:
        raise StraightflowError(f"euler needs nfe >= 1, got {nfe}")
    v = CountingVelocity(velocity)
    grid = uniform_grid(nfe)
    traj = [z] if return_trajectory else None
    for t, t_next in zip(grid[:-1], grid[1:]):
        z = z + (t_next - t) * v(z, t)
        if return_trajectory:
            traj.append(z)
    return _finish(z, v, traj, grid, return_trajectory)


def heun(velocity: VelocityFn, z: torch.Tensor, nfe: int, return_trajectory: bool = False) -> SolveResult:
    """Heun's second-order method with exactly ``nfe`` evaluations.

    Odd N (the curvature paper's variant): (N + 1) / 2 uniform steps, each a
    Heun step except the last, which is plain Euler (no evaluation at t = 0).
    Even N: N / 2 uniform Heun steps, whose last corrector evaluates the network
    at t = 0, outside the times training draws; the result carries
    :data:`HEUN_EVEN_NOTE` in ``note`` so every table of it says so. NFE = N either way.
    """
    if nfe < 1:
        raise StraightflowError(f"heun needs nfe >= 1, got {nfe}")
    steps = (nfe + 1) // 2 if nfe % 2 else nfe // 2
    last_euler = nfe % 2 == 1
    v = CountingVelocity(velocity)
    grid = uniform_grid(steps)
    traj = [z] if return_trajectory else None
    for i, (t, t_next) in enumerate(zip(grid[:-1], grid[1:])):
        h = t_next - t
        d = v(z, t)
        if last_euler and i == steps - 1:
            z = z + h * d
        else:
            z_pred = z + h * d
            z = z + 0.5 * h * (d + v(z_pred, t_next))
        if return_trajectory:
            traj.append(z)
    return _finish(z, v, traj, grid, return_trajectory, None if last_euler else HEUN_EVEN_NOTE)
