"""Teacher pairs from a trained straightflow run, or from a teacher callable with ``--data``.

Both go through :func:`straightflow.teachers.generate_pairs` (sharded, checksummed,
resumable, split across ranks under ``torchrun``); what differs is what the pairs
record for the student: a run teacher passes on its data and architecture and
lets distill / lines students start from its weights, a callable passes on the
data only (the student's architecture comes from its own flags). Each takes ``dry_run``: the teacher is
loaded and tried on two noises, the folder checked, nothing written (:func:`~straightflow.teachers.generate_pairs`).
"""

from __future__ import annotations

import inspect
import sys
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
                   device: str = "auto", progress: bool = True, guidance: float | None = None,
                   dry_run: bool = False) -> dict:
    """Pairs of the teacher run's EMA velocity (model units) solved by ``solver`` at ``nfe``.

    A conditional teacher labels every pair (classes drawn from the data's class frequencies)
    and solves the guided velocity at ``guidance`` (default 1: the plain conditional model).
    """
    ctx = init_distributed(device)
    try:
        run = Run.load(teacher, device=str(ctx.device))
        if run.fitted_prior:
            raise StraightflowError(f"{teacher} samples from a fitted prior ({run.checkpoint.name}/"
                                    "prior_fit.safetensors), which pairs cannot pass on to a student yet (a student "
                                    "draws its teacher's prior by name); delete that file to make pairs from N(0, I)")
        conditional = run.module.conditional
        if guidance is not None and not conditional:
            raise StraightflowError(f"--guidance needs a conditional teacher; {teacher} was trained without "
                                    "--conditional")
        settings = {"teacher": str(Path(teacher).resolve()), "teacher_checkpoint": run.checkpoint.name,
                    "teacher_step": run.step}
        manifest = {"teacher_kind": "run", "teacher_method": run.cfg.method, "teacher_config": run.cfg.to_dict(),
                    "data": run.cfg.data}
        velocity_teacher = VelocityTeacher(run.velocity, solver, nfe, 1.0 if guidance is None else guidance,
                                           run.module.null_label)
        return generate_pairs(velocity_teacher, n, out, tuple(run.data.shape), seed=seed, dry_run=dry_run,
                              prior=run.prior, shard_size=shard_size, heldout=heldout, batch_size=batch_size,
                              progress=progress, settings=settings, manifest=manifest, ctx=ctx,
                              class_names=run.data.class_names if conditional else None,
                              class_probs=run.data.class_probs() if conditional else None)
    finally:
        shutdown_distributed(ctx)


def pairs_from_callable(spec: str, data: str, n: int, out: str | Path, kind: str = "velocity", solver: str = "euler",
                        nfe: int = 128, seed: int = 0, shard_size: int | None = None, heldout: int | None = None,
                        batch_size: int = 4096, device: str = "auto", progress: bool = True,
                        data_options: dict | None = None, teacher_args: dict[str, str] | None = None,
                        prior: str = "standard", dry_run: bool = False) -> dict:
    """Pairs of ``package.module:function`` (or ``file.py:function``), a teacher working in ``data``'s units.

    ``kind="velocity"``: the function is v(x, t) in our convention (t = 0 data, t = 1 noise),
    solved by ``solver`` at ``nfe``; ``kind="sampler"``: it maps noise z to x* itself
    (``nfe`` is then recorded as its cost per sample). z is drawn from ``prior`` (``standard``: N(0, I), or
    ``wide``; the name of :func:`straightflow.priors.make_prior`) of the data's shape and recorded, so a
    student of another prior is refused.
    The folder records the spec, not the weights behind it: after changing the teacher's
    weights, write to a new ``out`` (a rerun into the same folder reuses finished shards).
    ``teacher_args`` (``--teacher-arg KEY=VALUE``): the function is a factory, called once as
    ``make(**teacher_args)`` (string values), returning the teacher; the arguments are part of
    the folder's settings, so changed arguments never resume into it.
    """
    if kind not in TEACHER_KINDS:
        raise StraightflowError(f"unknown --teacher-kind {kind!r}: use velocity or sampler")
    if not data:
        raise StraightflowError("--teacher-callable needs --data (the data the teacher models: its shape, units and "
                                "held-out set)")
    user_fn = load_teacher_callable(spec, teacher_args)

    def fn(*args):  # an exception inside the user's code is their error, reported as one line
        try:
            return user_fn(*args)
        except StraightflowError:
            raise
        except Exception as exc:
            raise StraightflowError(f"the teacher callable {spec} raised {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    options = dict(data_options or {})
    source = load_data(data, options)
    ctx = init_distributed(device)
    try:
        # the teacher works in data units; x* is stored in model units (``to_model``), z as drawn
        teacher = VelocityTeacher(fn, solver, nfe) if kind == "velocity" else SamplerTeacher(fn, nfe)
        defaults = TrainConfig()
        teacher_config = {"data": data,
                          **{k: options.get(k, getattr(defaults, k))
                             for k in ("heldout_fraction", "split_seed", "image_size", "data_root")}}
        settings = {"teacher": f"callable {spec}", "callable_kind": kind}
        settings.update(_teacher_args_settings(teacher_args))
        manifest = {"teacher_kind": "callable", "teacher_method": "", "teacher_config": teacher_config, "data": data}
        manifest["teacher_callable_path"] = callable_source(spec)
        return generate_pairs(teacher, n, out, tuple(source.shape), seed=seed, dry_run=dry_run,
                              prior=make_prior(prior, tuple(source.shape)), to_model=source.normalize,
                              shard_size=shard_size, heldout=heldout, batch_size=batch_size, progress=progress,
                              settings=settings, manifest=manifest, ctx=ctx)
    finally:
        shutdown_distributed(ctx)


# ------------------------------------------------------------------ teacher factories and pretrained diffusion models
def load_teacher_callable(spec: str, teacher_args: dict[str, str] | None = None):
    """The callable named by ``spec``; with ``teacher_args`` the one it returns when called as
    ``make(**teacher_args)``."""
    obj = load_callable(spec)
    if not teacher_args:
        return obj
    for key in teacher_args:
        if not str(key).isidentifier():
            raise StraightflowError(f"--teacher-arg {key}=...: the key must be a Python identifier (a keyword "
                                    f"of {spec})")
    try:
        made = obj(**{str(k): str(v) for k, v in teacher_args.items()})
    except StraightflowError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise StraightflowError(f"the teacher factory {spec} called with --teacher-arg "
                                f"{_format_args(teacher_args)} raised {type(exc).__name__}: "
                                f"{first[0] if first else ''}") from None
    if not callable(made):
        raise StraightflowError(f"the teacher factory {spec} returned {type(made).__name__}, not a callable teacher")
    return made


def _format_args(teacher_args: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(teacher_args.items()))


def _teacher_args_settings(teacher_args: dict[str, str] | None) -> dict:
    """The ``teacher_args`` entry of a pairs folder's settings (none without arguments, as before they existed)."""
    return {"teacher_args": {str(k): str(v) for k, v in sorted(teacher_args.items())}} if teacher_args else {}


def callable_source(spec: str) -> str:
    """``spec`` with its module resolved to an absolute file path (``file.py:fn`` and ``package.module:fn`` alike), once
    loaded."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        return f"{Path(target).resolve()}:{attr}"
    module = sys.modules.get(target)
    try:
        file = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in module
        file = None
    return f"{Path(file).resolve()}:{attr}" if file else spec


def _user_teacher(fn, what: str):
    """``fn`` with any exception of the user's model reported as one line."""

    def call(*args):
        try:
            return fn(*args)
        except StraightflowError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()
            raise StraightflowError(f"the teacher {what} raised {type(exc).__name__}: "
                                    f"{first[0] if first else ''}") from None

    if hasattr(fn, "settings"):
        call.settings = fn.settings
    return call


def _data_teacher_config(data: str, options: dict) -> dict:
    """What a student of a data-only teacher (callable, diffusers, EDM) inherits: the data and how it is split."""
    defaults = TrainConfig()
    return {"data": data,
            **{k: options.get(k, getattr(defaults, k))
               for k in ("heldout_fraction", "split_seed", "image_size", "data_root")}}


def _check_unet_shape(model, shape: tuple[int, ...], data: str) -> None:
    config = getattr(model.unet, "config", {}) or {}
    channels, size = config.get("in_channels"), config.get("sample_size")
    if channels is None:
        return
    sizes = [size, size] if isinstance(size, int) else list(size or [])
    if len(shape) != 3 or channels != shape[0] or (sizes and list(sizes) != list(shape[1:])):
        raise StraightflowError(f"the diffusers model {model.unet_dir} makes {channels} x "
                                f"{' x '.join(map(str, sizes))} samples but --data {data} has shape "
                                f"{' x '.join(map(str, shape))}")


class _SamplerWithErrors:
    """A sampler teacher whose user-model exceptions are one-line errors (the Teacher protocol kept)."""

    def __init__(self, teacher, what: str):
        self.teacher, self.what = teacher, what

    def __call__(self, z, y=None):
        return _user_teacher(self.teacher, self.what)(z) if y is None else _user_teacher(self.teacher, self.what)(z, y)

    def settings(self) -> dict:
        return self.teacher.settings()


def pairs_from_diffusers(path: str | Path, *, data: str, n: int, out: str | Path, kind: str = "sampler",
                         scheduler: str = "ddim", scheduler_dir: str | Path | None = None,
                         clip_sample: bool | None = None, solver: str = "euler", nfe: int = 50,
                         seed: int = 0, shard_size: int | None = None, heldout: int | None = None,
                         batch_size: int = 4096, device: str = "auto", progress: bool = True,
                         data_options: dict | None = None, dry_run: bool = False) -> dict:
    """Pairs of a pretrained diffusers model (``docs/teachers.md``): a pipeline folder, or a model folder with
    ``scheduler_dir``.

    ``kind="sampler"``: the saved scheduler converted to ``scheduler`` (ddim, dpm, euler) runs its
    own deterministic loop for ``nfe`` steps from the pair's z
    (:class:`~straightflow.teacher_adapters.DiffusersSamplerTeacher`); ``kind="velocity"``: the
    network as a velocity in rectified time (:class:`~straightflow.teacher_adapters.DiffusersVelocity`)
    solved by ``solver`` at ``nfe``. ``data`` is the data the model makes (its shape and units,
    images in [-1, 1]). The folder's settings hold the UNet weights' and scheduler config's sha256,
    the scheduler and the steps, so changed weights or steps never resume into it.
    """
    from ..teacher_adapters import DiffusersSamplerTeacher, DiffusersVelocity, load_diffusers

    if kind not in TEACHER_KINDS:
        raise StraightflowError(f"unknown --teacher-kind {kind!r}: use sampler or velocity")
    if not data:
        raise StraightflowError("--teacher-diffusers needs --data (the data the model makes: its shape, units and "
                                "held-out set)")
    if kind == "velocity" and clip_sample is not None:
        raise StraightflowError("--clip-sample applies to the sampler route (--teacher-kind sampler); the velocity "
                                "route never clips")
    options = dict(data_options or {})
    source = load_data(data, options)
    model = load_diffusers(path, scheduler_dir=scheduler_dir)
    _check_unet_shape(model, tuple(source.shape), data)
    ctx = init_distributed(device)
    try:
        model.unet.to(ctx.device)
        settings = {"teacher": f"diffusers {model.path}", "callable_kind": kind, "unet_sha256": model.weights_sha256,
                    "scheduler_config_sha256": model.scheduler_sha256, "prediction_type": model.prediction_type}
        info = model.info()
        if kind == "sampler":
            sched = model.scheduler(scheduler, clip_sample)
            teacher = _SamplerWithErrors(DiffusersSamplerTeacher(model.unet, sched, nfe, scheduler),
                                         f"diffusers model {model.path}")
            cfg = sched.config
            resolved = {"scheduler": scheduler, "scheduler_class": type(sched).__name__, "steps": nfe,
                        "clip_sample": cfg.get("clip_sample"), "thresholding": cfg.get("thresholding"),
                        "set_alpha_to_one": cfg.get("set_alpha_to_one"),
                        "timestep_spacing": cfg.get("timestep_spacing"), "algorithm_type": cfg.get("algorithm_type")}
            resolved = {k: v for k, v in resolved.items() if v is not None or k in ("scheduler", "steps")}
            settings.update(resolved)
            info.update(resolved)
        else:
            velocity = DiffusersVelocity(model.unet, model.alphas_cumprod(), model.prediction_type)
            teacher = VelocityTeacher(_user_teacher(velocity, f"diffusers model {model.path}"), solver, nfe)
            info.update({"solver": solver, "nfe": nfe, "s_range": list(velocity.schedule.s_range)})
        manifest = {"teacher_kind": "diffusers", "teacher_method": "",
                    "teacher_config": _data_teacher_config(data, options), "data": data, "diffusers": info}
        return generate_pairs(teacher, n, out, tuple(source.shape), seed=seed, dry_run=dry_run,
                              to_model=source.normalize, shard_size=shard_size, heldout=heldout, batch_size=batch_size,
                              progress=progress, settings=settings, manifest=manifest, ctx=ctx)
    finally:
        shutdown_distributed(ctx)


def pairs_from_edm(spec: str, *, data: str, n: int, out: str | Path, kind: str = "sampler",
                   teacher_args: dict[str, str] | None = None, solver: str = "euler", nfe: int = 35,
                   sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                   seed: int = 0, shard_size: int | None = None, heldout: int | None = None, batch_size: int = 4096,
                   device: str = "auto", progress: bool = True, data_options: dict | None = None,
                   dry_run: bool = False) -> dict:
    """Pairs of an EDM denoiser D(x, sigma) named by ``package.module:fn`` or ``file.py:fn`` (``docs/teachers.md``).

    ``kind="sampler"``: EDM's deterministic Heun sampler at an odd ``nfe`` = 2 steps - 1
    (:class:`~straightflow.teacher_adapters.EDMSamplerTeacher`); ``kind="velocity"``: D as a
    velocity in rectified time (:class:`~straightflow.teacher_adapters.EDMVelocity`) solved by
    ``solver`` at ``nfe``. ``teacher_args`` as for :func:`pairs_from_callable` (a factory of D).
    """
    from ..teacher_adapters import EDMSamplerTeacher, EDMVelocity

    if kind not in TEACHER_KINDS:
        raise StraightflowError(f"unknown --teacher-kind {kind!r}: use sampler or velocity")
    if not data:
        raise StraightflowError("--teacher-edm needs --data (the data the denoiser makes: its shape, units and "
                                "held-out set)")
    if kind == "sampler" and (nfe < 1 or nfe % 2 == 0):
        raise StraightflowError("EDM's Heun sampler makes 2 steps - 1 network calls: give an odd --nfe (e.g. 35 for "
                                f"18 steps), got {nfe}")
    denoiser = _user_teacher(load_teacher_callable(spec, teacher_args), f"denoiser {spec}")
    options = dict(data_options or {})
    source = load_data(data, options)
    ctx = init_distributed(device)
    try:
        if kind == "sampler":
            teacher = EDMSamplerTeacher(denoiser, (nfe + 1) // 2, sigma_min, sigma_max, rho)
        else:
            teacher = VelocityTeacher(EDMVelocity(denoiser, sigma_min, sigma_max), solver, nfe)
        settings = {"teacher": f"edm {spec}", "callable_kind": kind, **_teacher_args_settings(teacher_args)}
        if kind == "velocity":
            settings["edm"] = {"sigma_min": float(sigma_min), "sigma_max": float(sigma_max)}
        manifest = {"teacher_kind": "edm", "teacher_method": "", "teacher_config": _data_teacher_config(data, options),
                    "data": data, "teacher_callable_path": callable_source(spec)}
        return generate_pairs(teacher, n, out, tuple(source.shape), seed=seed, dry_run=dry_run,
                              to_model=source.normalize, shard_size=shard_size, heldout=heldout, batch_size=batch_size,
                              progress=progress, settings=settings, manifest=manifest, ctx=ctx)
    finally:
        shutdown_distributed(ctx)
