"""Data sources: built-in 2D sets, point clouds, images, teacher pairs.

Every source implements :class:`DataSource` (training batches drawn with a
caller-owned generator, fixed held-out references, normalisation). ``load_data``
resolves a ``--data`` spec through the static table :data:`NAMED_SOURCES` and
the file loaders; heavy dependencies (torchvision) are imported only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StraightflowError
from .base import DataOptions, DataSource, seeded_subset
from .images import ImageSource, image_path_loader, load_cifar10, load_digits_source, load_mnist
from .pointcloud import PointCloud
from .stored import StoredSource
from .toy2d import BUILTIN_2D, Toy2D

#: named datasets beyond the 2D sets: name -> loader(DataOptions)
NAMED_SOURCES: dict[str, Callable[[DataOptions], DataSource]] = {
    "digits": load_digits_source,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
}


def builtin_names() -> list[str]:
    return sorted(list(BUILTIN_2D) + list(NAMED_SOURCES))


def load_data(spec: str, options=None, require_labels: bool = False) -> DataSource:
    """Resolve ``--data NAME|PATH`` into a :class:`DataSource`.

    ``options`` is a :class:`DataOptions`, or anything :meth:`DataOptions.of`
    reads (a TrainConfig, a dict of config fields); None takes the defaults.
    ``require_labels`` (conditional training): a source without class labels
    is an error, and so is an image folder that is not one subfolder per class.
    """
    options = DataOptions.of(options)
    source = _resolve(spec, options, require_labels)
    if options.label_column and not isinstance(source, PointCloud):
        raise StraightflowError(f"label_column applies to point-cloud files (.csv/.npy); {spec} is {source.kind} data with its own labels, if any")
    if require_labels and not source.num_classes:
        if isinstance(source, PointCloud):
            raise StraightflowError(f"{source.name} has no class labels: name the column that holds them with label_column (a 0-based index or a CSV header name)")
        raise source._no_labels()
    return source


def _resolve(spec: str, options: DataOptions, require_labels: bool) -> DataSource:
    if spec in BUILTIN_2D:
        return Toy2D(spec)
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec](options)
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".csv", ".txt") or path.is_dir():
        if not path.exists():
            raise StraightflowError(f"data path {path} does not exist")
        images = image_path_loader(path, options, require_labels=require_labels)
        if images is not None:
            return images
        return PointCloud(path, heldout_fraction=options.heldout_fraction, split_seed=options.split_seed, label_column=options.label_column)
    raise StraightflowError(f"unknown data {spec!r}: use one of {', '.join(builtin_names())}, or a .npy/.csv file or an image folder")


__all__ = ["DataOptions", "DataSource", "ImageSource", "PointCloud", "StoredSource", "Toy2D", "BUILTIN_2D", "NAMED_SOURCES", "load_data", "builtin_names", "seeded_subset"]
