"""ODE solvers with honest NFE counts (curvature paper Sec. 5; ``docs/api.md``).

``solve(velocity, z, solver, nfe)`` dispatches by name; every solver returns a
:class:`SolveResult` whose ``nfe`` is the number of network calls made.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import StraightflowError
from .base import CountingVelocity, SolveResult, VelocityFn, uniform_grid
from .fixed_step import HEUN_EVEN_NOTE, euler, heun
from .lines import lines
from .rk45 import rk45

#: name -> (velocity, z, nfe, return_trajectory) -> SolveResult ; nfe is ignored by adaptive solvers
SOLVERS: dict[str, Callable[..., SolveResult]] = {
    "euler": euler,
    "heun": heun,
    "rk45": lambda velocity, z, nfe, return_trajectory=False: rk45(velocity, z, return_trajectory=return_trajectory),
    "lines": lines,
}


def check_solver(solver: str, nfe: int) -> None:
    """The errors :func:`solve` gives before any step: an unknown solver, or a fixed-step solver's ``nfe`` below 1
    (RK45 picks its own steps)."""
    if solver not in SOLVERS:
        raise StraightflowError(f"unknown solver {solver!r}: use one of {', '.join(sorted(SOLVERS))}")
    if solver != "rk45" and nfe < 1:
        raise StraightflowError(f"{solver} needs nfe >= 1, got {nfe}")


def solve(velocity: VelocityFn, z: torch.Tensor, solver: str = "euler", nfe: int = 1,
          return_trajectory: bool = False) -> SolveResult:
    """Integrate dz/dt = v(z, t) from t = 1 (noise ``z``) to t = 0 with ``solver``; ``result.nfe`` counts the calls."""
    check_solver(solver, nfe)
    return SOLVERS[solver](velocity, z, nfe, return_trajectory=return_trajectory)


__all__ = ["SOLVERS", "HEUN_EVEN_NOTE", "SolveResult", "CountingVelocity", "VelocityFn", "check_solver", "solve",
           "euler", "heun", "rk45", "lines", "uniform_grid"]
