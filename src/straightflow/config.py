"""Training configuration: one flat, typed dataclass (every field is a ``train`` flag).

Values come, lowest priority first, from the defaults here, a YAML file
(``--config``) and command-line flags (``--field-name value``). Unknown keys
are an error, never silently ignored. The resolved config is written to every
run directory as ``config.yaml``. Checks that concern one method's fields
live with that method (``straightflow.methods``); :func:`validate` checks the rest.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import StraightflowError
from .formatting import parse_int_list


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # what to train
    data: str = _opt("moons", "built-in dataset name or path to .npy/.csv/image folder")
    method: str = _opt("rectified", "rectified | ot | curvature | reflow | distill | lines")
    out: str = _opt("", "run directory")
    # budget
    steps: int = _opt(5000, "training steps")
    batch_size: int = _opt(256, "global batch size (split across ranks)")
    seed: int = _opt(0, "random seed")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    # optimisation
    optimizer: str = _opt("adam", "adam | adamw")
    lr: float = _opt(1e-3, "peak learning rate (a lines student of vector pairs: 3e-3 unless given)")
    weight_decay: float = _opt(0.0, "weight decay")
    warmup_steps: int = _opt(100, "linear learning-rate warmup steps")
    lr_schedule: str = _opt("constant", "after the warmup: constant | cosine (decay to 0 at the last step)")
    grad_clip: float = _opt(0.0, "max gradient norm, 0 = off")
    ema_decay: float = _opt(0.9999, "EMA decay ceiling; the effective decay is min(ema_decay, (1+step)/(10+step))")
    t_min: float = _opt(1e-5, "training times t ~ U(t_min, 1]")
    # model
    model: str = _opt("auto", "auto | mlp | unet (custom: a user module given to sf.train(velocity_net=...))")
    width: int = _opt(256, "MLP hidden width")
    depth: int = _opt(3, "MLP hidden layers")
    time_embed_dim: int = _opt(64, "time embedding features")
    # data
    prior: str = _opt("standard", "standard = N(0, I); wide = N(0, diag(36, 1)) for 2D")
    heldout_fraction: float = _opt(0.2, "fraction of a user file held out for evaluation")
    split_seed: int = _opt(0, "seed of the train/held-out split of a user file")
    validation_fraction: float = _opt(0.0, "carve this fraction of the training data (by --split-seed) as a validation "
                                           "split; the run trains on the rest and its quality checks (--eval-every) "
                                           "score against it, never the held-out split (0 = none)")
    label_column: str = _opt("", "point-cloud files: the column of class labels (0-based index or CSV header name)")
    data_kind: str = _opt("auto", "how a file / folder / Dataset is read: auto | image | vector | latent (any float "
                                  "range, standardised per channel)")
    loader: str = _opt("auto", "how training reads the data: auto (stream above 128 MiB as float32) | memory | stream "
                               "(DataLoader)")
    workers: int = _opt(-1, "DataLoader worker processes per rank when streaming (-1 = min(4, CPUs per rank - 1); 0 "
                            "for data already in memory)")
    # class-conditional generation (docs/conditional.md)
    conditional: bool = _opt(False, "train a class-conditional model on the data's labels")
    cond_drop: float = _opt(0.1, "rate at which labels are replaced by the null class (classifier-free guidance)")
    # coupling options
    ot_solver: str = _opt("exact", "minibatch OT pairing: exact | sinkhorn")
    sinkhorn_reg: float = _opt(0.05, "entropic regularisation for --ot-solver sinkhorn (relative to mean cost)")
    # images
    image_size: int = _opt(0, "resize images to this size (0 = keep the native size)")
    data_root: str = _opt("", "folder holding torchvision datasets (mnist, cifar10)")
    download: bool = _opt(False, "allow torchvision to download mnist/cifar10 into --data-root")
    hflip: bool = _opt(False, "random horizontal flips of training images")
    preset: str = _opt("", "named UNet preset (e.g. digits-cpu, mnist, cifar10); explicit fields still win")
    channels: int = _opt(32, "UNet base channels")
    channel_mult: str = _opt("1,2", "UNet channel multipliers per resolution, comma-separated")
    num_res_blocks: int = _opt(1, "UNet residual blocks per resolution")
    attn_resolutions: str = _opt("", "UNet resolutions with self-attention, comma-separated")
    dropout: float = _opt(0.0, "UNet dropout")
    amp: str = _opt("none", "mixed precision on CUDA: none | bf16")
    compile: bool = _opt(False, "torch.compile the velocity net (CUDA)")
    # curvature method (learned coupling)
    beta: float | str = _opt(10.0, "KL weight of the learned coupling (inf = independent coupling; auto = a KL target "
                                   "picked by a pilot sweep, docs/kl_target.md); with --kl-target: the initial beta")
    kl_target: float | None = _opt(None, "curvature method: adapt beta during training so that the KL per "
                                         "dimension settles at this many nats (dual ascent on log beta; "
                                         "docs/kl_target.md); none = a fixed --beta")
    kl_target_lr: float = _opt(0.01, "step of the dual ascent on log beta per unit relative KL error (--kl-target)")
    beta_auto_price: float = _opt(1.5, "--beta auto: the largest quality at NFE 100, relative to the baseline "
                                       "pilot's, of a pilot it may pick (W2 or FD; 1.5 = half as much error again; "
                                       "docs/kl_target.md)")
    beta_auto_draws: int = _opt(0, "--beta auto: draws of noise and held-out reference that each pilot's "
                                   "quality averages (0 = 20 for vectors, 5 for images; else at least 2, for the "
                                   "standard error of the price; docs/kl_target.md)")
    encoder: str = _opt("small", "encoder size for --method curvature: small | same (custom: a module given to "
                                 "sf.train(encoder_net=...))")
    # teacher pairs: reflow, distill, lines
    pairs: str = _opt("", "folder of teacher pairs (straightflow pairs ...)")
    teacher: str = _opt("", "teacher run directory (default: the one recorded with the pairs)")
    init_from_teacher: bool = _opt(True, "start the student from the teacher's weights (distill, lines)")
    recon: str = _opt("mse", "lines reconstruction loss: mse | pseudo-huber | lpips (a lines student of teacher "
                             "pairs: pseudo-huber unless given)")
    lpips_weights: str = _opt("", "path to LPIPS weights for --recon lpips")
    adv: float = _opt(0.0, "weight of the adversarial term (lines)")
    sampler_steps: int = _opt(0, "train only at the times a k-step sampler visits (0 = all t; a lines student of "
                                 "teacher pairs: 2 unless given)")
    t1_fraction: float | None = _opt(None, "lines: the share of training times drawn at t = 1, the first step of "
                                           "every sampler and the one-step sampler's only one; the rest as "
                                           "--sampler-steps draws them from its other times (none = no extra share; "
                                           "a lines student of teacher pairs: 0.9 unless it or --sampler-steps "
                                           "is given)")
    # bookkeeping
    log_every: int = _opt(100, "steps between JSONL stat lines")
    ckpt_every: int = _opt(1000, "steps between checkpoints (a final one is always written)")
    keep_checkpoints: int = _opt(2, "how many recent checkpoints to keep")
    progress: bool = _opt(True, "show a progress bar")
    # monitoring (docs/monitoring.md)
    tensorboard: bool = _opt(False, "write TensorBoard event files to RUNDIR/tensorboard (the tensorboard extra)")
    eval_every: int = _opt(0, "steps between quality checks of the EMA weights during training (0 = off): "
                              "RUNDIR/quality.jsonl, and samples in TensorBoard")
    eval_nfe: str = _opt("1,2,100", "NFEs of the in-training quality checks, comma-separated")
    eval_n: int = _opt(256, "samples per in-training quality check")
    eval_draws: int = _opt(1, "draws of noise and held-out reference that each in-training quality check averages "
                              "(more: less noise)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` to the declared type of field ``name``."""
    typ = _FIELD_TYPES[name]
    typ = typ if isinstance(typ, str) else typ.__name__
    try:
        if typ == "bool":
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if typ == "float":
            return float(value)
        if typ == "float | None":  # e.g. kl_target: a number, or none / null = off
            if value is None or str(value).strip().lower() in ("none", "null", ""):
                return None
            return float(value)
        if typ == "float | str":  # beta: a number (inf included) or the word auto
            if isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            return float(value)
        if typ == "str":
            return str(value)
    except (TypeError, ValueError):
        what = {"float | str": "a number, inf or auto", "float | None": "a number or none"}.get(typ, typ)
        raise StraightflowError(f"config key {name!r} expects {what}, got {value!r}") from None
    return value


def apply_overrides(cfg: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    known = set(_FIELD_TYPES)
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StraightflowError(f"unknown config key {key!r} in {source}{hint}")
        setattr(cfg, name, coerce(name, value))
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise StraightflowError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StraightflowError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise StraightflowError(f"config file {path} must hold a mapping of keys to values")
    key = next((k for k in data if not isinstance(k, str)), None)
    if key is not None or None in data:
        raise StraightflowError(f"config file {path}: key {key!r} is not a config field name")
    return data


def int_list(name: str, text: str) -> list[int]:
    """``"1,2,100"`` -> ``[1, 2, 100]`` for config field ``name`` (positive integers, at least one)."""
    try:
        values = parse_int_list(text)
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise StraightflowError(f"{name} must be comma-separated positive integers, got {text!r}")
    return values


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range checks that would otherwise fail deep inside training."""
    checks = [
        (cfg.steps >= 1, "steps must be >= 1"),
        (cfg.batch_size >= 2, "batch_size must be >= 2"),
        (math.isfinite(cfg.lr) and cfg.lr > 0, f"lr must be finite and > 0, got {cfg.lr}"),
        (cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}"),
        (math.isfinite(cfg.grad_clip) and cfg.grad_clip >= 0,
         f"grad_clip must be finite and >= 0 (0 = off), got {cfg.grad_clip}"),
        (cfg.seed >= 0 and cfg.split_seed >= 0,
         f"seed and split_seed must be >= 0, got {cfg.seed} and {cfg.split_seed}"),
        (cfg.image_size >= 0, f"image_size must be >= 0 (0 = the native size), got {cfg.image_size}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (0.0 <= cfg.dropout < 1.0, f"dropout must be in [0, 1), got {cfg.dropout}"),
        (0.0 <= cfg.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
        (0.0 <= cfg.cond_drop < 1.0, f"cond_drop must be in [0, 1), got {cfg.cond_drop}"),
        (0.0 <= cfg.t_min < 1.0, "t_min must be in [0, 1)"),
        (cfg.width >= 1 and cfg.depth >= 1, "width and depth must be >= 1"),
        (cfg.time_embed_dim >= 2 and cfg.time_embed_dim % 2 == 0, "time_embed_dim must be even and >= 2"),
        (0.0 < cfg.heldout_fraction < 1.0, "heldout_fraction must be in (0, 1)"),
        (0.0 <= cfg.validation_fraction < 1.0,
         f"validation_fraction must be in [0, 1) (0 = none), got {cfg.validation_fraction}"),
        (cfg.optimizer in ("adam", "adamw"), f"unknown optimizer {cfg.optimizer!r}: use adam or adamw"),
        (cfg.lr_schedule in ("constant", "cosine"), f"unknown lr_schedule {cfg.lr_schedule!r}: use constant or cosine"),
        (cfg.log_every >= 1 and cfg.ckpt_every >= 1, "log_every and ckpt_every must be >= 1"),
        (cfg.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        (cfg.amp in ("none", "bf16"), f"unknown amp {cfg.amp!r}: use none or bf16"),
        (cfg.loader in ("auto", "memory", "stream"), f"unknown loader {cfg.loader!r}: use auto, memory or stream"),
        (cfg.data_kind in ("auto", "image", "vector", "latent"),
         f"unknown data_kind {cfg.data_kind!r}: use auto, image, vector or latent"),
        (cfg.workers >= -1, f"workers must be >= 0 (or -1 = auto), got {cfg.workers}"),
        (not (cfg.pairs and cfg.loader == "stream"),
         "--loader stream does not apply to --pairs: teacher pairs are read from their memory-mapped shards"),
        (cfg.eval_every >= 0, f"eval_every must be >= 0 (0 = off), got {cfg.eval_every}"),
        (cfg.eval_n >= 2, f"eval_n must be >= 2 (quality compares two sets of samples), got {cfg.eval_n}"),
        (cfg.eval_draws >= 1, f"eval_draws must be >= 1, got {cfg.eval_draws}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise StraightflowError(msg)
    int_list("eval_nfe", cfg.eval_nfe)
    _validate_kl_target(cfg)
    return cfg


def _validate_kl_target(cfg: TrainConfig) -> None:
    """``--kl-target`` / ``--beta auto`` (docs/kl_target.md): one-line errors for every misuse."""
    auto = cfg.beta == "auto"
    if cfg.kl_target is None and not auto:
        return
    what = "--beta auto" if auto else "--kl-target"
    if cfg.method != "curvature":
        raise StraightflowError(f"{what} adapts the curvature method's beta; --method {cfg.method} has none (use "
                                "--method curvature)")
    if auto and cfg.kl_target is not None:
        raise StraightflowError("--beta auto picks the KL target itself: drop --kl-target (or give a number as --beta)")
    if not (math.isfinite(cfg.kl_target_lr) and cfg.kl_target_lr > 0):
        raise StraightflowError(f"kl_target_lr must be finite and > 0, got {cfg.kl_target_lr}")
    if auto:
        if not (math.isfinite(cfg.beta_auto_price) and cfg.beta_auto_price >= 1):
            raise StraightflowError(f"beta_auto_price must be finite and >= 1 (a quality ratio to the baseline pilot), "
                                    f"got {cfg.beta_auto_price}")
        if not (cfg.beta_auto_draws == 0 or cfg.beta_auto_draws >= 2):
            raise StraightflowError("beta_auto_draws must be 0 (by the data) or >= 2 (the price's standard error "
                                    f"needs two draws), got {cfg.beta_auto_draws}")
        return
    if not (math.isfinite(cfg.kl_target) and cfg.kl_target > 0):
        raise StraightflowError(f"--kl-target must be finite and > 0 (nats per dimension), got {cfg.kl_target}")
    if not (math.isfinite(cfg.beta) and cfg.beta > 0):
        raise StraightflowError("--kl-target adapts beta from --beta as its initial value, which must be finite and > "
                                f"0, got {cfg.beta}")


def resolve_config(config_file: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    cfg = TrainConfig()
    if config_file:
        apply_overrides(cfg, load_yaml(config_file), source=str(config_file))
    if overrides:
        apply_overrides(cfg, overrides, source="command line")
    return validate(cfg)


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_run_config(path: Path) -> TrainConfig:
    """Load a run's saved config.yaml (strict: an unknown key or an out-of-range value is an error)."""
    cfg = TrainConfig()
    apply_overrides(cfg, load_yaml(path), source=str(path))
    return validate(cfg)
