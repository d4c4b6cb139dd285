"""Adaptive RK45 (Dormand-Prince) via scipy, as in the reference code.

Integrates from t = 1 to ``t_end`` = 1e-3 with rtol = atol = 1e-5; the NFE is
scipy's count of function evaluations. One step size is shared by the whole
batch, so the NFE depends on the batch that is solved together.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

from .base import CountingVelocity, SolveResult, VelocityFn


def rk45(
    velocity: VelocityFn,
    z: torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_end: float = 1e-3,
    return_trajectory: bool = False,
) -> SolveResult:
    v = CountingVelocity(velocity)
    shape, device, dtype = z.shape, z.device, z.dtype

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        zt = torch.from_numpy(y).to(device=device, dtype=dtype).view(shape)
        return v(zt, t).detach().double().cpu().numpy().reshape(-1)

    sol = solve_ivp(rhs, (1.0, t_end), z.detach().double().cpu().numpy().reshape(-1), method="RK45", rtol=rtol, atol=atol)
    if sol.status < 0:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    final = torch.from_numpy(sol.y[:, -1]).to(device=device, dtype=dtype).view(shape)
    if not return_trajectory:
        return SolveResult(final, v.calls)
    traj = torch.from_numpy(sol.y.T.copy()).to(device=device, dtype=dtype).view(-1, *shape)
    return SolveResult(final, v.calls, traj, torch.from_numpy(sol.t.copy()))
