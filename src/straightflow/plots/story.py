"""The demo's figure: reverse paths of several 2D runs side by side, and W2 against NFE for all of them."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.ticker import NullLocator

from .figure import save, subplots
from .trajectories import draw_paths


def plot_story(panels: list[dict], data: torch.Tensor, w2_floor: float, out: Path, title: str = "") -> None:
    """A reverse-path panel per entry of ``panels``, then W2 vs NFE for all of them, two panels a row.

    Each entry holds ``label``, ``trajectory`` ((S+1, n, 2) paths from noise to samples, data units),
    ``paths`` (how they were drawn, e.g. "Euler, NFE 100") and ``w2`` ({nfe: W2}); ``data`` is drawn
    grey under every path panel and ``w2_floor`` (the two-sample floor) as a dashed line.
    """
    rows = (len(panels) + 2) // 2
    fig, grid = subplots(rows, 2, figsize=(10, 4.7 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels) + 1:]:
        ax.set_axis_off()
    points = torch.cat([data] + [p["trajectory"].flatten(0, 1) for p in panels])
    lo, hi = torch.quantile(points, 0.002, dim=0).tolist(), torch.quantile(points, 0.998, dim=0).tolist()
    for ax, p in zip(axes, panels):
        nfe1 = p["w2"].get(1)
        w2_text = f"\nW2 at NFE 1: {nfe1:.3g}" if nfe1 is not None else ""
        draw_paths(ax, p["trajectory"], data, f"{p['label']}\nreverse paths ({p['paths']}){w2_text}")
        ax.set_xlim(lo[0] - 0.3, hi[0] + 0.3)  # one window for every path panel
        ax.set_ylim(lo[1] - 0.3, hi[1] + 0.3)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x1", fontsize=8)
        ax.set_ylabel("x2", fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7, markerscale=3)
    ax = axes[len(panels)]
    for p, marker in zip(panels, "os^vD"):
        nfes = sorted(p["w2"])
        ax.plot(nfes, [p["w2"][k] for k in nfes], marker=marker, ms=4, label=p["label"])
    ax.axhline(w2_floor, color="0.3", ls="--", lw=1, label=f"two-sample floor ({w2_floor:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({k for p in panels for k in p["w2"]})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    values = [v for p in panels for v in p["w2"].values()] + [w2_floor]
    yticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if min(values) / 1.5 <= t <= max(values) * 1.5]
    ax.set_yticks(yticks, [f"{t:g}" for t in yticks])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("NFE (network evaluations per sample)", fontsize=8)
    ax.set_ylabel("W2 to held-out data (lower is better)", fontsize=8)
    ax.set_title("quality vs NFE (log-log)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    save(fig, out)
