"""Teachers from pretrained diffusion models: diffusers pipelines and EDM denoisers (lines paper: x* = Sampler(z)).

The lines paper's teachers are pretrained diffusion models with deterministic samplers. Two
routes turn one into pairs (``docs/teachers.md``):

* **sampler** - the model's own deterministic sampler, run from the pair's noise z:
  :class:`DiffusersSamplerTeacher` (the scheduler's loop: DDIM with eta = 0, DPM-Solver
  multistep, Euler; Song et al. 2021, Lu et al. 2022, Karras et al. 2022) and
  :class:`EDMSamplerTeacher` (EDM's deterministic Heun sampler, Karras et al. 2022 Alg. 1
  with S_churn = 0). Both count the network calls they really make.
* **velocity** - the same network as a velocity in straightflow's convention (t = 0 data,
  t = 1 noise, ``docs/api.md``), solved by our solvers with an honest NFE:
  :class:`DiffusersVelocity` (VP models: epsilon / v / sample prediction) and
  :class:`EDMVelocity` (VE denoisers D(x, sigma)).

The change of variables. A VP state x = alpha x0 + sigma eps (alpha = sqrt(alphas_cumprod[t]),
sigma = sqrt(1 - alphas_cumprod[t])) divided by alpha + sigma is
y = (1 - s) x0 + s eps with the **rectified time** s = sigma / (alpha + sigma): the straight
line of rectified flow. A VE state x = x0 + sigma eps is the case alpha = 1 (s = sigma / (1 + sigma)).
The probability-flow ODE in (y, s) is dy/ds = eps_hat - x0_hat, so ``v = eps_hat - x0_hat``;
one DDIM step (eta = 0) is exactly one Euler step of it between the two noise levels
(``tests/teachers/test_ddim_is_euler.py``).

Nothing here imports diffusers at module import: it is imported inside the functions that
need it (``pip install straightflow[diffusers]``), and its logging is set to errors only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .errors import StraightflowError
from .solvers import SolveResult

#: ``--scheduler`` name -> the diffusers class that runs the sampler route (all deterministic here)
DIFFUSERS_SCHEDULERS = {"ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler", "euler": "EulerDiscreteScheduler"}
#: what a diffusers network predicts (its scheduler config's ``prediction_type``)
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: the schedule's ends are clamped so that log-SNR stays finite (zero-terminal-SNR schedules reach alphas_cumprod = 0)
_ACP_FLOOR = 2.0**-24
#: weight files of a diffusers model folder, hashed for the pairs' resume identity
_WEIGHT_GLOBS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")

#: D(x, sigma): x (B, ...) in VE units, sigma (B,) -> the denoised x0_hat (B, ...)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def import_diffusers():
    """The ``diffusers`` module, its notices silenced (errors only); a one-line error when it is missing."""
    try:
        import diffusers
    except ImportError:
        raise StraightflowError("diffusion-model teachers need the diffusers package: pip install straightflow[diffusers]") from None
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    return diffusers


# ------------------------------------------------------------------ the VP schedule in rectified time
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


def _batch_times(t, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def _per_row(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


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
            raise StraightflowError(f"unknown prediction_type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}")
        self.unet, self.prediction_type = unet, prediction_type
        self.schedule = VPSchedule(alphas_cumprod)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, scheduler_dir: str | Path | None = None) -> "DiffusersVelocity":
        """The velocity of a diffusers folder (pipeline, or UNet folder plus ``scheduler_dir``): :func:`load_diffusers`."""
        model = load_diffusers(path, scheduler_dir=scheduler_dir)
        return cls(model.unet, model.alphas_cumprod(), model.prediction_type)

    def predictions(self, x: torch.Tensor, out: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the network output ``out`` at VP state ``x`` (alpha, sigma broadcastable)."""
        if self.prediction_type == "epsilon":
            return (x - sigma * out) / alpha, out
        if self.prediction_type == "v_prediction":
            return alpha * x - sigma * out, alpha * out + sigma * x
        return out, (x - alpha * out) / sigma

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        s = _batch_times(t, y).detach().to("cpu", torch.float64)  # the schedule's float64 arithmetic on the CPU (MPS has no float64)
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
            raise StraightflowError(f"DDIM with timestep_spacing {scheduler.config.timestep_spacing!r} at {len(ts)} steps does not step from one "
                                    "grid timestep to the next; it is not Euler on one grid")
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


# ------------------------------------------------------------------ loading a diffusers folder
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            raise StraightflowError(f"{self.scheduler_dir}: prediction_type {kind!r} is not one of {', '.join(PREDICTION_TYPES)}")
        return kind

    def alphas_cumprod(self) -> torch.Tensor:
        """The training schedule's alphas_cumprod (diffusers' DDPMScheduler of the saved config)."""
        diffusers = import_diffusers()
        try:
            return diffusers.DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        except Exception as exc:
            raise StraightflowError(f"{self.scheduler_dir}: cannot build the training schedule ({_first_line(exc)})") from None

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
            raise StraightflowError(f"{self.scheduler_dir}: cannot build a {name} scheduler from its config ({_first_line(exc)})") from None
        algorithm = str(getattr(scheduler.config, "algorithm_type", ""))
        if algorithm.startswith("sde"):
            raise StraightflowError(f"{self.scheduler_dir}: algorithm_type {algorithm!r} is stochastic; a teacher needs a deterministic sampler")
        return scheduler

    def info(self) -> dict:
        """What a pairs manifest records about the model."""
        return {"path": str(self.path), "unet_dir": str(self.unet_dir), "scheduler_dir": str(self.scheduler_dir), "unet_class": self.unet_class,
                "unet_sha256": self.weights_sha256, "scheduler_config_sha256": self.scheduler_sha256,
                "saved_scheduler_class": self.scheduler_config.get("_class_name", ""), "prediction_type": self.prediction_type, **self.extra}


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
            raise StraightflowError(f"{root}: the pipeline has no unet (model_index.json lists {', '.join(k for k in index if not k.startswith('_'))})")
        unet_dir, sched_dir = root / "unet", root / "scheduler"
    elif (root / "config.json").is_file():
        unet_dir, sched_dir = root, None
    else:
        raise StraightflowError(f"{root} is neither a diffusers pipeline folder (model_index.json) nor a model folder (config.json)")
    if scheduler_dir is not None:
        sched_dir = Path(scheduler_dir).expanduser().resolve()
    if sched_dir is None:
        raise StraightflowError(f"{root} is a model folder without its scheduler: pass the scheduler folder (--scheduler-dir)")
    if not (sched_dir / "scheduler_config.json").is_file():
        raise StraightflowError(f"{sched_dir}: no scheduler_config.json")
    scheduler_config = _read_config(sched_dir / "scheduler_config.json", "scheduler config")
    unet_config = _read_config(unet_dir / "config.json", "model config")
    cls_name = str(unet_config.get("_class_name", ""))
    if cls_name == "UNet2DConditionModel":
        raise StraightflowError(f"{unet_dir}: a text-conditioned UNet2DConditionModel needs prompt encodings; use an unconditional or class-conditional model")
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
    return DiffusersModel(unet, scheduler_config, root, unet_dir, sched_dir, cls_name, digest, sha256_file(sched_dir / "scheduler_config.json"),
                          {"diffusers_version": diffusers.__version__})


# ------------------------------------------------------------------ the sampler route
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
    def from_pretrained(cls, path: str | Path, *, steps: int, scheduler: str = "ddim", scheduler_dir: str | Path | None = None,
                        clip_sample: bool | None = None) -> "DiffusersSamplerTeacher":
        """The sampler of a diffusers folder (:func:`load_diffusers`), its saved scheduler converted to ``scheduler``."""
        model = load_diffusers(path, scheduler_dir=scheduler_dir)
        return cls(model.unet, model.scheduler(scheduler, clip_sample), steps, scheduler)

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        sch = self.scheduler
        sch.set_timesteps(self.steps, device=z.device)
        unet = _on_device(self.unet, z)
        step_kwargs = {"eta": 0.0} if type(sch).__name__ == "DDIMScheduler" else {}
        extra = {} if y is None else {"class_labels": y}
        generator = torch.Generator().manual_seed(0)  # schedulers that draw (unused) noise must not touch the global RNG
        x = z * sch.init_noise_sigma
        calls = 0
        for t in sch.timesteps:
            out = unet(sch.scale_model_input(x, t), t, **extra).sample
            calls += 1
            x = sch.step(out, t, x, generator=generator, **step_kwargs).prev_sample
        return SolveResult(x, calls)

    def settings(self) -> dict:
        return {"solver": f"diffusers-{self.name}", "nfe": self.steps}


# ------------------------------------------------------------------ EDM denoisers (VE, Karras preconditioning)
def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """EDM's noise levels (Karras et al. 2022, Eq. 5): ``steps`` levels from sigma_max down to sigma_min, then 0."""
    if steps < 1:
        raise StraightflowError(f"the EDM sampler needs >= 1 step, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise StraightflowError(f"EDM needs 0 < sigma_min < sigma_max, got {sigma_min:g} and {sigma_max:g}")
    if steps == 1:
        return [float(sigma_max), 0.0]
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma, labels: torch.Tensor | None) -> torch.Tensor:
    sig = _batch_times(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x).to(x.dtype)
    out = denoiser(x, sig) if labels is None else denoiser(x, sig, labels)
    if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise StraightflowError(f"the EDM denoiser returned {got} for x of shape {tuple(x.shape)}; D(x, sigma) must return x0_hat of the same shape")
    return out


class EDMVelocity:
    """An EDM denoiser D(x, sigma) (VE, x = x0 + sigma eps) as a velocity in straightflow's convention.

    Rectified time s = sigma / (1 + sigma), state y = x / (1 + sigma) = (1 - s) x0 + s eps;
    x0_hat = D(x, sigma), eps_hat = (x - x0_hat) / sigma, v = eps_hat - x0_hat. s is clamped to
    [s(sigma_min), s(sigma_max)] (s = 1 is evaluated at sigma_max, where EDM's sampler starts).
    ``D`` gets sigma as a (B,) tensor (EDM's ``EDMPrecond`` reshapes it); with labels it is called
    as D(x, sigma, labels).
    """

    def __init__(self, denoiser: Denoiser, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise StraightflowError(f"EDM needs 0 < sigma_min < sigma_max, got {sigma_min:g} and {sigma_max:g}")
        self.denoiser, self.sigma_min, self.sigma_max = denoiser, float(sigma_min), float(sigma_max)

    @property
    def s_range(self) -> tuple[float, float]:
        return self.sigma_min / (1 + self.sigma_min), self.sigma_max / (1 + self.sigma_max)

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = self.s_range
        s = _batch_times(t, y).detach().to("cpu", torch.float64).clamp(lo, hi)
        sigma = s / (1 - s)
        x = _per_row(1 + sigma, y) * y
        x0 = _denoise(self.denoiser, x, sigma, labels)
        eps = (x - x0) / _per_row(sigma, y)
        return eps - x0


class EDMSamplerTeacher:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1 with S_churn = 0) from x = z * sigma_max.

    ``steps`` noise levels (:func:`karras_sigmas`) then 0; a Heun step between levels, the last
    step to sigma = 0 plain Euler: NFE = 2 steps - 1 (EDM's 18 steps: 35).
    """

    def __init__(self, denoiser: Denoiser, steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        self.denoiser, self.steps = denoiser, int(steps)
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.sigmas = karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)

    @property
    def nfe(self) -> int:
        return 2 * self.steps - 1

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        x = z * self.sigmas[0]
        calls = 0
        for cur, nxt in zip(self.sigmas[:-1], self.sigmas[1:]):
            d = (x - _denoise(self.denoiser, x, cur, y)) / cur
            calls += 1
            x_next = x + (nxt - cur) * d
            if nxt > 0:
                d_next = (x_next - _denoise(self.denoiser, x_next, nxt, y)) / nxt
                calls += 1
                x_next = x + (nxt - cur) * 0.5 * (d + d_next)
            x = x_next
        return SolveResult(x, calls)

    def settings(self) -> dict:
        return {"solver": "edm-heun", "nfe": self.nfe, "edm": {"steps": self.steps, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                                                              "rho": self.rho}}


__all__ = [
    "DIFFUSERS_SCHEDULERS", "PREDICTION_TYPES", "Denoiser", "DiffusersModel", "DiffusersSamplerTeacher", "DiffusersVelocity", "EDMSamplerTeacher",
    "EDMVelocity", "VPSchedule", "euler_on_grid", "import_diffusers", "karras_sigmas", "load_diffusers", "weights_digest",
]
