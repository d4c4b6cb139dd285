"""Datasets: built-in 2D sets and user point clouds (images: see ``images``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StraightflowError
from .base import DataSource
from .pointcloud import PointCloud
from .toy2d import BUILTIN_2D, Toy2D

#: name -> factory(config) for named datasets beyond the 2D sets (images register here)
NAMED_SOURCES: dict[str, Callable[..., DataSource]] = {}


def builtin_names() -> list[str]:
    return sorted(list(BUILTIN_2D) + list(NAMED_SOURCES))


def load_data(spec: str, cfg=None) -> DataSource:
    """Resolve ``--data NAME|PATH`` into a :class:`DataSource`.

    ``cfg`` (a TrainConfig) supplies split and image options where they apply.
    """
    heldout_fraction = getattr(cfg, "heldout_fraction", 0.2)
    split_seed = getattr(cfg, "split_seed", 0)
    if spec in BUILTIN_2D:
        return Toy2D(spec)
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec](cfg)
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".csv", ".txt") or path.is_dir():
        if not path.exists():
            raise StraightflowError(f"data path {path} does not exist")
        from . import _file_dispatch

        return _file_dispatch.load_path(path, cfg, heldout_fraction, split_seed)
    raise StraightflowError(f"unknown data {spec!r}: use one of {', '.join(builtin_names())}, or a .npy/.csv file")


__all__ = ["DataSource", "PointCloud", "Toy2D", "BUILTIN_2D", "NAMED_SOURCES", "load_data", "builtin_names"]
