"""What the teacher-pair methods (reflow, distill, lines) share: the pair coupling,
starting from the teacher's weights, and the held-out pair errors in ``eval``.

Pairs (x* = Sampler(z)) come from ``--pairs PAIRDIR`` (:mod:`straightflow.data.pairs`),
made from a straightflow run or from any teacher callable (:mod:`straightflow.teachers`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import (
    EXPORT_WEIGHTS,
    is_export,
    latest_checkpoint,
    load_checkpoint_weights,
    load_export_weights,
    load_into,
    read_export_config,
)
from ..couplings import TeacherPairCoupling
from ..data.pairs import PairData, check_pairs_prior
from ..errors import StraightflowError
from ..objectives import one_step
from ..solvers import solve
from .base import Method


class PairMethod(Method):
    """Base of the methods trained on teacher pairs."""

    trains_on_pairs = True

    def validate(self, cfg) -> None:
        if not cfg.pairs:
            raise StraightflowError(f"--method {cfg.method} trains on teacher pairs: pass --pairs PAIRDIR (make one "
                                    "with `straightflow pairs`)")

    def build_coupling(self, cfg, data, prior, encoder=None):
        """The pair coupling; training on a pairs folder (``data`` a :class:`PairData`) first checks that
        its z were drawn from this run's prior."""
        manifest = getattr(data, "manifest", None)
        if manifest is not None:
            check_pairs_prior(data.folder, manifest, prior, cfg.prior)
        return TeacherPairCoupling(prior)

    def prepare(self, module, cfg, data) -> None:
        if cfg.init_from_teacher:
            init_from_teacher(module, cfg, data)

    @torch.no_grad()
    def evaluate_extra(self, run, reference, n, seed, nfes, solver, metric, labels=None, guidance=None) -> dict:
        return evaluate_pairs(run, n, nfes, solver, guidance)


def init_from_teacher(module, cfg, data) -> None:
    """Copy the teacher's EMA velocity weights (the checkpoint that made the pairs, or the
    exported model, ``docs/portable.md``) into the student."""
    teacher = Path(cfg.teacher) if cfg.teacher else None
    if teacher is None or not teacher.is_dir():
        raise StraightflowError(f"--init-from-teacher needs the teacher run ({cfg.teacher or 'none recorded'}): pass "
                                "--teacher RUNDIR or --init-from-teacher false")
    manifest = getattr(data, "manifest", None) or {}
    # these pairs came from it
    made_here = bool(manifest.get("teacher")) and Path(manifest["teacher"]).resolve() == teacher.resolve()
    if is_export(teacher):
        config = read_export_config(teacher)
        made_at = manifest.get("teacher_step") if made_here else None
        if made_at is not None and made_at != config["step"]:
            raise StraightflowError(f"the exported teacher {teacher} now holds step {config['step']}, but the pairs "
                                    f"were made from its step {made_at}: export that step again, or pass "
                                    "--init-from-teacher false")
        state, ckpt = load_export_weights(teacher, config), teacher / EXPORT_WEIGHTS
    else:
        state, ckpt = _run_teacher_weights(teacher, manifest.get("teacher_checkpoint") if made_here else None)
    velocity = {k[len("velocity."):]: v for k, v in state.items() if k.startswith("velocity.")}
    load_into(module.velocity, velocity, ckpt)


def _run_teacher_weights(teacher: Path, made_from: str | None):
    """The EMA weights of the teacher run's checkpoint ``made_from`` (the one that made the pairs; its
    latest when that is None or gone), and their file."""
    ckpt = teacher / "checkpoints" / made_from if made_from else None
    if ckpt is None or not (ckpt / "ema.safetensors").exists():
        ckpt = latest_checkpoint(teacher)
    if ckpt is None:
        raise StraightflowError(f"teacher {teacher} has no checkpoint")
    return load_checkpoint_weights(ckpt, "ema.safetensors"), ckpt / "ema.safetensors"


@torch.no_grad()
def evaluate_pairs(run, n: int, nfes: list[int], solver: str, guidance: float | None = None) -> dict:
    """Held-out pair errors: ``distill_error`` (one-step MSE to x*) and MSE to x* per NFE (model units); a
    conditional student is solved for each pair's class at ``guidance`` (default 1)."""
    try:
        pairs = PairData.open(run.cfg.pairs, base=run.data)
    except StraightflowError as exc:
        return {"pairs_note": f"held-out pairs unavailable: {exc}"}
    if pairs.heldout == 0:
        return {"pairs_note": "the pairs folder holds no held-out pairs"}
    x, z = pairs.heldout_pairs(max_n=max(n, 1))
    x, z = x.to(run.device), z.to(run.device)
    # the class each x* was made for
    y = pairs.heldout_labels(max_n=max(n, 1)).to(run.device) if run.conditional else None
    velocity = run.velocity_fn(y, guidance) if run.conditional else run.velocity
    out = {"heldout_pairs": int(x.shape[0]), "distill_error": float((one_step(velocity, z) - x).pow(2).mean())}
    rows = []
    for k in nfes:
        res = solve(velocity, z, solver, k)
        rows.append({"nfe": res.nfe, "solver": solver, "pair_mse": float((res.samples - x).pow(2).mean()),
                     **({"note": res.note} if res.note else {})})
    if rows:
        out["pair_results"] = rows
    return out
