"""Checkpoints: weights in safetensors plus optimizer/EMA/step/RNG state.

Layout of a run directory::

    RUNDIR/config.yaml            resolved config
    RUNDIR/stats.jsonl            one JSON object per logged step
    RUNDIR/checkpoints/step-000100/{model,ema}.safetensors, state.pt, meta.json

Each checkpoint is written to a temporary folder and renamed into place in one
``os.replace``, so a crash mid-write never leaves a half checkpoint under a
final name and never touches the last good one.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import StraightflowError

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{6,})$")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(run_dir: Path, step: int, model_state: dict, ema_state: dict, train_state: dict, meta: dict, keep: int) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:06d}"
    tmp = ckpt_root / f".tmp-step-{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
    save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
    torch.save(train_state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "format": FORMAT_VERSION}, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # re-saving the same step (e.g. after resume): swap atomically-ish
        old = ckpt_root / f".old-step-{step:06d}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    for stale in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_meta(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StraightflowError(f"checkpoint {ckpt} is corrupt or incomplete (meta.json: {exc})") from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file with a one-line error for missing/truncated files."""
    if not path.exists():
        raise StraightflowError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise StraightflowError(f"checkpoint file {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool = True) -> None:
    """Load weights, turning key/shape mismatches into a one-line error."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
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
        raise StraightflowError(f"checkpoint file {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # torch raises several types on truncated zips
        raise StraightflowError(f"checkpoint file {path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None
