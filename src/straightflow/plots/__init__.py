"""Figures of trained runs and sweeps (matplotlib's object API: no pyplot, no backend switch).

:data:`PLOTS` is the static table behind ``straightflow plot --kind K``; every entry
is ``fn(run, out, n=None, nfe=None, solver=None, seed=0, classes=None, guidance=None)``
(the last two for class-conditional runs). The kinds in :data:`RUN_DIR_PLOTS` draw what a
run directory logged and take the directory itself as ``run`` (a loaded run works too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StraightflowError
from .curvature import plot_trajectories, plot_znorm
from .figure import save, subplots
from .images import plot_grid, plot_xhat, save_class_grid, save_grid
from .loss import LossPlot, plot_loss
from .story import plot_story
from .trajectories import draw_paths, plot_reverse_paths

PLOTS: dict[str, Callable] = {
    "trajectories": plot_trajectories,  # 2D: reverse paths (forward + reverse with a learned coupling)
    "znorm": plot_znorm,  # ||z|| under q_phi vs the prior (curvature method)
    "grid": plot_grid,  # images: a sample grid
    "xhat": plot_xhat,  # images: x_hat(z_t, t) along sampling paths
    "loss": plot_loss,  # any run: stats.jsonl (and quality.jsonl) against the step; no checkpoint needed
}

#: kinds that read the run directory's logs only: ``run`` may be the directory (nothing is loaded)
RUN_DIR_PLOTS = frozenset({"loss"})


def save_samples_png(run, samples, out: Path, labels=None) -> None:
    """``sample --out FILE.png``: an image grid (one row per class when ``labels`` span several), or a scatter of 2D
    points."""
    if run.data.kind == "image":
        if labels is not None and len(set(labels.tolist())) > 1:
            save_class_grid(samples, labels, run.class_names, Path(out))
        else:
            save_grid(samples, Path(out))
        return
    if samples.shape[1] != 2:
        raise StraightflowError(f"--out .png needs 2D or image data; this run's samples have {samples.shape[1]} "
                                "dimensions (use .npy)")
    fig, ax = subplots(figsize=(4, 4))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c=None if labels is None else labels.numpy(),
               cmap="tab10" if labels is not None else None)
    ax.set_aspect("equal", adjustable="datalim")
    save(fig, out)


__all__ = ["PLOTS", "RUN_DIR_PLOTS", "plot_loss", "LossPlot", "save_samples_png", "plot_trajectories",
           "plot_reverse_paths", "plot_znorm", "plot_grid", "plot_xhat", "draw_paths", "save_class_grid", "plot_story"]
