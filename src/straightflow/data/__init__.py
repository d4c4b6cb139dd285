"""Data sources: built-in 2D sets, point clouds, images, teacher pairs.

Every source implements :class:`DataSource` (training batches drawn with a
caller-owned generator, fixed held-out references, normalisation). ``load_data``
resolves a ``--data`` spec through the static table :data:`NAMED_SOURCES` and
the file loaders; heavy dependencies (torchvision) are imported only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import StraightflowError
from .arrays import load_latents
from .base import DataOptions, DataSource, seeded_subset
from .images import ImageSource, image_path_loader, load_cifar10, load_digits_source, load_mnist
from .pointcloud import PointCloud
from .stored import StoredSource
from .stream import LOADER_MODES, STREAM_AUTO_BYTES, BatchStream, EpochSampler, ItemSource, auto_workers, resolve_loader
from .toy2d import BUILTIN_2D, Toy2D
from .user import dataset_source

#: named datasets beyond the 2D sets: name -> loader(DataOptions)
NAMED_SOURCES: dict[str, Callable[[DataOptions], DataSource]] = {
    "digits": load_digits_source,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
}


def builtin_names() -> list[str]:
    return sorted(list(BUILTIN_2D) + list(NAMED_SOURCES))


#: ``--data-kind`` values (``docs/data.md``)
DATA_KINDS = ("auto", "image", "vector", "latent")

#: the ``--data`` value of a run trained on a user's Dataset (``sf.train(dataset=...)``)
CUSTOM_DATA = "custom"


def load_data(spec: str, options=None, require_labels: bool = False, dataset=None) -> DataSource:
    """Resolve ``--data NAME|PATH`` into a :class:`DataSource`.

    ``options`` is a :class:`DataOptions`, or anything :meth:`DataOptions.of`
    reads (a TrainConfig, a dict of config fields); None takes the defaults.
    ``require_labels`` (conditional training): a source without class labels
    is an error, and so is an image folder that is not one subfolder per class.
    ``dataset``: a user's map-style ``torch.utils.data.Dataset`` (``spec`` is then
    ``"custom"``). ``options.loader`` and ``options.data_kind``: ``docs/data.md``.
    """
    options = DataOptions.of(options)
    if options.data_kind not in DATA_KINDS:
        raise StraightflowError(f"unknown data_kind {options.data_kind!r}: use one of {', '.join(DATA_KINDS)}")
    if options.loader not in LOADER_MODES:
        raise StraightflowError(f"unknown loader {options.loader!r}: use one of {', '.join(LOADER_MODES)}")
    if dataset is not None:
        if spec not in (CUSTOM_DATA, "", None):
            raise StraightflowError(f"both data={spec!r} and dataset= given: pass one of them")
        return _carve_validation(dataset_source(dataset, options, require_labels), options)
    if spec == CUSTOM_DATA:
        raise StraightflowError("data 'custom' is a user's own Dataset: pass it again as dataset= (for a folder named "
                                "custom, write ./custom)")
    source = _resolve(spec, options, require_labels)
    if options.label_column and not isinstance(source, PointCloud):
        raise StraightflowError(f"label_column applies to point-cloud files (.csv/.npy); {spec} is {source.kind} data "
                                "with its own labels, if any")
    if require_labels and not source.num_classes:
        if isinstance(source, PointCloud):
            raise StraightflowError(f"{source.name} has no class labels: name the column that holds them with "
                                    "label_column (a 0-based index or a CSV header name)")
        raise source._no_labels()
    return _carve_validation(source, options)


def _carve_validation(source: DataSource, options: DataOptions) -> DataSource:
    """``source`` with its validation split carved out when ``options.validation_fraction`` > 0."""
    if options.validation_fraction <= 0:
        return source
    if not options.validation_fraction < 1:
        raise StraightflowError(f"validation_fraction must be in [0, 1), got {options.validation_fraction}")
    return source.with_validation(options.validation_fraction, options.split_seed)


def _kind_applies(spec: str, kind: str, allowed: tuple[str, ...], what: str) -> None:
    if kind not in ("auto", *allowed):
        raise StraightflowError(f"data_kind {kind} does not apply to {spec} ({what}); use "
                                f"{' or '.join(('auto', *allowed))}")


def _resolve(spec: str, options: DataOptions, require_labels: bool) -> DataSource:
    kind = options.data_kind
    if spec in BUILTIN_2D:
        _kind_applies(spec, kind, ("vector",), "a generated 2D set")
        if options.loader == "stream":
            raise StraightflowError(f"{spec} is generated afresh for every batch: there is nothing to stream (use "
                                    "--loader auto or memory)")
        return Toy2D(spec)
    if spec in NAMED_SOURCES:
        _kind_applies(spec, kind, ("image",), "an image set")
        return NAMED_SOURCES[spec](options)
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".csv", ".txt") or path.is_dir():
        if not path.exists():
            raise StraightflowError(f"data path {path} does not exist")
        if kind == "latent":
            if path.suffix.lower() != ".npy" or path.is_dir():
                raise StraightflowError(f"data_kind latent reads a .npy array (N x C x H x W or N x D); {path} is "
                                        "not one")
            return load_latents(path, options)
        if kind in ("auto", "image"):
            images = image_path_loader(path, options, require_labels=require_labels)
            if images is not None:
                return images
            if kind == "image":
                raise StraightflowError(f"data_kind image needs an image folder or a 3-/4-d .npy image array; {path} "
                                        "is neither")
        elif path.is_dir():
            raise StraightflowError(f"{path} is a folder (images); data_kind {kind} reads a .npy or .csv file")
        return _point_cloud(path, options)
    raise StraightflowError(f"unknown data {spec!r}: use one of {', '.join(builtin_names())}, or a .npy/.csv file or "
                            "an image folder")


def _point_cloud(path: Path, options: DataOptions) -> DataSource:
    """An N x D file: in memory (:class:`PointCloud`), or an unlabelled ``.npy`` streamed from its memory map."""
    if path.suffix.lower() == ".npy" and not options.label_column and options.loader != "memory":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            nbytes = (round(arr.shape[0] * (1 - options.heldout_fraction)) * int(np.prod(arr.shape[1:])) * 4
                      if arr.ndim == 2 else 0)
        except Exception:
            nbytes = 0  # PointCloud reports it
        if resolve_loader(options.loader, nbytes, str(path)) == "stream" and nbytes:
            return load_latents(path, options, kind="vector")
    source = PointCloud(path, heldout_fraction=options.heldout_fraction, split_seed=options.split_seed,
                        label_column=options.label_column)
    # a CSV or labelled file: in memory, streamed from there when asked
    source.loader = resolve_loader(options.loader, 0, str(path))
    return source


__all__ = ["DataOptions", "DataSource", "ImageSource", "ItemSource", "PointCloud", "StoredSource", "Toy2D",
           "BUILTIN_2D", "NAMED_SOURCES", "load_data", "builtin_names",
           "seeded_subset", "DATA_KINDS", "LOADER_MODES", "STREAM_AUTO_BYTES", "EpochSampler", "BatchStream",
           "auto_workers", "dataset_source", "load_latents", "CUSTOM_DATA"]
