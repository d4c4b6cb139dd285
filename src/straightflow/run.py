"""A trained run, loaded for sampling and evaluation.

``Run.load(DIR)`` (``sf.load``) takes a run directory or an exported model
folder (``docs/portable.md``). It rebuilds the networks from the saved config,
loads the EMA weights (of the latest or a chosen checkpoint of a run) and puts
them in eval mode. The data comes from the saved sampling state (shape, class
names, normalisation; a :class:`~straightflow.data.StoredSource`), so sampling
never needs the training data; the data itself is loaded on first use (held-out
references in ``eval``), with a one-line error where it is gone. Runs saved
before the sampling state was recorded load their data at once, as before.
Samples are returned in the data's own units;
the noise of sample ``i`` is row ``i`` of the ``"sample"`` stream of the seed
(:mod:`straightflow.noise`), whatever the batch size, drawn from the run's prior, or
from the mixture fitted to a curvature run's aggregate posterior where its checkpoint
holds one (:meth:`Run.fit_prior`, ``docs/guide.md``, "A fitted prior").

A class-conditional run samples class ``classes`` (an index, a name, a tensor
of labels, or "all": sample ``i`` gets class ``i mod K``) with guidance weight
``guidance`` (``docs/conditional.md``); :class:`SampleOutput` says how many
network evaluations that took.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    check_export_config,
    is_export,
    latest_checkpoint,
    load_checkpoint_weights,
    load_export_weights,
    load_into,
    read_export_config,
    read_meta,
)
from .conditioning import GuidedVelocity
from .config import TrainConfig, apply_overrides, load_run_config, validate
from .data import DataSource, StoredSource, load_data
from .device import resolve_device
from .errors import StraightflowError
from .methods import FlowTrainingModule, Method, build_module, resolve_method
from .methods.curvature import encode_sample
from .noise import seeded_noise
from .priors import FITTED_PRIOR_FILE, MixturePrior, check_mixture, fit_mixture
from .solvers import SolveResult, check_solver, solve


def _data_loader(cfg: TrainConfig, dataset=None):
    """The call that loads a run's data from its config (run lazily by :class:`StoredSource`);
    ``dataset``: the user's own Dataset of a ``data: custom`` run."""
    return partial(load_data, cfg.data, cfg, require_labels=cfg.conditional, dataset=dataset)


def load(path: str | Path, device: str = "auto", checkpoint: str | Path | None = None,
         velocity_net: nn.Module | None = None, encoder_net: nn.Module | None = None, dataset=None,
         method: Method | None = None) -> "Run":
    """``sf.load(DIR)``: a run directory or an exported model folder, ready to sample (:meth:`Run.load`)."""
    return Run.load(path, device=device, checkpoint=checkpoint, velocity_net=velocity_net, encoder_net=encoder_net,
                    dataset=dataset, method=method)


def clamp_samples(data, samples: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Image samples clamped to the data's value range [-1, 1] (images are in [-1, 1] in data and model units
    alike, ``docs/data.md``), as ``sample`` writes them and ``eval`` scores them; vectors, latents, or
    ``clamp=False``: unchanged."""
    return samples.clamp(-1.0, 1.0) if clamp and data.kind == "image" else samples


#: the NFE ``sample`` uses for a run directory when none is given (an export: its recommended NFE)
RUN_DIR_NFE = 1


@dataclass
class SampleOutput:
    samples: torch.Tensor  #: (n, ...) in data units, CPU
    nfe: int  #: velocity evaluations per sample path, the solver's steps' cost (max over sampling batches for RK45)
    solver: str  #: the solver that made them
    trajectory: torch.Tensor | None = None  #: (S + 1, n, ...) in data units, t = 1 first
    times: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    #: (n,) class of each sample (conditional runs; None at guidance 0, which ignores classes)
    labels: torch.Tensor | None = None
    guidance: float | None = None  #: guidance weight w (conditional runs)
    network_evals: int = 0  #: network evaluations per sample: nfe, or 2 x nfe when guided (conditional + null)
    network_calls: int = 0  #: network forward calls per sampling batch (a guided step is one call on 2 x the rows)
    call_rows: int = 0  #: rows of the largest network call (2 x the batch when guided)
    note: str | None = None  #: the solver's caveat (``SolveResult.note``), e.g. Heun at even NFE evaluates t = 0


def _check_guidance(guidance: float | None) -> None:
    if guidance is not None and not math.isfinite(guidance):
        raise StraightflowError(f"--guidance must be a finite number, got {guidance}")


class Run:
    def __init__(self, run_dir: Path, cfg: TrainConfig, module: FlowTrainingModule, method: Method, data: DataSource,
                 prior, device, checkpoint: Path, meta: dict | None = None):
        self.dir, self.cfg, self.module, self.method, self.data, self.prior, self.device = (
            run_dir, cfg, module, method, data, prior, device)
        self.checkpoint = checkpoint  #: the checkpoint folder (a run) or the export folder
        self.meta = read_meta(checkpoint) if meta is None else meta
        fitted = Path(checkpoint) / FITTED_PRIOR_FILE
        #: where sampling noise comes from: ``prior`` (the training prior), or the checkpoint's fitted mixture
        self.sampling_prior = MixturePrior.load(fitted) if fitted.exists() else prior

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", checkpoint: str | Path | None = None,
             velocity_net: nn.Module | None = None, encoder_net: nn.Module | None = None, dataset=None,
             method: Method | None = None) -> "Run":
        """Load a run directory or an exported model folder (``docs/portable.md``);
        ``velocity_net`` / ``encoder_net`` / ``dataset`` / ``method``: the user's own modules, Dataset and
        :class:`~straightflow.methods.Method` a run was trained with."""
        run_dir = Path(run_dir)
        if is_export(run_dir):
            if checkpoint is not None:
                raise StraightflowError(f"{run_dir} is an exported model: it holds one set of weights, so no "
                                        "checkpoint can be chosen")
            if velocity_net is not None or encoder_net is not None:
                raise StraightflowError(f"{run_dir} is an exported model of built-in networks: it takes no "
                                        "velocity_net / encoder_net")
            return cls.load_export(run_dir, device=device, method=method)
        if not (run_dir / "config.yaml").exists():
            raise StraightflowError(f"{run_dir} is not a run directory (no config.yaml) nor an exported model (no "
                                    "config.json)")
        cfg = load_run_config(run_dir / "config.yaml")
        ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
        if ckpt is None:
            raise StraightflowError(f"{run_dir} has no checkpoint yet")
        meta = read_meta(ckpt)
        if isinstance(meta.get("sampling"), dict):  # the data as sampling needs it; the data itself on first use
            data: DataSource = StoredSource(meta["sampling"], loader=_data_loader(cfg, dataset), origin=str(run_dir))
        else:  # saved before the sampling state was recorded: the data itself, now
            data = load_data(cfg.data, cfg, require_labels=cfg.conditional, dataset=dataset)
            saved_classes = meta.get("classes")
            if cfg.conditional and saved_classes is not None and list(saved_classes) != list(data.class_names):
                raise StraightflowError(f"{run_dir} was trained on classes {saved_classes} but {cfg.data} now has "
                                        f"{list(data.class_names)}")
        weights = ckpt / "ema.safetensors"
        state = load_checkpoint_weights(ckpt, weights.name)  # checked against meta.json's sha256
        return cls._assemble(run_dir, cfg, data, state, weights, device, ckpt, meta, velocity_net, encoder_net, method)

    @classmethod
    def load_export(cls, folder: str | Path, device: str = "auto", config: dict | None = None,
                    method: Method | None = None) -> "Run":
        """Load an exported model folder (``straightflow export``); ``config``: its ``config.json``
        already parsed (e.g. by ``huggingface_hub``), checked the same way; ``method``: the user's own
        method of an export recorded as ``method: custom``."""
        folder = Path(folder)
        config = read_export_config(folder) if config is None else check_export_config(config, folder)
        cfg = TrainConfig()
        apply_overrides(cfg, config["train_config"], source=f"{folder / 'config.json'} (train_config)")
        validate(cfg)
        if cfg.model == "custom" or resolve_method(cfg, method).uses_custom_encoder(cfg):
            raise StraightflowError(f"{folder / 'config.json'} names a user's own module (custom): an export holds "
                                    "built-in networks only")
        data = StoredSource(config["sampling"], loader=_data_loader(cfg), origin=str(folder))
        state = load_export_weights(folder, config)
        meta = {k: config[k]
                for k in ("step", "method", "model", "velocity_parameters", "recommended", "straightflow_version")
                if k in config}
        meta["export"] = True
        if cfg.conditional:
            meta["classes"] = list(data.class_names)
        return cls._assemble(folder, cfg, data, state, folder / "model.safetensors", device, folder, meta, None, None,
                             method)

    @classmethod
    def _assemble(cls, run_dir: Path, cfg: TrainConfig, data: DataSource, state: dict, weights: Path, device: str,
                  checkpoint: Path, meta: dict, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
                  method: Method | None = None) -> "Run":
        """Build the networks for ``cfg`` and ``data``, load ``state`` into them, eval mode, no gradients."""
        dev = resolve_device(device)
        module, method, prior = build_module(cfg, data, velocity_net, encoder_net, method)
        broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())),
                      None)
        if broken is not None:
            raise StraightflowError(f"checkpoint {weights} holds non-finite weights ({broken}): the run diverged; "
                                    "nothing to sample from it")
        load_into(module, state, weights)
        module.to(dev).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return cls(run_dir, cfg, module, method, data, prior, dev, checkpoint, meta)

    @property
    def exported(self) -> bool:
        """Whether this was loaded from an exported model folder (not a run directory)."""
        return bool(self.meta.get("export"))

    @property
    def recommended(self) -> dict | None:
        """An export's sampling recommendation ``{"solver", "nfe", "source"}``; None for a run directory."""
        rec = self.meta.get("recommended")
        return rec if isinstance(rec, dict) else None

    @property
    def data_available(self) -> bool:
        """Whether the training data itself can be read (sampling never needs it; ``eval`` does)."""
        return self.data.available() if isinstance(self.data, StoredSource) else True

    def sampling_state(self) -> dict:
        """What sampling needs without the data (``DataSource.sampling_state`` plus the prior's name)."""
        return {**self.data.sampling_state(), "prior": self.cfg.prior}

    @property
    def velocity(self) -> torch.nn.Module:
        return self.module.velocity

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def noise(self, n: int, seed: int = 0) -> torch.Tensor:
        """The sampling noise of samples 0..n-1 of ``seed`` (model units, CPU), from :attr:`sampling_prior`."""
        return seeded_noise(n, tuple(self.data.shape), seed, "sample", self.sampling_prior)

    @property
    def fitted_prior(self) -> bool:
        """Whether sampling draws from a fitted mixture (:meth:`fit_prior`) rather than the training prior."""
        return isinstance(self.sampling_prior, MixturePrior)

    def fit_prior(self, components: int = 8, n: int = 20_000, covariance: str = "full", seed: int = 0,
                  save: bool = True, dry_run: bool = False) -> MixturePrior | None:
        """Fit a ``components``-Gaussian mixture to the aggregate posterior of a curvature run's encoder, z ~ q(z|x)
        for ``n`` training points (never held-out data), and sample from it from now on; ``save`` writes it to the
        checkpoint folder (``prior_fit.safetensors``), where :meth:`load` finds it. Why: one step is trained from the
        encoder's z, and in more than a few dimensions N(0, I) puts its mass where q(z) has little
        (``docs/guide.md``, "A fitted prior"). ``dry_run``: the checks alone (the error fitting would give), None."""
        if getattr(self.module.coupling, "encoder", None) is None:
            raise StraightflowError(f"{self.dir} has no encoder to fit a prior to: a fitted prior needs a curvature "
                                    f"run with a finite --beta (this run: --method {self.cfg.method}, beta "
                                    f"{self.cfg.beta})")
        if self.conditional:
            raise StraightflowError(f"{self.dir} is class-conditional: a fitted prior is one mixture for every class, "
                                    "which a conditional run's encoder q(z|x, y) does not have; not supported")
        if self.exported:
            raise StraightflowError(f"{self.dir} is an exported model: fit the prior in the run directory")
        check_mixture(components, n, math.prod(self.data.shape), covariance)
        x, _ = self.data.sample_train(n, torch.Generator().manual_seed(seed))  # a one-line error if the data is gone
        if dry_run:
            return None
        z, _, _ = encode_sample(self, self.data.denormalize(x.cpu()), seed)  # z ~ q(z|x), the "encode" noise stream
        prior = fit_mixture(z, components, covariance, seed)
        if save:
            prior.save(Path(self.checkpoint) / FITTED_PRIOR_FILE)
        self.sampling_prior = prior
        return prior

    @property
    def conditional(self) -> bool:
        return self.module.conditional

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes of a conditional run (index = label); empty otherwise."""
        return tuple(self.data.class_names) if self.conditional else ()

    def heldout(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Held-out data (data units) and, for a conditional run, its labels (else None)."""
        x, y = self.data.reference(n, seed)
        return x, y if self.conditional else None

    def _not_conditional(self) -> StraightflowError:
        return StraightflowError(f"{self.dir} is not class-conditional (trained without --conditional): it takes no "
                                 "class labels and no guidance")

    def class_index(self, name: str | int) -> int:
        """The label of class ``name`` (a class name, or an index as int or text)."""
        names = self.class_names
        if not names:
            raise self._not_conditional()
        if isinstance(name, str) and name in names:
            return names.index(name)
        index = -1
        if isinstance(name, str) and name.strip().lstrip("-").isdigit():
            index = int(name)
        elif isinstance(name, numbers.Integral) and not isinstance(name, bool):
            index = int(name)
        if not 0 <= index < len(names):
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise StraightflowError(f"unknown class {name!r}: this run's classes are {shown} (or indices "
                                    f"0..{len(names) - 1}, or all)")
        return index

    def labels(self, n: int, classes="all") -> torch.Tensor:
        """(n,) labels for ``classes``: "all" (sample i gets class i mod K), one class (index or name), or a tensor."""
        if torch.is_tensor(classes):
            y = classes.long().cpu()
            if y.shape != (n,):
                raise StraightflowError(f"labels of shape {tuple(y.shape)} for {n} samples")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise StraightflowError(f"labels must be in 0..{len(self.class_names) - 1}")
            return y
        if classes is None or classes == "all":
            if not self.conditional:
                raise self._not_conditional()
            return torch.arange(n) % len(self.class_names)
        return torch.full((n,), self.class_index(classes), dtype=torch.long)

    def velocity_fn(self, labels: torch.Tensor | None = None, guidance: float | None = None):
        """The velocity the solvers integrate: the net itself, or for a conditional run the guided
        velocity of ``labels`` at ``guidance`` (default 1) as a :class:`GuidedVelocity`."""
        if not self.conditional:
            if labels is not None or guidance is not None:
                raise self._not_conditional()
            return self.velocity
        if labels is None:
            raise StraightflowError(f"{self.dir} is class-conditional: its velocity needs labels (e.g. "
                                    "run.labels(n, 'all'))")
        return GuidedVelocity(self.velocity, labels.to(self.device), 1.0 if guidance is None else float(guidance),
                              self.module.null_label)

    @torch.inference_mode()
    def solve_from(self, z: torch.Tensor, nfe: int, solver: str | None = None, batch_size: int = 4096,
                   return_trajectory: bool = False, progress=False, labels: torch.Tensor | None = None,
                   guidance: float | None = None) -> SampleOutput:
        """Integrate the generative ODE from given noise ``z`` (model units, t = 1); ``solver``
        defaults to the method's own (e.g. the line sampler for ``lines`` runs). A conditional
        run needs ``labels`` (one per row of ``z``; default: class i mod K) and takes ``guidance``.
        ``return_trajectory``: the path of every sample, t = 1 first; with ``rk45``, whose step sizes adapt to
        the batch solved together, all of ``z`` is solved as one batch so that one time grid serves every path.
        ``progress``: True for a bar counting samples, or a tqdm bar of the caller's to advance by the samples."""
        solver = solver or self.method.default_solver
        if self.conditional and labels is None:
            labels = self.labels(z.shape[0])
        _check_guidance(guidance)
        outs, trajs, nfe_used, times, note = [], [], 0, None, None
        calls = rows = evals = 0
        # the bar counts samples; a caller's own bar (``progress`` a tqdm, e.g. eval's) is advanced instead
        own_bar = not hasattr(progress, "update")
        bar = tqdm(total=z.shape[0], disable=not progress, desc=f"sample {solver}@{nfe}", unit="sample",
                   leave=False) if own_bar else progress
        if return_trajectory and solver == "rk45":
            # RK45's time grid adapts to the batch: one batch, so one grid for every trajectory
            batch_size = max(1, z.shape[0])
        for s in range(0, z.shape[0], batch_size):
            velocity = self.velocity_fn(None if labels is None else labels[s : s + batch_size], guidance)
            res: SolveResult = solve(velocity, z[s : s + batch_size].to(self.device), solver, nfe, return_trajectory)
            nfe_used = max(nfe_used, res.nfe)
            note = note or res.note
            if isinstance(velocity, GuidedVelocity):
                calls, rows, evals = (max(calls, velocity.calls), max(rows, velocity.rows),
                                      max(evals, res.nfe * velocity.branches))
            else:
                calls, rows, evals = (max(calls, res.nfe), max(rows, min(batch_size, z.shape[0] - s)),
                                      max(evals, res.nfe))
            outs.append(self.data.denormalize(res.samples).cpu())
            if return_trajectory:
                trajs.append(self.data.denormalize(res.trajectory).cpu())
                times = res.times
            bar.update(res.samples.shape[0])
        if own_bar:
            bar.close()
        traj = torch.cat(trajs, dim=1) if return_trajectory else None
        w = (1.0 if guidance is None else float(guidance)) if self.conditional else None
        classes = None if w == 0 else labels  # w = 0 samples the null class alone: the samples have no class
        return SampleOutput(torch.cat(outs), nfe_used, solver, traj, times, z, classes, w, evals, calls, rows, note)

    def sampling_defaults(self, nfe: int | None = None, guidance: float | None = None) -> tuple[int, float | None]:
        """The NFE and guidance weight that sampling uses where they are not given (``Run.sample`` and the
        ``sample`` command alike): an export's recommended NFE (and, conditional, its recommended guidance),
        else NFE :data:`RUN_DIR_NFE` for a run directory (and guidance None: the conditional model, w = 1)."""
        rec = self.recommended or {}
        if nfe is None:
            nfe = int(rec.get("nfe", RUN_DIR_NFE))
        if guidance is None and self.conditional and isinstance(rec.get("guidance"), (int, float)):
            guidance = float(rec["guidance"])
        return nfe, guidance

    def sample(self, n: int, nfe: int | None = None, solver: str | None = None, seed: int = 0, batch_size: int = 4096,
               return_trajectory: bool = False, progress=False, classes=None,
               guidance: float | None = None) -> SampleOutput:
        """Draw ``n`` samples with seeded noise (independent of ``batch_size``); ``solver`` defaults to the method's.
        ``nfe`` None: an export's recommended NFE, else 1 for a run directory (:meth:`sampling_defaults`).

        Conditional runs: ``classes`` ("all" = class i mod K, a class index or name, or (n,) labels)
        and ``guidance`` w (0 unconditional, 1 conditional, > 1 guided; None: an export's recommended weight, else 1).
        """
        nfe, solver, guidance, labels = self.sampling_plan(n, nfe, solver, classes, guidance)
        return self.solve_from(self.noise(n, seed), nfe, solver, batch_size, return_trajectory, progress, labels,
                               guidance)

    def sampling_plan(self, n: int, nfe: int | None = None, solver: str | None = None, classes=None,
                      guidance: float | None = None) -> tuple[int, str, float | None, torch.Tensor | None]:
        """What :meth:`sample` would do, checked without solving: ``(nfe, solver, guidance, labels)`` after the
        defaults, or the error sampling gives (``sample --dry-run``)."""
        if n < 1:
            raise StraightflowError(f"-n must be >= 1, got {n}")
        if not self.conditional and (classes is not None or guidance is not None):
            raise self._not_conditional()
        nfe, guidance = self.sampling_defaults(nfe, guidance)
        solver = solver or self.method.default_solver
        check_solver(solver, nfe)
        _check_guidance(guidance)
        labels = self.labels(n, "all" if classes is None else classes) if self.conditional else None
        return nfe, solver, guidance, labels
