"""2D trajectory figures like the papers' (reverse paths drawn over the data)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..errors import StraightflowError  # noqa: E402


def draw_paths(ax, traj: torch.Tensor, data: torch.Tensor, title: str, max_lines: int = 300) -> None:
    """Draw (S+1, n, 2) paths from noise (t = 1, blue) to samples (t = 0, red) over data (grey)."""
    ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data", zorder=0)
    lines = traj[:, :max_lines].numpy()
    ax.plot(lines[:, :, 0], lines[:, :, 1], c="olive", lw=0.5, alpha=0.5, zorder=1)
    ax.scatter(lines[0, :, 0], lines[0, :, 1], s=3, c="tab:blue", label="z ~ prior", zorder=2)
    ax.scatter(lines[-1, :, 0], lines[-1, :, 1], s=3, c="tab:red", label="samples", zorder=3)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")


def plot_trajectories(run, out: Path, args) -> None:
    if run.data.kind != "vector" or tuple(run.data.shape) != (2,):
        raise StraightflowError(f"trajectory plots need 2D data; {run.cfg.data} has shape {tuple(run.data.shape)} (use --kind grid for images)")
    n = args.n or 300
    nfe = args.nfe or 100
    solver = args.solver or run.method.default_solver
    res = run.sample(n, nfe=nfe, solver=solver, seed=args.seed, return_trajectory=True)
    data = run.data.reference(2000, args.seed)
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_paths(ax, res.trajectory, data, f"{run.cfg.method} on {run.cfg.data}: reverse paths ({solver}, NFE {res.nfe})")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
