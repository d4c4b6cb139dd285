"""A user's own map-style ``torch.utils.data.Dataset`` as training data (``sf.train(dataset=...)``).

Item ``i`` is ``x`` or ``(x, y)``: ``x`` a tensor or array of one fixed shape, ``y`` an int class
(used when the dataset has a ``classes`` attribute, a list of class names, as torchvision's
``ImageFolder`` does; ``targets``, when present, gives p(y) without reading the items). The
dataset is split into train / held-out rows like a file (``--heldout-fraction``,
``--split-seed``) and streamed by default (``docs/data.md``). Kinds (``--data-kind``; auto:
C x H x W items are images, D items vectors): images must lie in [-1, 1] and are not rescaled;
vectors and latents are standardised per feature / channel with the mean and std of a seeded
subset of at most :data:`STATS_ITEMS` training items.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import StraightflowError
from .base import DataOptions, split_rows, subset_index
from .stream import ItemSource, resolve_loader

#: training items read to estimate the per-channel mean and std of vector / latent datasets
STATS_ITEMS = 10_000


def _as_tensor(value, what: str) -> torch.Tensor:
    try:
        x = value if torch.is_tensor(value) else torch.from_numpy(np.asarray(value))
    except Exception as exc:
        raise StraightflowError(f"{what} is a {type(value).__name__}, not a tensor or array ({exc})") from None
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise StraightflowError(f"{what} has dtype {x.dtype}; items must be numbers")
    return x.detach().float().cpu()


def _split_item(item, i: int):
    if isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise StraightflowError(f"dataset item {i} is a {type(item).__name__} of {len(item)} values; items are "
                                    "x or (x, y)")
        return item[0], item[1]
    return item, None


class DatasetRows:
    """Rows of a user Dataset: each read calls ``dataset[i]`` for its indices (in DataLoader workers when streamed)."""

    def __init__(self, dataset, shape: tuple[int, ...], num_classes: int = 0):
        self.dataset, self.shape, self.num_classes = dataset, tuple(shape), int(num_classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, indices):
        xs, ys = [], []
        for i in np.asarray(indices, dtype=np.int64).tolist():
            try:
                item = self.dataset[i]
            except StraightflowError:
                raise
            except Exception as exc:
                text = str(exc).strip().splitlines()
                raise StraightflowError(f"dataset item {i} could not be read: {type(exc).__name__}: "
                                        f"{text[0] if text else ''}") from None
            x, y = _split_item(item, i)
            x = _as_tensor(x, f"dataset item {i}")
            if tuple(x.shape) != self.shape:
                raise StraightflowError(f"dataset item {i} has shape {tuple(x.shape)} but item 0 has {self.shape}; "
                                        "every item must have one shape")
            if not bool(torch.isfinite(x).all()):
                raise StraightflowError(f"dataset item {i} holds non-finite values (NaN or inf)")
            xs.append(x)
            if self.num_classes:
                label = int(y) if y is not None else -1
                if not 0 <= label < self.num_classes:
                    raise StraightflowError(f"dataset item {i} has label {y!r}; labels must be integers "
                                            f"0..{self.num_classes - 1} (one per name in dataset.classes)")
                ys.append(label)
        x = torch.stack(xs) if xs else torch.empty(0, *self.shape)
        return x, (torch.tensor(ys, dtype=torch.int64) if self.num_classes else None)


def dataset_source(dataset, options: DataOptions = DataOptions(), require_labels: bool = False) -> ItemSource:
    """A user's map-style Dataset as a data source (see the module docstring)."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise StraightflowError("dataset= must be a map-style torch.utils.data.Dataset (with __len__ and "
                                f"__getitem__), got {type(dataset).__name__}")
    n = len(dataset)
    if n == 0:
        raise StraightflowError(f"dataset {type(dataset).__name__} is empty")
    try:
        x0, y0 = _split_item(dataset[0], 0)
    except StraightflowError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise StraightflowError(f"dataset item 0 could not be read: {type(exc).__name__}: "
                                f"{text[0] if text else ''}") from None
    x0 = _as_tensor(x0, "dataset item 0")
    shape = tuple(x0.shape)
    kind = options.data_kind
    if kind == "auto":
        kind = {3: "image", 1: "vector"}.get(len(shape), "")
        if not kind:
            raise StraightflowError(f"dataset items have shape {shape}: give C x H x W images or D vectors, or set "
                                    "data_kind='latent'")
    if kind == "image":
        if len(shape) != 3:
            raise StraightflowError(f"data_kind image needs C x H x W items; dataset items have shape {shape}")
        if float(x0.min()) < -1 or float(x0.max()) > 1:
            raise StraightflowError(f"dataset item 0 has values in [{float(x0.min()):.4g}, {float(x0.max()):.4g}]: "
                                    "image items must lie in [-1, 1] (or pass data_kind='latent' to standardise them)")
    elif kind == "vector" and len(shape) != 1:
        raise StraightflowError(f"data_kind vector needs D-vector items; dataset items have shape {shape}")
    elif kind == "latent" and len(shape) not in (1, 3):
        raise StraightflowError(f"data_kind latent needs C x H x W or D items; dataset items have shape {shape}")
    classes = tuple(str(c) for c in (getattr(dataset, "classes", None) or ()))
    if require_labels:
        if y0 is None:
            raise StraightflowError(f"dataset {type(dataset).__name__} has no class labels: its items must be (x, y) "
                                    "for conditional training")
        if len(classes) < 2:
            raise StraightflowError(f"dataset {type(dataset).__name__} returns (x, y) but has no 'classes' attribute "
                                    "naming at least 2 classes; set dataset.classes = [name of class 0, name of "
                                    "class 1, ...]")
    if y0 is None:
        classes = ()
    rows = DatasetRows(dataset, shape, len(classes))
    tr, ho = split_rows(n, options.heldout_fraction, options.split_seed, f"dataset {type(dataset).__name__}",
                        unit="items")
    shift = scale = None
    if kind in ("vector", "latent"):
        pick = subset_index(tr.shape[0], STATS_ITEMS, options.split_seed)
        x = rows.read(tr if pick is None else tr[pick.numpy()])[0]
        x = x.transpose(0, 1).reshape(shape[0], -1).double()
        shift, std = x.mean(dim=1).float(), x.std(dim=1).float()
        scale = torch.where(std > 0, std, torch.ones_like(std))
    targets = getattr(dataset, "targets", None)
    train_labels = None
    if classes and targets is not None and len(targets) == n:
        train_labels = np.asarray(targets, dtype=np.int64)[tr]
    fingerprint = hashlib.sha1(x0.numpy().tobytes()).hexdigest()[:10]
    name = type(dataset).__name__
    loader = "stream" if options.loader == "auto" else resolve_loader(options.loader, 0, name)
    return ItemSource(name, kind, shape, rows, tr, ho, loader=loader,
                      key=f"dataset-{name}-{n}-{fingerprint}-s{options.split_seed}-h{options.heldout_fraction:g}",
                      shift=shift, scale=scale, class_names=classes, train_labels=train_labels)
