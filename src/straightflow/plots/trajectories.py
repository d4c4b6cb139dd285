"""2D trajectory figures like the papers' (reverse paths drawn over the data)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import StraightflowError
from .figure import save, subplots


def draw_paths(ax, traj: torch.Tensor, data: torch.Tensor | None, title: str, max_lines: int = 300) -> None:
    """Draw (S+1, n, 2) paths from noise (t = 1, blue) to samples (t = 0, red) over data (grey; None: no data)."""
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data", zorder=0)
    lines = traj[:, :max_lines].numpy()
    ax.plot(lines[:, :, 0], lines[:, :, 1], c="olive", lw=0.5, alpha=0.5, zorder=1)
    ax.scatter(lines[0, :, 0], lines[0, :, 1], s=3, c="tab:blue", label="z ~ prior", zorder=2)
    ax.scatter(lines[-1, :, 0], lines[-1, :, 1], s=3, c="tab:red", label="samples", zorder=3)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")


def require_2d(run) -> None:
    if run.data.kind != "vector" or tuple(run.data.shape) != (2,):
        raise StraightflowError(f"trajectory plots need 2D data; {run.cfg.data} has shape {tuple(run.data.shape)} (use "
                                "--kind grid for images)")


def plot_reverse_paths(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None,
                       seed: int = 0, classes=None, guidance: float | None = None) -> None:
    """Reverse (generative) paths of ``n`` (300) samples at ``nfe`` (100) steps over held-out data
    (without it for a model loaded without its training data, e.g. an export)."""
    require_2d(run)
    res = run.sample(n or 300, nfe=nfe or 100, solver=solver, seed=seed, return_trajectory=True, classes=classes,
                     guidance=guidance)
    fig, ax = subplots(figsize=(5, 5))
    data = run.data.reference(2000, seed)[0] if run.data_available else None
    where = "" if data is not None else " (training data not available)"
    draw_paths(ax, res.trajectory, data,
               f"{run.cfg.method} on {run.cfg.data}: reverse paths ({res.solver}, NFE {res.nfe}){where}")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    save(fig, out)
