"""Plots. ``PLOTS`` maps a ``--kind`` to ``fn(run, out_path, args)``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StraightflowError
from .trajectories import draw_paths, plot_trajectories

PLOTS: dict[str, Callable] = {"trajectories": plot_trajectories}

#: data kind -> fn(run, samples, out_path) for ``sample --out FILE.png``
SAMPLE_WRITERS: dict[str, Callable] = {}


def _scatter_png(run, samples, out: Path) -> None:
    import matplotlib.pyplot as plt

    if samples.shape[1] != 2:
        raise StraightflowError(f"--out .png needs 2D or image data; this run's samples have {samples.shape[1]} dimensions (use .npy)")
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(samples[:, 0], samples[:, 1], s=2)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


SAMPLE_WRITERS["vector"] = _scatter_png


def save_samples_png(run, samples, out: Path) -> None:
    SAMPLE_WRITERS[run.data.kind](run, samples, out)


__all__ = ["PLOTS", "SAMPLE_WRITERS", "save_samples_png", "plot_trajectories", "draw_paths"]
