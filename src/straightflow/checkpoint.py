"""Checkpoints: weights in safetensors plus optimizer/EMA/step/RNG state.

Layout of a run directory::

    RUNDIR/config.yaml            resolved config
    RUNDIR/stats.jsonl            one JSON object per logged step
    RUNDIR/quality.jsonl          one per in-training quality check (--eval-every; training/monitor.py)
    RUNDIR/tensorboard/           TensorBoard event files (--tensorboard)
    RUNDIR/checkpoints/step-000100/{model,ema}.safetensors, state.pt, meta.json

Each checkpoint is written (and fsynced) in a temporary folder and renamed
into place, so a crash mid-write never leaves a half checkpoint under a final
name and never touches the last good one; re-saving an existing step keeps a
complete checkpoint of that step at every instant (see :func:`save_checkpoint`).
``meta.json`` records the sha256 of both weight files; loading checks them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import StraightflowError
from .files import sha256_file

FORMAT_VERSION = 1
#: an exported model folder (docs/portable.md): ``config.json`` says ``"format": EXPORT_FORMAT``
EXPORT_FORMAT = "straightflow-export"
#: the newest export ``format_version`` this straightflow writes and reads
EXPORT_VERSION = 1
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
_STEP_DIR = re.compile(r"^step-(\d{6,})(\.new)?$")
#: suffix of a checkpoint that replaces one of the same step (see save_checkpoint)
PENDING = ".new"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hidden(root: Path, kind: str, name: str) -> Path:
    """A free hidden name in ``root`` (``list_checkpoints`` never lists hidden folders)."""
    path = root / f".{kind}-{name}-{os.getpid()}"
    if path.exists():  # left by an earlier crash of a process with our pid
        shutil.rmtree(path)
    return path


def _discard(path: Path) -> None:
    """Delete a checkpoint folder: renamed to a hidden name first, so it is never seen half deleted."""
    trash = _hidden(path.parent, "trash", path.name)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _step_folders(root: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and (m := _STEP_DIR.match(p.name)):
                found.setdefault(int(m.group(1)), []).append(p)
    return found


def save_checkpoint(run_dir: Path, step: int, model_state: dict, ema_state: dict, train_state: dict, meta: dict,
                    keep: int) -> Path:
    """Write ``checkpoints/step-NNNNNN`` complete (fsynced) under a temporary name, then rename it into place.

    Re-saving a step that exists never leaves that step without a complete
    checkpoint (docs/architecture.md, "Run directories"): the new folder is
    renamed to ``step-NNNNNN.new`` beside the old one, the old one is renamed
    away, and ``.new`` takes the final name; ``list_checkpoints`` lists the
    final name, or ``.new`` where a crash left only that. Older checkpoints
    beyond ``keep`` are deleted last. ``meta.json`` records the sha256 of both
    weight files, which :func:`load_checkpoint_weights` checks.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final, pending = root / name, root / (name + PENDING)
    tmp = _hidden(root, "tmp", name)
    try:  # a full disk (or any write error) leaves the checkpoints as they were, and no half folder
        tmp.mkdir()
        sums = {}
        for fname, state in (("model.safetensors", model_state), ("ema.safetensors", ema_state)):
            data = save(_contiguous(state))
            sums[fname] = hashlib.sha256(data).hexdigest()
            _write(tmp / fname, data)
        buf = io.BytesIO()
        torch.save(train_state, buf)
        _write(tmp / "state.pt", buf.getvalue())
        _write(tmp / "meta.json",
               json.dumps({**meta, "step": step, "format": FORMAT_VERSION, "sha256": sums}, indent=1).encode())
        _fsync_dir(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(run_dir)
        kept = f"the last checkpoint ({last.name}) is intact" if last is not None else "no checkpoint was written"
        raise StraightflowError(f"could not write checkpoint {name} in {root}: {exc.strerror or exc} (is the disk "
                                f"full?); {kept}") from None
    if not final.exists() and not pending.exists():
        os.replace(tmp, final)
    else:  # at every instant below, `final` or `pending` is a complete checkpoint of this step
        if pending.exists():
            if final.exists():
                _discard(pending)  # a replacement a crash left beside a complete `final`
            else:
                os.replace(pending, final)  # a crash left only the replacement: it becomes `final`
        os.replace(tmp, pending)
        _fsync_dir(root)
        old = _hidden(root, "old", name)
        os.replace(final, old)
        os.replace(pending, final)
        _fsync_dir(root)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(root)
    folders = _step_folders(root)
    for stale in sorted(folders)[:-keep] if keep > 0 else []:
        for path in folders[stale]:
            _discard(path)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """One complete checkpoint folder per saved step, oldest first."""
    folders = _step_folders(Path(run_dir) / "checkpoints")
    # the final name wins over a `.new` replacement; both are complete (see save_checkpoint)
    return [min(folders[step], key=lambda p: p.name.endswith(PENDING)) for step in sorted(folders)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_meta(ckpt: Path) -> dict:
    """``ckpt/meta.json``; a missing, corrupt or newer-format one (written by a later straightflow) is a one-line
    error."""
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StraightflowError(f"checkpoint {ckpt} is corrupt or incomplete (meta.json: {exc})") from None
    if not isinstance(meta, dict):
        raise StraightflowError(f"checkpoint {ckpt} is corrupt (meta.json is not a JSON object)")
    version = meta.get("format", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise StraightflowError(f"checkpoint {ckpt} has format {version!r}; this straightflow reads format "
                                f"{FORMAT_VERSION} and older: upgrade straightflow to load it")
    return meta


def load_weights(path: Path, sha256: str | None = None, what: str = "checkpoint file",
                 recorded_in: str = "meta.json") -> dict[str, torch.Tensor]:
    """Load a safetensors file with a one-line error for missing/truncated files, and
    for contents whose sha256 is not ``sha256`` (when given; ``recorded_in`` names where it was recorded)."""
    if not path.exists():
        raise StraightflowError(f"{what} {path} is missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise StraightflowError(f"{what} {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None
    if sha256 is not None and sha256_file(path) != sha256:
        raise StraightflowError(f"{what} {path} is corrupt: its sha256 differs from the one recorded in {recorded_in} "
                                "when it was saved")
    return state


def load_checkpoint_weights(ckpt: Path, name: str) -> dict[str, torch.Tensor]:
    """``ckpt/name`` (``model.safetensors`` or ``ema.safetensors``), checked against the sha256 in
    the checkpoint's meta.json; checkpoints saved before checksums were recorded load unchecked."""
    recorded = read_meta(ckpt).get("sha256")
    return load_weights(ckpt / name, recorded.get(name) if isinstance(recorded, dict) else None)


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool = True) -> None:
    """Load weights, turning key/shape mismatches into a one-line error."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if (strict and (missing or unexpected)) or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"shape mismatch {wrong[0]}")
        raise StraightflowError(f"checkpoint {path} does not match this run's model: {'; '.join(parts)}")
    module.load_state_dict(state, strict=strict)


def load_train_state(ckpt: Path) -> dict:
    path = ckpt / "state.pt"
    if not path.exists():
        raise StraightflowError(f"checkpoint file {path} is missing")
    try:  # tensors and plain containers only: a checkpoint from elsewhere must not run code on load
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise StraightflowError(f"checkpoint file {path} holds objects other than tensors and plain containers; "
                                    "refusing to load it (unpickling them could run code)") from None
        raise StraightflowError(f"checkpoint file {path} is corrupt or truncated "
                                f"({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # torch raises several types on truncated zips
        raise StraightflowError(f"checkpoint file {path} is corrupt or truncated "
                                f"({str(exc).splitlines()[0]})") from None


# ---------------------------------------------------------------- exported models
def is_export(folder: Path) -> bool:
    """Whether ``folder`` looks like an exported model (a ``config.json``, no run's ``config.yaml``)."""
    folder = Path(folder)
    return (folder / EXPORT_CONFIG).is_file() and not (folder / "config.yaml").exists()


def check_export_config(config, folder: Path) -> dict:
    """``config`` (an export's parsed ``config.json``) checked for the keys loading needs; a one-line error
    otherwise."""
    where = f"{Path(folder) / EXPORT_CONFIG}"
    if not isinstance(config, dict):
        raise StraightflowError(f"{where} is not a JSON object")
    if config.get("format") != EXPORT_FORMAT:
        raise StraightflowError(f"{where} is not a straightflow export (its format is {config.get('format')!r}, not "
                                f"{EXPORT_FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StraightflowError(f"{where} has format_version {version!r}; expected a positive integer")
    if version > EXPORT_VERSION:
        raise StraightflowError(f"{where} has format_version {version}; this straightflow reads {EXPORT_VERSION} and "
                                "older: upgrade straightflow to load it")
    for key in ("train_config", "sampling", "weights"):
        if not isinstance(config.get(key), dict):
            raise StraightflowError(f"{where} has no {key!r} mapping")
    weights = config["weights"]
    if weights.get("file") != EXPORT_WEIGHTS or not isinstance(weights.get("sha256"), str):
        raise StraightflowError(f"{where}: 'weights' must name {EXPORT_WEIGHTS} and its sha256")
    step = config.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise StraightflowError(f"{where} has step {step!r}; expected a non-negative integer")
    return config


def read_export_config(folder: Path) -> dict:
    """An exported model's ``config.json``, parsed and checked (:func:`check_export_config`)."""
    path = Path(folder) / EXPORT_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise StraightflowError(f"{folder} is not an exported model: {EXPORT_CONFIG} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StraightflowError(f"{path} is corrupt: {str(exc).splitlines()[0]}") from None
    return check_export_config(config, folder)


def load_export_weights(folder: Path, config: dict) -> dict[str, torch.Tensor]:
    """The weights of an exported model, checked against the sha256 in its ``config.json``."""
    return load_weights(Path(folder) / EXPORT_WEIGHTS, config["weights"]["sha256"], what="exported weights file",
                        recorded_in=EXPORT_CONFIG)
