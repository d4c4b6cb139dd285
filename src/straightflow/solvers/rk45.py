"""Adaptive RK45 (Dormand-Prince) via scipy, as in the reference code.

Integrates from t = 1 to ``t_end`` = 1e-3 with rtol = atol = 1e-5; the NFE is
scipy's count of function evaluations. One step size is shared by the whole
batch, so the NFE depends on the batch that is solved together.

``to_zero=True`` (what teachers use, ``docs/api.md`` "Solvers"): after reaching
``t_end`` take the data prediction x_hat = z - t_end v(z, t_end) (the convention
``x_hat(x_t, t) = x_t - t v`` of ``docs/api.md``), i.e. the point at t = 0 of the
straight line through z_{t_end}: one more network call, counted in the NFE, and
never an evaluation at t = 0 itself. Without it the samples stay at t = t_end,
a t_end (z - x) offset from the data end.
"""

from __future__ import annotations

import numpy as np
import torch

from ..paths import data_prediction
from .base import CountingVelocity, SolveResult, VelocityFn


def rk45(
    velocity: VelocityFn,
    z: torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_end: float = 1e-3,
    return_trajectory: bool = False,
    to_zero: bool = False,
) -> SolveResult:
    """Dormand-Prince from t = 1 to ``t_end``; ``to_zero``: then x_hat(z, t_end) at t = 0 (one more call)."""
    from scipy.integrate import solve_ivp  # here, not at import: scipy loads only when RK45 runs

    v = CountingVelocity(velocity)
    shape, device, dtype = z.shape, z.device, z.dtype

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        zt = torch.from_numpy(y).to(device=device, dtype=dtype).view(shape)
        return v(zt, t).detach().double().cpu().numpy().reshape(-1)

    sol = solve_ivp(rhs, (1.0, t_end), z.detach().double().cpu().numpy().reshape(-1), method="RK45", rtol=rtol,
                    atol=atol)
    if sol.status < 0:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    final = torch.from_numpy(sol.y[:, -1]).to(device=device, dtype=dtype).view(shape)
    if to_zero and t_end > 0:
        final = data_prediction(final, t_end, v(final, t_end))
    if not return_trajectory:
        return SolveResult(final, v.calls)
    traj = torch.from_numpy(sol.y.T.copy()).to(device=device, dtype=dtype).view(-1, *shape)
    times = torch.from_numpy(sol.t.copy())
    if to_zero and t_end > 0:
        traj = torch.cat([traj, final[None]])
        times = torch.cat([times, times.new_zeros(1)])
    return SolveResult(final, v.calls, traj, times)
