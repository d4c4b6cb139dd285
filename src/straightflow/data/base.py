"""The data-source contract every dataset implements.

A :class:`DataSource` hands out training batches drawn with a caller-owned
``torch.Generator`` (so a run can be resumed bit-for-bit) and fixed reference
samples for evaluation. Models see *normalised* data; ``denormalize`` maps
samples back to the user's units before they are written or scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np
import torch


def subset_index(count: int, n: int, seed: int) -> torch.Tensor | None:
    """None (all rows) when ``n`` covers ``count`` rows, else ``n`` row indices drawn without replacement by
    ``seed``."""
    if n >= count:
        return None
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n]


def split_rows(n: int, heldout_fraction: float, split_seed: int, what: str,
               unit: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of ``n`` rows: a permutation by ``split_seed``, the first
    ``heldout_fraction`` of it held out (at least 1, at most n - 1)."""
    if n < 10:
        from ..errors import StraightflowError

        raise StraightflowError(f"{what} has only {n} {unit}; need at least 10 to split train/held-out")
    perm = np.random.default_rng(split_seed).permutation(n)
    n_held = min(n - 1, max(1, int(round(heldout_fraction * n))))
    return perm[n_held:], perm[:n_held]


def seeded_subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """All rows of ``x`` when ``n`` covers them, else ``n`` rows drawn without replacement by ``seed``."""
    idx = subset_index(x.shape[0], n, seed)
    return x if idx is None else x[idx.to(x.device)]


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize N x C x H x W images in [-1, 1] to size x size (antialiased bilinear); size <= 0 keeps them."""
    if size <= 0 or tuple(x.shape[-2:]) == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False).clamp(-1, 1)


@dataclass(frozen=True)
class DataOptions:
    """How a data spec is turned into a source: split, image size, torchvision options.

    Built from a :class:`~straightflow.config.TrainConfig`, a teacher's saved
    config (a dict) or keywords; fields it does not know are ignored there, so
    one definition of the defaults serves every caller.
    """

    heldout_fraction: float = 0.2  #: fraction of a user file / folder held out for evaluation
    split_seed: int = 0  #: seed of that train / held-out split
    validation_fraction: float = 0.0  #: fraction of the training split carved out for model selection (0 = none)
    image_size: int = 0  #: resize images to this size (0 = keep)
    data_root: str = ""  #: folder of torchvision datasets (mnist, cifar10)
    download: bool = False  #: let torchvision download mnist / cifar10 into ``data_root``
    hflip: bool = False  #: random horizontal flips of training images
    label_column: str = ""  #: point clouds: the column holding class labels (0-based index or CSV header name)
    loader: str = "auto"  #: auto | memory | stream: how training reads the data (``docs/data.md``)
    data_kind: str = "auto"  #: auto | image | vector | latent: how a file or folder is read (``docs/data.md``)

    @classmethod
    def of(cls, source=None) -> "DataOptions":
        """The options found in ``source`` (a config object, a dict or None)."""
        if source is None:
            return cls()
        if isinstance(source, DataOptions):
            return source
        get = source.get if isinstance(source, dict) else (lambda k, d: getattr(source, k, d))
        missing = object()
        values = {f.name: get(f.name, missing) for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if v is not missing})


class DataSource(ABC):
    """A dataset. Every draw is a pair ``(x, y)``: ``y`` holds the int64 class indices ``0 .. K-1`` of
    the rows of ``x`` when the source is labelled (``class_names`` not empty), else None
    (``docs/conditional.md``)."""

    name: str
    #: shape of one sample, e.g. (2,) or (1, 8, 8)
    shape: tuple[int, ...]
    #: "vector" or "image"
    kind: str = "vector"
    #: names of the classes, index = label; empty for unlabelled data
    class_names: tuple[str, ...] = ()
    #: how the trainer reads it (``docs/data.md``): "memory" (:meth:`sample_train` each step) or
    #: "stream" (a DataLoader over :meth:`train_dataset`)
    loader: str = "memory"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_probs(self) -> torch.Tensor:
        """p(y) of the training data (uniform unless a source knows better)."""
        return torch.full((self.num_classes,), 1.0 / max(1, self.num_classes))

    def _no_labels(self):
        from ..errors import StraightflowError

        return StraightflowError(f"data {self.name} has no class labels (see docs/conditional.md for the sources "
                                 "that do)")

    @abstractmethod
    def sample_train(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, y)``: ``n`` training samples (normalised, float32), drawn with ``generator`` (on its device, or where
        the data lives), and their labels (None for unlabelled data)."""

    @abstractmethod
    def reference(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, y)``: held-out samples in data units (fresh draws or the held-out split) and their labels (or None)."""

    @abstractmethod
    def floor_reference(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, y)``: a second sample of the data, independent of :meth:`reference`, for the
        two-sample floor of a metric (data units), and its labels (or None)."""

    def with_validation(self, fraction: float, seed: int) -> "DataSource":
        """This data with ``fraction`` of its training rows (chosen by ``seed``) carved out as a validation
        split: the returned source trains on the rest and serves the carved rows by :meth:`validation`;
        :meth:`reference` stays the held-out split, so nothing judged on the validation split is ever in
        what ``eval`` reports on. Generated data draws its validation samples from a stream of their own."""
        from ..errors import StraightflowError

        raise StraightflowError(f"data {self.name} cannot carve a validation split (validation_fraction)")

    def validation(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, y)``: validation samples in data units (all of the carved split, or a seeded subset of ``n``):
        what model selection is judged on (:meth:`with_validation`), and their labels (or None)."""
        from ..errors import StraightflowError

        raise StraightflowError(f"data {self.name} has no validation split: load it with validation_fraction > 0")

    def train_dataset(self, labels: bool = False):
        """The training rows in model units as a map-style ``torch.utils.data.Dataset`` whose
        ``__getitems__`` returns a batch ``(x, y)`` (``y`` None unless ``labels``), for ``--loader stream``."""
        from ..errors import StraightflowError

        raise StraightflowError(f"data {self.name} cannot be streamed: use --loader memory")

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random augmentation of a streamed batch (model units), drawn with the rank's ``generator``."""
        return x

    def to(self, device) -> "DataSource":
        """Move in-memory training data to ``device`` (no-op for generated data)."""
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def describe(self) -> str:
        return f"{self.name} ({self.kind}, shape {tuple(self.shape)})"

    def normalization_state(self) -> dict | None:
        """The affine map between data units and model units as JSON-able lists:
        ``{"shift": [...], "scale": [...]}`` with ``model = (data - shift) / scale``, one
        entry per feature (vectors) or per channel (images, latents); None = identity."""
        return None

    def sampling_state(self) -> dict:
        """Everything sampling needs without the data (saved with every run, ``docs/portable.md``):
        name, kind, shape, class names, the training class frequencies (labelled data only:
        a conditional export draws its classes from them) and the normalisation (JSON-able)."""
        state = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "class_names": list(self.class_names),
            "normalization": self.normalization_state(),
        }
        probs = self.known_class_probs() if self.class_names else None
        if probs is not None:
            state["class_probs"] = [float(p) for p in probs]
        return state

    def known_class_probs(self) -> torch.Tensor | None:
        """:meth:`class_probs` where they can be had without failing (a stored source whose data is gone
        and that was saved without them has none)."""
        return self.class_probs()
