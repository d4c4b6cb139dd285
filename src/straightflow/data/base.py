"""The data-source contract every dataset implements.

A :class:`DataSource` hands out training batches drawn with a caller-owned
``torch.Generator`` (so a run can be resumed bit-for-bit) and fixed reference
samples for evaluation. Models see *normalised* data; ``denormalize`` maps
samples back to the user's units before they are written or scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import torch


def seeded_subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """All rows of ``x`` when ``n`` covers them, else ``n`` rows drawn without replacement by ``seed``."""
    if n >= x.shape[0]:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.to(x.device)]


@dataclass(frozen=True)
class DataOptions:
    """How a data spec is turned into a source: split, image size, torchvision options.

    Built from a :class:`~straightflow.config.TrainConfig`, a teacher's saved
    config (a dict) or keywords; fields it does not know are ignored there, so
    one definition of the defaults serves every caller.
    """

    heldout_fraction: float = 0.2  #: fraction of a user file / folder held out for evaluation
    split_seed: int = 0  #: seed of that train / held-out split
    image_size: int = 0  #: resize images to this size (0 = keep)
    data_root: str = ""  #: folder of torchvision datasets (mnist, cifar10)
    download: bool = False  #: let torchvision download mnist / cifar10 into ``data_root``
    hflip: bool = False  #: random horizontal flips of training images

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
    name: str
    #: shape of one sample, e.g. (2,) or (1, 8, 8)
    shape: tuple[int, ...]
    #: "vector" or "image"
    kind: str = "vector"


    @abstractmethod
    def sample_train(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` training samples (normalised, float32), drawn with ``generator`` (on its device, or where the data lives)."""

    @abstractmethod
    def reference(self, n: int, seed: int = 0) -> torch.Tensor:
        """Held-out samples in data units: fresh draws or the held-out split."""

    @abstractmethod
    def floor_reference(self, n: int, seed: int = 0) -> torch.Tensor:
        """A second sample of the data, independent of :meth:`reference`, for the
        two-sample floor of a metric (data units)."""

    def to(self, device) -> "DataSource":
        """Move in-memory training data to ``device`` (no-op for generated data)."""
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def describe(self) -> str:
        return f"{self.name} ({self.kind}, shape {tuple(self.shape)})"
