"""Device selection: CUDA when present, else CPU; always overridable."""

from __future__ import annotations

import torch

from .errors import StraightflowError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise StraightflowError(f"--device {name} was asked for but CUDA is not available on this machine")
        return torch.device(name)
    raise StraightflowError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
