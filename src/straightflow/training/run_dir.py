"""The run directory of ``train``: what to train (a new run's config, or a resumed run's saved one
checked against the call), what a student inherits from its teacher's pairs, and the logs a resumed
run truncates to its checkpoint (``docs/architecture.md``, "Run directories")."""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import latest_checkpoint
from ..config import TrainConfig, apply_overrides, coerce, load_run_config, load_yaml, resolve_config, validate
from ..data.pairs import read_manifest
from ..errors import StraightflowError
from ..methods import Method, resolve_method
from .auto_beta import RECORD_FILE as AUTO_RECORD

#: config keys that may differ when a run is resumed (they do not change the result)
RESUMABLE_KEYS = {"steps", "device", "progress", "log_every", "ckpt_every", "keep_checkpoints", "out", "workers",
                  "tensorboard", "eval_every", "eval_nfe", "eval_n"}


#: config fields a student takes from its teacher run's config unless given explicitly
INHERITED_FIELDS = (
    "data", "prior", "model", "width", "depth", "time_embed_dim", "heldout_fraction", "split_seed",
    "image_size", "data_root", "preset", "channels", "channel_mult", "num_res_blocks", "attn_resolutions", "dropout",
    "label_column", "conditional", "data_kind",
)


def inherit_teacher_config(cfg: TrainConfig, explicit: set[str], method: Method | None = None) -> None:
    """Fill ``cfg`` for training on ``cfg.pairs``: the data (and, for a teacher run, the
    architecture) from the pairs' manifest, ``teacher`` from the manifest, and
    ``init_from_teacher`` from the method (only when the teacher is a run); fields in
    ``explicit`` (given on the command line or in a config file) are kept."""
    manifest = read_manifest(cfg.pairs)
    tcfg = manifest.get("teacher_config") or {}
    for key in INHERITED_FIELDS:
        if key not in explicit and key in tcfg:
            setattr(cfg, key, coerce(key, tcfg[key]))
    teacher_run = manifest.get("teacher_kind", "run") == "run" and bool(manifest.get("teacher"))
    if not cfg.teacher and teacher_run:
        cfg.teacher = manifest["teacher"]
    if "init_from_teacher" not in explicit:
        cfg.init_from_teacher = bool(resolve_method(cfg, method).starts_from_teacher and cfg.teacher)
    shape = tuple(manifest.get("shape") or ())
    for key, value in resolve_method(cfg, method).pair_defaults(shape, explicit).items():  # its measured recipe
        setattr(cfg, key, value)


def prepare_run_dir(out: Path, resume: bool, overrides: dict, config_file: str | None,
                    method: Method | None = None) -> TrainConfig:
    saved = out / "config.yaml"
    if resume:
        if not saved.exists():
            raise StraightflowError(f"--resume given but {out} holds no run (no config.yaml)")
        cfg = load_run_config(saved)
        file_cfg = resolve_config(config_file, None).to_dict() if config_file else {}
        asked = {**{k: v for k, v in file_cfg.items()}, **overrides} if config_file else dict(overrides)
        for key, value in asked.items():
            key = key.replace("-", "_")
            if key in RESUMABLE_KEYS:
                continue
            if key == "beta" and value == "auto" and (out / AUTO_RECORD).exists():
                continue  # the rule resolved beta (and kl_target) when the run started: its saved values are the answer
            probe = TrainConfig()
            apply_overrides(probe, {key: value}, "command line")
            if getattr(probe, key) != getattr(cfg, key):
                raise StraightflowError(f"--resume: {key}={getattr(probe, key)!r} differs from the run's saved "
                                        f"{key}={getattr(cfg, key)!r}")
        apply_overrides(cfg, {k: v for k, v in overrides.items() if k.replace('-', '_') in RESUMABLE_KEYS},
                        "command line")
        cfg.out = str(out)
        return validate(cfg)
    if saved.exists() or latest_checkpoint(out) is not None:
        raise StraightflowError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    cfg = resolve_config(config_file, overrides)
    cfg.out = str(out)
    if cfg.pairs:  # training on teacher pairs: take the teacher's data/model fields unless given
        explicit = {k.replace("-", "_") for k in [*overrides, *(load_yaml(config_file) if config_file else {})]}
        inherit_teacher_config(cfg, explicit, method)
    return cfg


def asks_auto_beta(overrides: dict, config_file: str | None) -> bool:
    """Whether the command asks for ``--beta auto`` (on the command line, else in its config file)."""
    value = overrides.get("beta", load_yaml(config_file).get("beta") if config_file else None)
    return value == "auto"


def truncate_records(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in keep))


def run_dir_asked(overrides: dict, config_file: str | None) -> Path:
    """The run directory asked for: ``out`` of the call, else of the config file."""
    out_value = overrides.get("out")
    if not out_value and config_file:
        out_value = load_yaml(config_file).get("out")
        if out_value is not None and not isinstance(out_value, str):
            raise StraightflowError(f"config key 'out' in {config_file} expects a folder name, got {out_value!r}")
    if not out_value:
        raise StraightflowError("no run directory given: pass --out RUNDIR")
    return Path(out_value)
