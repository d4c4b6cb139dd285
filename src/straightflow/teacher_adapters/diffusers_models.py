"""diffusers pipelines and UNets as teachers: the scheduler's own sampler and the VP network as a velocity
in rectified time (``docs/teachers.md``); diffusers is imported inside the functions that need it."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import StraightflowError
from ..files import sha256_file
from ..solvers import SolveResult
from .common import _batch_times, _per_row

#: ``--scheduler`` name -> the diffusers class that runs the sampler route (all deterministic here)
DIFFUSERS_SCHEDULERS = {"ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler",
                        "euler": "EulerDiscreteScheduler"}


#: what a diffusers network predicts (its scheduler config's ``prediction_type``)
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


#: the schedule's ends are clamped so that log-SNR stays finite (zero-terminal-SNR schedules reach alphas_cumprod = 0)
_ACP_FLOOR = 2.0**-24


#: weight files of a diffusers model folder, hashed for the pairs' resume identity
_WEIGHT_GLOBS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")


def import_diffusers():
    """The ``diffusers`` module, its notices silenced (errors only); a one-line error when it is missing."""
    try:
        import diffusers
    except ImportError:
        raise StraightflowError("diffusion-model teachers need the diffusers package: pip install "
                                "straightflow[diffusers]") from None
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    return diffusers


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation (``np.interp``) of increasing ``xp``; x inside [xp[0], xp[-1]]."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + (x - x0) / (x1 - x0) * (f1 - f0)


class VPSchedule:
    """A discrete VP schedule (``alphas_cumprod`` of T training timesteps) seen in rectified time.

    The log ratio lambda_t = log(sigma_t / alpha_t) increases with the timestep; rectified time is
    s = sigma / (alpha + sigma) = sigmoid(lambda). A continuous s maps back to a continuous
    timestep by linear interpolation of the timestep in lambda between the table's entries (so
    the table's own s values give its integer timesteps exactly). Outside the table
    (s below s(t = 0) or above s(t = T - 1), the network never saw those noise levels) s is
    clamped to the nearest end: in particular s = 1 (pure noise) is evaluated at the last
    timestep, as every diffusers sampler starts.
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        acp = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten().clamp(_ACP_FLOOR, 1 - 1e-12)
        if acp.numel() < 2:
            raise StraightflowError(f"a diffusion schedule needs at least 2 timesteps, got {acp.numel()}")
        self.lam = 0.5 * torch.log((1 - acp) / acp)
        if not bool((self.lam[1:] > self.lam[:-1]).all()):
            raise StraightflowError("the scheduler's alphas_cumprod must decrease strictly with the timestep")
        self.timesteps = torch.arange(acp.numel(), dtype=torch.float64)
        self.acp = acp

    @property
    def s_range(self) -> tuple[float, float]:
        """(s at timestep 0, s at the last timestep): where the network is evaluated."""
        return float(torch.sigmoid(self.lam[0])), float(torch.sigmoid(self.lam[-1]))

    def s_of_timestep(self, timestep) -> torch.Tensor:
        """Rectified time of a (continuous) timestep in [0, T - 1] (float64)."""
        t = torch.as_tensor(timestep, dtype=torch.float64)
        return torch.sigmoid(_interp(t.clamp(0, self.timesteps[-1]), self.timesteps, self.lam))

    def s_of_alphas_cumprod(self, alpha_cumprod: float) -> float:
        """Rectified time of a noise level given by its alphas_cumprod (e.g. DDIM's ``final_alpha_cumprod``)."""
        a = float(alpha_cumprod)
        return 0.0 if a >= 1.0 else math.sqrt(1 - a) / (math.sqrt(a) + math.sqrt(1 - a))

    def coefficients(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(timestep, alpha, sigma) of rectified times ``s`` (float64, clamped to :attr:`s_range`)."""
        lam = torch.logit(s.to(torch.float64).clamp(1e-12, 1 - 1e-12)).clamp(float(self.lam[0]), float(self.lam[-1]))
        lam_table = self.lam.to(lam.device)
        timestep = _interp(lam, lam_table, self.timesteps.to(lam.device))
        alpha, sigma = torch.sigmoid(-2 * lam).sqrt(), torch.sigmoid(2 * lam).sqrt()
        return timestep, alpha, sigma


class DiffusersVelocity:
    """A diffusers VP network as a velocity ``v(y, s)`` in straightflow's convention (``docs/teachers.md``).

    ``unet(x, timestep).sample`` predicts ``prediction_type`` ("epsilon", "v_prediction" or
    "sample") of the VP state x = alpha x0 + sigma eps at a (continuous) timestep of
    ``alphas_cumprod``. At rectified time s (:class:`VPSchedule`) the state is
    y = x / (alpha + sigma) = (1 - s) x0 + s eps, and v = eps_hat - x0_hat, so that
    :func:`straightflow.solvers.solve` (Euler, Heun, RK45) integrates the model's
    probability-flow ODE from s = 1 to 0 with an honest NFE: one network call per evaluation.
    s outside the schedule's range is clamped to its ends (s = 1, pure noise, is evaluated at the
    last timestep). No clipping of x0_hat: the velocity route is the ODE; DDIM's ``clip_sample``
    and thresholding have no counterpart here.

    Called with class labels ``y`` (a class-conditional UNet, ``num_class_embeds``), they are passed
    as ``class_labels``.
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        if prediction_type not in PREDICTION_TYPES:
            raise StraightflowError(f"unknown prediction_type {prediction_type!r}: use one of "
                                    f"{', '.join(PREDICTION_TYPES)}")
        self.unet, self.prediction_type = unet, prediction_type
        self.schedule = VPSchedule(alphas_cumprod)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, scheduler_dir: str | Path | None = None) -> "DiffusersVelocity":
        """The velocity of a diffusers folder (pipeline, or UNet folder plus ``scheduler_dir``):
        :func:`load_diffusers`."""
        model = load_diffusers(path, scheduler_dir=scheduler_dir)
        return cls(model.unet, model.alphas_cumprod(), model.prediction_type)

    def predictions(self, x: torch.Tensor, out: torch.Tensor, alpha: torch.Tensor,
                    sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the network output ``out`` at VP state ``x`` (alpha, sigma broadcastable)."""
        if self.prediction_type == "epsilon":
            return (x - sigma * out) / alpha, out
        if self.prediction_type == "v_prediction":
            return alpha * x - sigma * out, alpha * out + sigma * x
        return out, (x - alpha * out) / sigma

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # the schedule's float64 arithmetic on the CPU (MPS has no float64)
        s = _batch_times(t, y).detach().to("cpu", torch.float64)
        timestep, alpha, sigma = self.schedule.coefficients(s)
        alpha, sigma = _per_row(alpha, y), _per_row(sigma, y)
        x = (alpha + sigma) * y
        unet = _on_device(self.unet, y)
        extra = {} if labels is None else {"class_labels": labels}
        out = unet(x, timestep.to(device=y.device, dtype=torch.float32), **extra).sample
        x0, eps = self.predictions(x, out.to(y.dtype), alpha, sigma)
        return eps - x0

    def ddim_grid(self, scheduler) -> list[float]:
        """The rectified times a DDIM scheduler (after ``set_timesteps``) steps through, its final level last.

        DDIM steps from each timestep to ``t - T // N`` (``final_alpha_cumprod`` below 0: 1 with
        ``set_alpha_to_one``, else ``alphas_cumprod[0]``). Where that is the next timestep of its
        grid (``timestep_spacing`` "leading", or "trailing" when N divides T), DDIM is Euler on this
        grid; otherwise (e.g. "linspace") it is not one path, and this is a one-line error.
        """
        ts = [int(t) for t in scheduler.timesteps]
        ratio = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        prev = [t - ratio for t in ts]
        if any(p != n for p, n in zip(prev[:-1], ts[1:])) or prev[-1] >= 0:
            raise StraightflowError(f"DDIM with timestep_spacing {scheduler.config.timestep_spacing!r} at {len(ts)} "
                                    "steps does not step from one grid timestep to the next; it is not Euler on "
                                    "one grid")
        final = self.schedule.s_of_alphas_cumprod(float(scheduler.final_alpha_cumprod))
        return [float(v) for v in self.schedule.s_of_timestep(torch.tensor(ts))] + [final]

    def to_rectified(self, x: torch.Tensor, s: float) -> torch.Tensor:
        """A VP state at rectified time s as the rectified state y = x / (alpha + sigma)."""
        _, alpha, sigma = self.schedule.coefficients(torch.tensor([float(s)]))
        return x / float(alpha + sigma)

    def to_vp(self, y: torch.Tensor, s: float) -> torch.Tensor:
        """The inverse of :meth:`to_rectified` (s = 0: the state itself)."""
        if s <= 0:
            return y
        _, alpha, sigma = self.schedule.coefficients(torch.tensor([float(s)]))
        return y * float(alpha + sigma)


def euler_on_grid(velocity: Callable, z: torch.Tensor, times: Sequence[float]) -> SolveResult:
    """Explicit Euler of dy/ds = v(y, s) over ``times`` (decreasing); NFE = len(times) - 1.

    The times reach ``velocity`` as float64 (B,) CPU tensors (the adapters' velocities move what
    they need), so a grid taken from a schedule table (:meth:`DiffusersVelocity.ddim_grid`) maps
    back to its integer timesteps exactly.
    """
    times = [float(t) for t in times]
    if len(times) < 2 or any(b >= a for a, b in zip(times[:-1], times[1:])):
        raise StraightflowError("euler_on_grid needs at least 2 strictly decreasing times")
    y = z
    for a, b in zip(times[:-1], times[1:]):
        y = y + (b - a) * velocity(y, torch.full((z.shape[0],), a, dtype=torch.float64))
    return SolveResult(y, len(times) - 1)


def _on_device(module: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    param = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    if param is not None and param.device != x.device:
        module.to(x.device)
    return module


def weights_digest(folder: Path) -> str:
    """sha256 of a diffusers model folder's weights file (of the sorted name:sha256 lines when sharded)."""
    files = sorted({p for pattern in _WEIGHT_GLOBS for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise StraightflowError(f"{folder} holds no diffusion_pytorch_model weights (.safetensors or .bin)")
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode()).hexdigest()


@dataclass
class DiffusersModel:
    """A diffusers network and its training schedule, loaded from folders (:func:`load_diffusers`)."""

    unet: torch.nn.Module
    scheduler_config: dict  #: the saved scheduler config (its training schedule and prediction type)
    path: Path  #: the folder given (resolved)
    unet_dir: Path
    scheduler_dir: Path
    unet_class: str
    weights_sha256: str  #: of the UNet's weights file(s)
    scheduler_sha256: str  #: of scheduler_config.json
    extra: dict = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        kind = self.scheduler_config.get("prediction_type") or "epsilon"
        if kind not in PREDICTION_TYPES:
            raise StraightflowError(f"{self.scheduler_dir}: prediction_type {kind!r} is not one of "
                                    f"{', '.join(PREDICTION_TYPES)}")
        return kind

    def alphas_cumprod(self) -> torch.Tensor:
        """The training schedule's alphas_cumprod (diffusers' DDPMScheduler of the saved config)."""
        diffusers = import_diffusers()
        try:
            return diffusers.DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        except Exception as exc:
            raise StraightflowError(f"{self.scheduler_dir}: cannot build the training schedule "
                                    f"({_first_line(exc)})") from None

    def scheduler(self, name: str = "ddim", clip_sample: bool | None = None):
        """A deterministic diffusers scheduler of the saved config: ``name`` in :data:`DIFFUSERS_SCHEDULERS`.

        ``clip_sample`` (DDIM only; None keeps the config's): clamp DDIM's x0 prediction to
        [-clip_sample_range, clip_sample_range] at every step. A DDPM config converted to DDIM
        takes ``set_alpha_to_one=True`` unless it says otherwise (the last step lands on the data,
        alphas_cumprod = 1, not on ``alphas_cumprod[0]``'s small noise level).
        """
        if name not in DIFFUSERS_SCHEDULERS:
            raise StraightflowError(f"unknown --scheduler {name!r}: use one of {', '.join(DIFFUSERS_SCHEDULERS)}")
        if clip_sample is not None and name != "ddim":
            raise StraightflowError(f"--clip-sample applies to the ddim scheduler, not {name}")
        diffusers = import_diffusers()
        config = dict(self.scheduler_config)
        if clip_sample is not None:
            config["clip_sample"] = bool(clip_sample)
        try:
            scheduler = getattr(diffusers, DIFFUSERS_SCHEDULERS[name]).from_config(config)
        except Exception as exc:
            raise StraightflowError(f"{self.scheduler_dir}: cannot build a {name} scheduler from its config "
                                    f"({_first_line(exc)})") from None
        algorithm = str(getattr(scheduler.config, "algorithm_type", ""))
        if algorithm.startswith("sde"):
            raise StraightflowError(f"{self.scheduler_dir}: algorithm_type {algorithm!r} is stochastic; a teacher "
                                    "needs a deterministic sampler")
        return scheduler

    def info(self) -> dict:
        """What a pairs manifest records about the model."""
        return {"path": str(self.path), "unet_dir": str(self.unet_dir), "scheduler_dir": str(self.scheduler_dir),
                "unet_class": self.unet_class, "unet_sha256": self.weights_sha256,
                "scheduler_config_sha256": self.scheduler_sha256,
                "saved_scheduler_class": self.scheduler_config.get("_class_name", ""),
                "prediction_type": self.prediction_type, **self.extra}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_config(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StraightflowError(f"cannot read the {what} {path} ({_first_line(exc)})") from None


def load_diffusers(path: str | Path, *, scheduler_dir: str | Path | None = None) -> DiffusersModel:
    """Load a diffusers network and its scheduler config from folders (``save_pretrained`` layout).

    ``path`` is a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``) or a model
    folder (``config.json`` and its weights) with ``scheduler_dir`` (a folder holding
    ``scheduler_config.json``; it overrides a pipeline's own). Nothing is downloaded
    (``local_files_only``). Text-conditioned UNets (``UNet2DConditionModel``) are refused: they
    need prompt encodings that a pairs run has no way to give.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise StraightflowError(f"--teacher-diffusers {path}: not a folder")
    if (root / "model_index.json").is_file():
        index = _read_config(root / "model_index.json", "pipeline index")
        if "unet" not in index:
            raise StraightflowError(f"{root}: the pipeline has no unet (model_index.json lists "
                                    f"{', '.join(k for k in index if not k.startswith('_'))})")
        unet_dir, sched_dir = root / "unet", root / "scheduler"
    elif (root / "config.json").is_file():
        unet_dir, sched_dir = root, None
    else:
        raise StraightflowError(f"{root} is neither a diffusers pipeline folder (model_index.json) nor a model folder "
                                "(config.json)")
    if scheduler_dir is not None:
        sched_dir = Path(scheduler_dir).expanduser().resolve()
    if sched_dir is None:
        raise StraightflowError(f"{root} is a model folder without its scheduler: pass the scheduler folder "
                                "(--scheduler-dir)")
    if not (sched_dir / "scheduler_config.json").is_file():
        raise StraightflowError(f"{sched_dir}: no scheduler_config.json")
    scheduler_config = _read_config(sched_dir / "scheduler_config.json", "scheduler config")
    unet_config = _read_config(unet_dir / "config.json", "model config")
    cls_name = str(unet_config.get("_class_name", ""))
    if cls_name == "UNet2DConditionModel":
        raise StraightflowError(f"{unet_dir}: a text-conditioned UNet2DConditionModel needs prompt encodings; use an "
                                "unconditional or class-conditional model")
    digest = weights_digest(unet_dir)
    diffusers = import_diffusers()
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise StraightflowError(f"{unet_dir}: model class {cls_name!r} is not a diffusers model class")
    try:
        unet = cls.from_pretrained(str(unet_dir), local_files_only=True)
    except Exception as exc:
        raise StraightflowError(f"cannot load the diffusers model {unet_dir} ({_first_line(exc)})") from None
    unet.eval().requires_grad_(False)
    return DiffusersModel(unet, scheduler_config, root, unet_dir, sched_dir, cls_name, digest,
                          sha256_file(sched_dir / "scheduler_config.json"),
                          {"diffusers_version": diffusers.__version__})


class DiffusersSamplerTeacher:
    """A diffusers scheduler's own deterministic loop from the pair's noise z (``docs/teachers.md``).

    ``scheduler.set_timesteps(steps)``; x = z * ``init_noise_sigma``; for each timestep
    ``scale_model_input``, ``unet(...).sample``, ``scheduler.step(...).prev_sample`` (DDIM with
    eta = 0). Returns what the loop returns (no clamping to [0, 1] or [-1, 1]: diffusers'
    pipelines do that only for images) and the network calls it made. (``DDIMPipeline`` takes
    no noise of ours and clamps, so it is not used.) A class-conditional UNet gets the pair's
    labels as ``class_labels``.
    """

    def __init__(self, unet: torch.nn.Module, scheduler, steps: int, name: str = ""):
        if steps < 1:
            raise StraightflowError(f"--nfe (the scheduler's steps) must be >= 1, got {steps}")
        self.unet, self.scheduler, self.steps = unet, scheduler, int(steps)
        self.name = name or type(scheduler).__name__

    @classmethod
    def from_pretrained(cls, path: str | Path, *, steps: int, scheduler: str = "ddim",
                        scheduler_dir: str | Path | None = None,
                        clip_sample: bool | None = None) -> "DiffusersSamplerTeacher":
        """The sampler of a diffusers folder (:func:`load_diffusers`), its saved scheduler converted to
        ``scheduler``."""
        model = load_diffusers(path, scheduler_dir=scheduler_dir)
        return cls(model.unet, model.scheduler(scheduler, clip_sample), steps, scheduler)

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        sch = self.scheduler
        sch.set_timesteps(self.steps, device=z.device)
        unet = _on_device(self.unet, z)
        step_kwargs = {"eta": 0.0} if type(sch).__name__ == "DDIMScheduler" else {}
        extra = {} if y is None else {"class_labels": y}
        # schedulers that draw (unused) noise must not touch the global RNG
        generator = torch.Generator().manual_seed(0)
        x = z * sch.init_noise_sigma
        calls = 0
        for t in sch.timesteps:
            out = unet(sch.scale_model_input(x, t), t, **extra).sample
            calls += 1
            x = sch.step(out, t, x, generator=generator, **step_kwargs).prev_sample
        return SolveResult(x, calls)

    def settings(self) -> dict:
        return {"solver": f"diffusers-{self.name}", "nfe": self.steps}
