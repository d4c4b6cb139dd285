"""The data-source contract every dataset implements.

A :class:`DataSource` hands out training batches drawn with a caller-owned
``torch.Generator`` (so a run can be resumed bit-for-bit) and fixed reference
samples for evaluation. Models see *normalised* data; ``denormalize`` maps
samples back to the user's units before they are written or scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


def seeded_subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """All rows of ``x`` when ``n`` covers them, else ``n`` rows drawn without replacement by ``seed``."""
    if n >= x.shape[0]:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.to(x.device)]


class DataSource(ABC):
    name: str
    #: shape of one sample, e.g. (2,) or (1, 8, 8)
    shape: tuple[int, ...]
    #: "vector" or "image"
    kind: str = "vector"

    @property
    def dim(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @abstractmethod
    def sample_train(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` training samples (normalised, float32, on the CPU)."""

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
