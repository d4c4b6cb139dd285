"""Teacher pairs from a trained straightflow run, or from a teacher callable with ``--data``.

Both go through :func:`straightflow.teachers.generate_pairs` (sharded, checksummed,
resumable, split across ranks under ``torchrun``); what differs is what the pairs
record for the student: a run teacher passes on its data and architecture and
lets distill / lines students start from its weights, a callable passes on the
data only (the student's architecture comes from its own flags).
"""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..data import load_data
from ..distributed import init_distributed, shutdown_distributed
from ..errors import StraightflowError
from ..priors import make_prior
from ..run import Run
from ..teachers import SamplerTeacher, VelocityTeacher, generate_pairs, load_callable

TEACHER_KINDS = ("velocity", "sampler")


def pairs_from_run(teacher: str | Path, n: int, out: str | Path, solver: str = "euler", nfe: int = 128, seed: int = 0,
                   shard_size: int | None = None, heldout: int | None = None, batch_size: int = 4096,
                   device: str = "auto", progress: bool = True, guidance: float | None = None) -> dict:
    """Pairs of the teacher run's EMA velocity (model units) solved by ``solver`` at ``nfe``.

    A conditional teacher labels every pair (classes drawn from the data's class frequencies)
    and solves the guided velocity at ``guidance`` (default 1: the plain conditional model).
    """
    ctx = init_distributed(device)
    try:
        run = Run.load(teacher, device=str(ctx.device))
        conditional = run.module.conditional
        if guidance is not None and not conditional:
            raise StraightflowError(f"--guidance needs a conditional teacher; {teacher} was trained without --conditional")
        settings = {"teacher": str(Path(teacher).resolve()), "teacher_checkpoint": run.checkpoint.name, "teacher_step": run.step}
        manifest = {"teacher_kind": "run", "teacher_method": run.cfg.method, "teacher_config": run.cfg.to_dict(), "data": run.cfg.data}
        velocity_teacher = VelocityTeacher(run.velocity, solver, nfe, 1.0 if guidance is None else guidance, run.module.null_label)
        return generate_pairs(velocity_teacher, n, out, tuple(run.data.shape), seed=seed, prior=run.prior,
                              shard_size=shard_size, heldout=heldout, batch_size=batch_size, progress=progress,
                              settings=settings, manifest=manifest, ctx=ctx,
                              class_names=run.data.class_names if conditional else None,
                              class_probs=run.data.class_probs() if conditional else None)
    finally:
        shutdown_distributed(ctx)


def pairs_from_callable(spec: str, data: str, n: int, out: str | Path, kind: str = "velocity", solver: str = "euler",
                        nfe: int = 128, seed: int = 0, shard_size: int | None = None, heldout: int | None = None,
                        batch_size: int = 4096, device: str = "auto", progress: bool = True, data_options: dict | None = None,
                        prior: str = "standard") -> dict:
    """Pairs of ``package.module:function`` (or ``file.py:function``), a teacher working in ``data``'s units.

    ``kind="velocity"``: the function is v(x, t) in our convention (t = 0 data, t = 1 noise),
    solved by ``solver`` at ``nfe``; ``kind="sampler"``: it maps noise z to x* itself
    (``nfe`` is then recorded as its cost per sample). z is drawn from ``prior`` (``standard``: N(0, I), or
    ``wide``; the name of :func:`straightflow.priors.make_prior`) of the data's shape and recorded, so a
    student of another prior is refused.
    The folder records the spec, not the weights behind it: after changing the teacher's
    weights, write to a new ``out`` (a rerun into the same folder reuses finished shards).
    """
    if kind not in TEACHER_KINDS:
        raise StraightflowError(f"unknown --teacher-kind {kind!r}: use velocity or sampler")
    if not data:
        raise StraightflowError("--teacher-callable needs --data (the data the teacher models: its shape, units and held-out set)")
    user_fn = load_callable(spec)

    def fn(*args):  # an exception inside the user's code is their error, reported as one line
        try:
            return user_fn(*args)
        except StraightflowError:
            raise
        except Exception as exc:
            raise StraightflowError(f"the teacher callable {spec} raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    options = dict(data_options or {})
    source = load_data(data, options)
    ctx = init_distributed(device)
    try:
        # the teacher works in data units; x* is stored in model units (``to_model``), z as drawn
        teacher = VelocityTeacher(fn, solver, nfe) if kind == "velocity" else SamplerTeacher(fn, nfe)
        defaults = TrainConfig()
        teacher_config = {"data": data, **{k: options.get(k, getattr(defaults, k)) for k in ("heldout_fraction", "split_seed", "image_size", "data_root")}}
        settings = {"teacher": f"callable {spec}", "callable_kind": kind}
        manifest = {"teacher_kind": "callable", "teacher_method": "", "teacher_config": teacher_config, "data": data}
        return generate_pairs(teacher, n, out, tuple(source.shape), seed=seed, prior=make_prior(prior, tuple(source.shape)),
                              to_model=source.normalize, shard_size=shard_size,
                              heldout=heldout, batch_size=batch_size, progress=progress, settings=settings, manifest=manifest, ctx=ctx)
    finally:
        shutdown_distributed(ctx)
