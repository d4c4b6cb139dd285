"""Figures of the curvature method (curvature paper Fig. 1/4, 5, 7, 8).

Run plots (``straightflow plot --kind ...``):

* ``trajectories`` on a run whose coupling can ``encode`` (``--method curvature``):
  forward trajectories (straight lines from data x to z ~ q_phi(z|x)) beside the
  reverse (generative) trajectories from z ~ N(0, I), like Fig. 1/4. Other runs
  keep the plain reverse-path plot.
* ``znorm``: histogram of ||z|| under q_phi(z) = E_x q_phi(z|x) against the prior (Fig. 8b).

Sweep plots (``straightflow sweep``): curvature vs beta with the independent
baseline dashed (Fig. 5), quality vs NFE per beta (Fig. 7), generation vs
reconstruction quality vs beta (Fig. 8a) and, on 2D data, a forward/reverse
trajectory grid over beta (Fig. 4).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

from ..errors import StraightflowError
from ..methods.curvature import encode_sample
from ..noise import seeded_noise, stream_seed
from .figure import save as _save
from .figure import subplots
from .trajectories import draw_paths, plot_reverse_paths, require_2d


# ------------------------------------------------------------------ run plots
@torch.no_grad()
def forward_pairs(run, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, z) training pairs of the run's own coupling on held-out x, both in data units."""
    x, y = run.heldout(n, seed)
    g = torch.Generator(device=run.device).manual_seed(stream_seed("forward", seed))
    pair = run.module.coupling(run.data.normalize(x.to(run.device)), g, None if y is None else y.to(run.device))
    return x, run.data.denormalize(pair.z).cpu()


def draw_forward(ax, x: torch.Tensor, z: torch.Tensor, title: str, max_lines: int = 300) -> None:
    """Straight forward paths x (t = 0, red) -> z (t = 1, blue)."""
    x, z = x[:max_lines].numpy(), z[:max_lines].numpy()
    ax.plot([x[:, 0], z[:, 0]], [x[:, 1], z[:, 1]], c="olive", lw=0.5, alpha=0.5, zorder=1)
    ax.scatter(x[:, 0], x[:, 1], s=3, c="tab:red", label="data x", zorder=3)
    ax.scatter(z[:, 0], z[:, 1], s=3, c="tab:blue", label="z ~ coupling", zorder=2)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")


def _beta_text(run) -> str:
    return run.method.coupling_label(run.cfg)


def plot_forward_reverse(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None,
                         seed: int = 0, classes=None, guidance: float | None = None) -> None:
    """Forward (x -> z ~ q_phi(z|x)) and reverse (z ~ N(0, I) -> x) trajectories side by side."""
    require_2d(run)
    n = n or 300
    x, z = forward_pairs(run, n, seed)
    res = run.sample(n, nfe=nfe or 100, solver=solver, seed=seed, return_trajectory=True, classes=classes,
                     guidance=guidance)
    data, _ = run.data.reference(2000, seed)
    fig, axes = subplots(1, 2, figsize=(9, 4.6))
    draw_forward(axes[0], x, z, f"forward: x -> z ~ q_phi(z|x) ({_beta_text(run)})")
    draw_paths(axes[1], res.trajectory, data, f"reverse: z ~ prior -> x ({res.solver}, NFE {res.nfe})")
    lo = torch.minimum(torch.cat([x, z]).min(0).values, res.trajectory.flatten(0, 1).min(0).values).tolist()
    hi = torch.maximum(torch.cat([x, z]).max(0).values, res.trajectory.flatten(0, 1).max(0).values).tolist()
    for ax in axes:  # the same window on both panels
        ax.set_xlim(lo[0] - 0.2, hi[0] + 0.2)
        ax.set_ylim(lo[1] - 0.2, hi[1] + 0.2)
        ax.set_aspect("equal", adjustable="box")
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.suptitle(f"{run.cfg.method} on {run.cfg.data}", fontsize=10)
    _save(fig, out)


def plot_trajectories(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None,
                      seed: int = 0, classes=None, guidance: float | None = None) -> None:
    """``plot --kind trajectories``: forward + reverse paths for a run with a learned coupling, else reverse paths."""
    if hasattr(run.module.coupling, "encode"):
        return plot_forward_reverse(run, out, n, nfe, solver, seed, classes, guidance)
    return plot_reverse_paths(run, out, n, nfe, solver, seed, classes, guidance)


def plot_znorm(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None, seed: int = 0,
        classes=None, guidance: float | None = None) -> None:
    """Histogram of ||z|| with z ~ q_phi(z|x), x held out, against z ~ p(z) (Fig. 8b)."""
    if not hasattr(run.module.coupling, "encode"):
        raise StraightflowError(f"--kind znorm needs a run with a learned coupling (--method curvature); {run.dir} is "
                                f"{run.method.name or run.cfg.method}")
    x, y = run.heldout(n or 2000, seed)
    _, _, z_norm = encode_sample(run, x, seed, labels=y)
    prior_norm = seeded_noise(z_norm.shape[0], tuple(run.data.shape), seed, "prior-norm",
                              run.prior).flatten(1).norm(dim=1)
    fig, ax = subplots(figsize=(5, 3.6))
    hi = float(torch.quantile(torch.cat([z_norm, prior_norm]), 0.995))
    lo = float(torch.cat([z_norm, prior_norm]).min())
    bins = torch.linspace(lo, hi, 50).numpy()
    ax.hist(prior_norm.numpy(), bins=bins, alpha=0.5, density=True, label=f"z ~ p(z) (mean {prior_norm.mean():.3g})")
    ax.hist(z_norm.numpy(), bins=bins, alpha=0.5, density=True, label=f"z ~ q_phi(z|x) (mean {z_norm.mean():.3g})")
    ax.set_xlabel("||z||")
    ax.set_ylabel("density")
    ax.set_title(f"{run.cfg.data}: {_beta_text(run)}", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out)



# ------------------------------------------------------------------ sweep plots
def _split(sweep: dict) -> tuple[list[dict], dict | None]:
    finite = sorted((r for r in sweep["runs"] if r["beta"] != "inf"), key=lambda r: r["beta"])
    base = next((r for r in sweep["runs"] if r["beta"] == "inf"), None)
    return finite, base


def _colors(k: int):
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(1, k - 1) * 0.9) for i in range(k)]


def plot_curvature_vs_beta(sweep: dict, out: Path) -> None:
    """Fig. 5: curvature E[C(Z)] against beta, the independent coupling dashed."""
    finite, base = _split(sweep)
    fig, ax = subplots(figsize=(5, 3.6))
    if finite:
        ax.plot([r["beta"] for r in finite], [r["report"]["curvature"] for r in finite], "o-", c="tab:red",
                label="learned coupling")
    if base is not None:
        ax.axhline(base["report"]["curvature"], ls="--", c="k", lw=1, label="independent (beta = inf)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel("curvature E[C(Z)] (Eq. 5)")
    ax.set_title(f"{sweep['data']}: curvature vs beta ({sweep['steps']} steps)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out)


def plot_quality_vs_nfe(sweep: dict, out: Path) -> None:
    """Fig. 7: sample quality against NFE, one line per beta, the baseline dashed."""
    finite, base = _split(sweep)
    key = sweep["quality_metric"]
    fig, ax = subplots(figsize=(5.5, 3.8))
    for r, c in zip(finite, _colors(len(finite))):
        res = r["report"]["results"]
        ax.plot([x["nfe"] for x in res], [x[key] for x in res], "o-", c=c, ms=3, label=f"beta = {r['beta']:g}")
    if base is not None:
        res = base["report"]["results"]
        ax.plot([x["nfe"] for x in res], [x[key] for x in res], "s--", c="k", ms=3, label="independent (beta = inf)")
    floor = sweep.get("floor", {}).get(f"{key}_floor")
    if floor is not None:
        ax.axhline(floor, ls=":", c="0.5", lw=1, label="two-sample floor")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"NFE ({sweep['solver']})")
    ax.set_ylabel(key)
    ax.set_title(f"{sweep['data']}: {key} vs NFE", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out)


def plot_recon_gap(sweep: dict, out: Path) -> None:
    """Fig. 8a: generation (z ~ p(z)) vs reconstruction (z ~ q_phi(z|x)) quality at the largest NFE, per beta."""
    finite, base = _split(sweep)
    key = sweep["quality_metric"]
    finite = [r for r in finite if f"recon_{key}" in r["report"]]
    if not finite:
        return
    top = max(sweep["nfe"])
    gen = [next(x[key] for x in r["report"]["results"] if x["nfe_requested"] == top) for r in finite]
    fig, ax = subplots(figsize=(5, 3.6))
    betas = [r["beta"] for r in finite]
    ax.plot(betas, gen, "o-", label=f"generation {key} (z ~ p(z))")
    ax.plot(betas, [r["report"][f"recon_{key}"] for r in finite], "s-", label=f"reconstruction {key} (z ~ q_phi(z|x))")
    if base is not None:
        ax.axhline(next(x[key] for x in base["report"]["results"] if x["nfe_requested"] == top), ls="--", c="k", lw=1,
                   label="independent (beta = inf)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel(f"{key} at NFE {top}")
    ax.set_title(f"{sweep['data']}: reconstruction vs generation", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out)


def plot_sweep_trajectories(runs: list[tuple[str, object]], out: Path, n: int = 300, nfe: int = 100,
                            seed: int = 0) -> None:
    """Fig. 4: one column per beta (independent first), forward paths on top, reverse below (2D only)."""
    fig, axes = subplots(2, len(runs), figsize=(3.2 * len(runs), 6.6), squeeze=False)
    for j, (label, run) in enumerate(runs):
        x, z = forward_pairs(run, n, seed)
        res = run.sample(n, nfe=nfe, solver="euler", seed=seed, return_trajectory=True)
        draw_forward(axes[0, j], x, z, f"{label}: forward")
        reference, _ = run.data.reference(2000, seed)
        draw_paths(axes[1, j], res.trajectory, reference, f"{label}: reverse (euler {nfe})")
    _save(fig, out, dpi=110)


def write_sweep_plots(sweep: dict, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for name, fn in (("curvature_vs_beta.png", plot_curvature_vs_beta), ("quality_vs_nfe.png", plot_quality_vs_nfe),
                     ("recon_gap.png", plot_recon_gap)):
        fn(sweep, out_dir / name)
        if (out_dir / name).exists():
            paths.append(out_dir / name)
    return paths


__all__ = [
    "plot_forward_reverse",
    "plot_znorm",
    "plot_curvature_vs_beta",
    "plot_quality_vs_nfe",
    "plot_recon_gap",
    "plot_sweep_trajectories",
    "write_sweep_plots",
    "forward_pairs",
    "draw_forward",
]
