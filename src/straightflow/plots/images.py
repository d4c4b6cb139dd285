"""Image figures: sample grids (``plot --kind grid``, ``sample --out FILE.png``)
and the data prediction x_hat(z_t, t) = z_t - t v(z_t, t) along sampling paths
(``plot --kind xhat``, the curvature paper's Fig. 6)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import StraightflowError
from ..paths import predict_data


def make_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (rows x cols) grid image, H x W x C (C = 1 or 3)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise StraightflowError(f"cannot draw images with {c} channels (need 1 or 3)")
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h,
             pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i].transpose(1, 2, 0)
    return grid


def save_grid(images: torch.Tensor, out: Path, ncol: int | None = None, min_size: int = 512) -> None:
    """Write a PNG grid, upscaled with nearest neighbours so tiny (8x8) images stay visible."""
    from PIL import Image

    grid = make_grid(images, ncol)
    scale = max(1, int(math.ceil(min_size / max(grid.shape[:2]))))
    im = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    im.save(out)


def _need_images(run) -> None:
    if run.data.kind != "image":
        raise StraightflowError(f"this plot needs image data; {run.cfg.data} holds {run.data.kind} data (use --kind "
                                "trajectories)")


def plot_grid(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None, seed: int = 0,
        classes=None, guidance: float | None = None) -> None:
    """``plot --kind grid``: n (default 64) samples at ``nfe`` (default 100) steps. A conditional
    run with ``classes`` None or "all" draws one row per class, n (default 8) samples each."""
    _need_images(run)
    if run.conditional and classes in (None, "all"):
        per_class = n or 8
        k = len(run.class_names)
        res = run.sample(per_class * k, nfe=nfe or 100, solver=solver, seed=seed, classes="all", guidance=guidance)
        title = f"{run.cfg.method} on {run.cfg.data}: {res.solver}, NFE {res.nfe}, guidance {res.guidance:g}"
        save_class_grid(res.samples, res.labels, run.class_names, Path(out), title)
        return
    res = run.sample(n or 64, nfe=nfe or 100, solver=solver, seed=seed, classes=classes, guidance=guidance)
    save_grid(res.samples, Path(out))


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, class_names, out: Path, title: str = "") -> None:
    """One row per class (named on the left), the images of that class left to right."""
    from .figure import save, subplots

    k = len(class_names)
    rows = [images[labels == c] for c in range(k)]
    cols = max(1, max(r.shape[0] for r in rows))
    blank = torch.ones(1, *images.shape[1:])  # white filler where a class has fewer images
    ordered = torch.cat([torch.cat([r, blank.expand(cols - r.shape[0], *images.shape[1:])]) for r in rows])
    grid = make_grid(ordered, ncol=cols)
    h = images.shape[-2] + 1
    fig, ax = subplots(figsize=(max(3.0, 0.45 * cols + 1.2), max(2.0, 0.45 * k + 0.6)))
    ax.imshow(grid[:, :, 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([1 + r * h + h / 2 - 1 for r in range(k)], labels=[str(c) for c in class_names], fontsize=7)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)
    save(fig, out)


@torch.inference_mode()
def xhat_along_paths(run, n: int, nfe: int, solver: str, seed: int, times=(1.0, 0.9, 0.75, 0.5, 0.25, 0.1, 0.0),
                     classes=None, guidance=None):
    """x_hat(z_t, t) at the trajectory states nearest to ``times`` for n noises.

    Returns (n, len(times), C, H, W) in data units and the times actually used.
    """
    res = run.sample(n, nfe=nfe, solver=solver, seed=seed, return_trajectory=True, classes=classes, guidance=guidance)
    velocity = run.velocity_fn(res.labels, res.guidance)
    grid = res.times.tolist()
    cols, used = [], []
    for t in times:
        i = min(range(len(grid)), key=lambda j: abs(grid[j] - t))
        z_t = run.data.normalize(res.trajectory[i].to(run.device))
        tt = torch.full((n,), grid[i], device=run.device)
        x_hat = predict_data(velocity, z_t, tt)
        cols.append(run.data.denormalize(x_hat).cpu())
        used.append(grid[i])
    return torch.stack(cols, dim=1), used


def plot_xhat(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None, seed: int = 0,
        classes=None, guidance: float | None = None) -> None:
    """``plot --kind xhat``: rows = noises, columns = t from 1 (noise) to 0 (sample)."""
    from .figure import save, subplots

    _need_images(run)
    solver = solver or run.method.default_solver
    if solver == "rk45":
        raise StraightflowError("plot --kind xhat needs a fixed-step solver (euler or heun)")
    n, nfe = n or 6, nfe or 100
    preds, used = xhat_along_paths(run, n, nfe, solver, seed, classes=classes, guidance=guidance)
    fig, axes = subplots(n, len(used), figsize=(1.1 * len(used), 1.1 * n + 0.4), squeeze=False)
    for r in range(n):
        for c, t in enumerate(used):
            img = ((preds[r, c].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            ax = axes[r, c]
            ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t:.2f}", fontsize=8)
    fig.suptitle(f"x_hat(z_t, t) = z_t - t v: {run.cfg.method} on {run.cfg.data} ({solver}, NFE {nfe})", fontsize=8)
    save(fig, out)
