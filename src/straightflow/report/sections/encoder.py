"""Section 4, ``encoder``: the curvature paper's Table 2, a small encoder against one as large as the velocity net.

moons at beta = 10: the ``small`` encoder of the curvature sweep (section 3) against
``--encoder same``, which mirrors the velocity network; a table of parameters, curvature, W2
per NFE and KL.
"""

from __future__ import annotations

from pathlib import Path

from ...formatting import significant
from ..document import Block, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import curvature_sweep_jobs, sweep_job
from .results import quality
from .spec import Context, SectionSpec, missing_note

SAME_ENCODER = "runs/curvature/2d-moons-encoder-same"


def encoder_jobs(scale: Scale) -> list[Job]:
    """The moons sweep of section 3 and a beta = 10 sweep with ``--encoder same``."""
    return curvature_sweep_jobs(scale, "moons")[:1] + [
        sweep_job(scale, "moons", SAME_ENCODER, "10", "--encoder", "same", "--no-trajectories")]


def coupling_parameters(run_dir: Path) -> int:
    """Parameters of a curvature run's encoder: the whole module's minus its velocity network's."""
    from ...models import count_parameters
    from ...run import Run

    run = Run.load(run_dir, device="cpu")
    return count_parameters(run.module) - count_parameters(run.module.velocity)


def render_encoder(ctx: Context, scale: Scale) -> list[Block]:
    rows, notes, qs = [], [], []
    nfes: list[int] = []
    for label, folder in (("`small` (default; from the curvature sweep)", "runs/curvature/2d-moons"),
                          ("`same` (mirrors the velocity net)", SAME_ENCODER)):
        sweep = ctx.maybe_json(f"{folder}/sweep.json")
        run = next((r for r in sweep["runs"] if r["beta"] == 10), None) if sweep else None
        if run is None:
            notes.append(missing_note(f"{folder}/sweep.json" if sweep is None else f"{folder}: the beta = 10 run",
                                      label))
            continue
        rep, nfes = run["report"], sweep["nfe"]
        q = quality(rep)
        qs.append(q)
        rows.append([label, f"{coupling_parameters(ctx.out / folder / 'beta-10'):,}", significant(rep["curvature"])]
                    + [significant(q.get(k)) for k in nfes] + [significant(rep.get("kl"))])
    blocks: list[Block] = [Table(["encoder", "encoder parameters", "curvature"] + [f"W2 NFE {k}" for k in nfes]
                                 + ["KL"], rows)] if rows else []
    if len(qs) == 2:
        qa, qb = qs
        worst = max(abs(qa[k] / qb[k] - 1) for k in nfes if k in qa and k in qb and qb[k])
        blocks.append(Text(f"The two encoders' W2 differ by at most {worst:.1%} over these NFEs (the paper's Table 2: "
                           "a small encoder does as well)."))
    return blocks + notes


SECTION = SectionSpec(
    "encoder", "4. Encoder size (the curvature paper's Table 2)",
    "moons, beta = 10: the default `small` encoder against one that mirrors the velocity net (`--encoder same`).",
    encoder_jobs, render_encoder)
