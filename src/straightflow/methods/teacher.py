"""What the teacher-pair methods (reflow, distill, lines) share: the pair coupling,
starting from the teacher's weights, and the held-out pair errors in ``eval``.

Pairs (x* = Sampler(z)) come from ``--pairs PAIRDIR`` (:mod:`straightflow.data.pairs`),
made from a straightflow run or from any teacher callable (:mod:`straightflow.teachers`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import latest_checkpoint, load_checkpoint_weights, load_into
from ..couplings import TeacherPairCoupling
from ..data.pairs import PairData
from ..errors import StraightflowError
from ..objectives import one_step
from ..solvers import solve
from .base import Method


class PairMethod(Method):
    """Base of the methods trained on teacher pairs."""

    trains_on_pairs = True

    def validate(self, cfg) -> None:
        if not cfg.pairs:
            raise StraightflowError(f"--method {cfg.method} trains on teacher pairs: pass --pairs PAIRDIR (make one with `straightflow pairs`)")

    def build_coupling(self, cfg, data, prior, encoder=None):
        return TeacherPairCoupling(prior)

    def prepare(self, module, cfg, data) -> None:
        if cfg.init_from_teacher:
            init_from_teacher(module, cfg, data)

    @torch.no_grad()
    def evaluate_extra(self, run, reference, n, seed, nfes, solver, metric, labels=None) -> dict:
        return evaluate_pairs(run, n, nfes, solver)


def init_from_teacher(module, cfg, data) -> None:
    """Copy the teacher run's EMA velocity weights (the checkpoint that made the pairs) into the student."""
    teacher = Path(cfg.teacher) if cfg.teacher else None
    if teacher is None or not teacher.is_dir():
        raise StraightflowError(f"--init-from-teacher needs the teacher run ({cfg.teacher or 'none recorded'}): pass --teacher RUNDIR or --init-from-teacher false")
    manifest = getattr(data, "manifest", None) or {}
    ckpt = None
    if manifest.get("teacher") and Path(manifest["teacher"]).resolve() == teacher.resolve():
        ckpt = teacher / "checkpoints" / manifest.get("teacher_checkpoint", "")  # the checkpoint that made the pairs
    if ckpt is None or not (ckpt / "ema.safetensors").exists():
        ckpt = latest_checkpoint(teacher)
    if ckpt is None:
        raise StraightflowError(f"teacher {teacher} has no checkpoint")
    state = load_checkpoint_weights(ckpt, "ema.safetensors")
    velocity = {k[len("velocity."):]: v for k, v in state.items() if k.startswith("velocity.")}
    load_into(module.velocity, velocity, ckpt / "ema.safetensors")


@torch.no_grad()
def evaluate_pairs(run, n: int, nfes: list[int], solver: str) -> dict:
    """Held-out pair errors: ``distill_error`` (one-step MSE to x*) and MSE to x* per NFE (model units)."""
    try:
        pairs = PairData.open(run.cfg.pairs, base=run.data)
    except StraightflowError as exc:
        return {"pairs_note": f"held-out pairs unavailable: {exc}"}
    if pairs.heldout == 0:
        return {"pairs_note": "the pairs folder holds no held-out pairs"}
    x, z = pairs.heldout_pairs(max_n=max(n, 1))
    x, z = x.to(run.device), z.to(run.device)
    y = pairs.heldout_labels(max_n=max(n, 1)).to(run.device) if run.conditional else None  # the class each x* was made for
    out = {"heldout_pairs": int(x.shape[0]), "distill_error": float((one_step(run.velocity, z, y) - x).pow(2).mean())}
    rows = []
    for k in nfes:
        res = solve(run.velocity_fn(y), z, solver, k)
        rows.append({"nfe": res.nfe, "solver": solver, "pair_mse": float((res.samples - x).pow(2).mean()), **({"note": res.note} if res.note else {})})
    if rows:
        out["pair_results"] = rows
    return out
