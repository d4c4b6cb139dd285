"""Section 3, ``curvature``: beta sweeps of the curvature method on 2D sets (the curvature paper's Fig. 4, 5, 7, 8).

One ``straightflow sweep`` per set trains a curvature-method run per beta (``inf`` = the
baseline) at the same budget and tabulates curvature (the curvature paper's Eq. 5), quality
per NFE, KL and reconstruction quality. The sweep renderers here serve section 5 (digits) too.
"""

from __future__ import annotations

import math

from ...formatting import beta_label, significant
from ..document import Block, Heading, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import curvature_sweep_jobs
from .results import quality
from .spec import Context, SectionSpec


def curvature_jobs(scale: Scale) -> list[Job]:
    """The sweep (and its plots) of every 2D set of the scale."""
    return [j for d in scale.sweep_sets for j in curvature_sweep_jobs(scale, d)]


def sweep_table(sweep: dict) -> Table:
    """The sweep's table (as ``sweep.md``): curvature, quality per NFE, KL, reconstruction, ratios to beta = inf."""
    key, nfes = sweep["quality_metric"], sweep["nfe"]
    top, low = max(nfes), min(nfes)
    runs = sorted(sweep["runs"], key=lambda r: math.inf if r["beta"] == "inf" else r["beta"])
    base = next((r["report"] for r in runs if r["beta"] == "inf"), None)
    header = (["beta", "method", "curvature"] + [f"{key} NFE {k}" for k in nfes]
              + ["KL (held-out)", f"recon {key} NFE {top}", "flow loss (held-out)"])
    if base:
        header += ["curvature / baseline", f"{key} NFE {low} / baseline"]
    rows = []
    for r in runs:
        rep, q = r["report"], quality(r["report"])
        row = [significant(r["beta"] if r["beta"] == "inf" else float(r["beta"])), r["method"],
               significant(rep["curvature"])]
        row += [significant(q.get(k)) for k in nfes]
        row += [significant(rep.get("kl", 0.0 if r["beta"] == "inf" else None)), significant(rep.get(f"recon_{key}")),
                significant(rep.get("flow_loss_heldout"))]
        if base:
            qb = quality(base)
            row += [significant(rep["curvature"] / base["curvature"]) if base["curvature"] else "-",
                    significant(q[low] / qb[low]) if low in q and qb.get(low) else "-"]
        rows.append(row)
    return Table(header, rows)


def sweep_checks(sweep: dict) -> str:
    """The sweep's target: a beta with curvature >= 10x and quality at the lowest NFE >= 3x below the baseline's."""
    runs = {beta_label(float(r["beta"])): r["report"] for r in sweep["runs"]}
    base = runs.get("inf")
    if base is None:
        return ""
    low = min(sweep["nfe"])
    qb = quality(base)[low]
    met = [b for b, rep in runs.items()
           if b != "inf" and rep["curvature"] * 10 <= base["curvature"] and quality(rep)[low] * 3 <= qb]
    best = min((b for b in runs if b != "inf"), key=lambda b: runs[b]["curvature"], default=None)
    text = (f"Target (some beta with curvature at least 10x lower than the baseline's and {sweep['quality_metric']} at "
            f"NFE {low} at least 3x lower): **{'met by beta = ' + ', '.join(met) if met else 'not met'}**.")
    if best is not None:
        text += (f" Lowest curvature: beta = {best}, {base['curvature'] / max(runs[best]['curvature'], 1e-12):.3g}x "
                 f"below the baseline, {sweep['quality_metric']} at NFE {low} "
                 f"{qb / quality(runs[best])[low]:.3g}x lower.")
    return text


def _sweep_table_blocks(ctx: Context, folder: str) -> list[Block]:
    sweep = ctx.json(f"{folder}/sweep.json")
    floor = ", ".join(f"{k[:-6]} {v:.4g}" for k, v in (sweep.get("floor") or {}).items()
                      if isinstance(v, float) and k != "n_floor")
    return [Text(f"Two-sample floor: {floor}." if floor else ""), sweep_table(sweep), Text(sweep_checks(sweep))]


def sweep_blocks(ctx: Context, data: str, folder: str) -> list[Block]:
    """A sweep's heading, table and checks (a note when its sweep.json is missing), then whichever of its figures
    exist."""
    blocks: list[Block] = [Heading(data)] + ctx.part(lambda: _sweep_table_blocks(ctx, folder), f"the {data} sweep")
    cmd = f"`straightflow sweep --data {data} ...` ({folder})"
    captions = {"trajectories.png": "Forward (x -> z ~ q_phi(z|x), top) and reverse (Euler 100, bottom) trajectories "
                                    f"per beta (Fig. 4); {cmd}",
                "curvature_vs_beta.png": f"Curvature vs beta, the baseline dashed (Fig. 5); {cmd}",
                "quality_vs_nfe.png": f"Quality vs NFE per beta (Fig. 7); {cmd}",
                "recon_gap.png": f"Reconstruction vs generation quality at the largest NFE (Fig. 8a); {cmd}"}
    for file, caption in captions.items():
        blocks += ctx.figure(f"{folder}/{file}", caption, name=f"curvature_{data}_{file}")
    for b in ("1", "10"):
        blocks += ctx.figure(f"figures/curvature_{data}_znorm_beta{b}.png",
                             f"||z|| under q_phi against the prior at beta = {b} (Fig. 8b); `straightflow plot "
                             f"{folder}/beta-{b} --kind znorm`")
    for b in ("1", "10", "inf"):
        blocks += ctx.figure(f"figures/curvature_{data}_xhat_beta{b}.png",
                             f"x_hat(z_t, t) along one Euler-100 trajectory at beta = {b} (Fig. 6); `straightflow plot "
                             f"{folder}/beta-{b} --kind xhat`")
    return blocks


def render_curvature(ctx: Context, scale: Scale) -> list[Block]:
    return [b for d in scale.sweep_sets for b in sweep_blocks(ctx, d, f"runs/curvature/2d-{d}")]


SECTION = SectionSpec(
    "curvature", "3. The curvature method: beta sweeps on 2D data",
    "The curvature paper's Fig. 4, 5, 7 and 8: one `straightflow sweep` per 2D set trains a curvature-method run "
    "per beta (`inf` = the baseline) with the same steps, batch and network, and tabulates curvature (Eq. 5), W2 per "
    "NFE, KL and reconstruction W2.",
    curvature_jobs, render_curvature)
