"""Figures without pyplot: nothing here selects a matplotlib backend or touches a
user's interactive state (a notebook's plots stay as they were)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, figsize=(5, 4), squeeze: bool = True):
    """``(fig, axes)`` like ``pyplot.subplots``, on a standalone Figure."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig: Figure, out: Path, dpi: int = 120, tight: bool = True) -> None:
    """Write ``fig`` to ``out`` (format from the suffix)."""
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=dpi)
