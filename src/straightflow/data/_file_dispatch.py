"""Pick the loader for a data path: point cloud, image array or image folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import StraightflowError
from .base import DataSource
from .pointcloud import PointCloud

#: Hook filled in by the image module: (path, cfg) -> DataSource or None if not images.
IMAGE_PATH_LOADERS: list = []


def load_path(path: Path, cfg, heldout_fraction: float, split_seed: int) -> DataSource:
    for loader in IMAGE_PATH_LOADERS:
        source = loader(path, cfg)
        if source is not None:
            return source
    if path.is_dir():
        raise StraightflowError(f"{path} is a folder but no image loader is available for it")
    return PointCloud(path, heldout_fraction=heldout_fraction, split_seed=split_seed)
