"""A data source rebuilt from its saved sampling state (``docs/portable.md``).

Every run saves :meth:`DataSource.sampling_state` with its checkpoints, and an
exported model in its ``config.json``: name, kind, shape, class names, class
frequencies and the normalisation ``model = (data - shift) / scale``. :class:`StoredSource` answers
everything sampling needs from that state alone, so a model samples with its
training data gone and an image folder is never decoded to sample.

What needs the data itself (training batches, held-out references, the class
frequencies of a model saved without them, a source's own extras such as an image set's training images)
comes from the real source, loaded on first use by ``loader`` and checked
against the saved state (shape, kind, class names, normalisation); without a
loader, or when loading fails, it is a one-line error that says so.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import StraightflowError
from .base import DataSource


def _float_list(value, what: str) -> list[float]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise StraightflowError(f"{what} must be a non-empty list of numbers")
    if not all(math.isfinite(v) for v in value):
        raise StraightflowError(f"{what} holds non-finite numbers")
    return [float(v) for v in value]


class StoredSource(DataSource):
    """The data as far as sampling needs it, from a saved ``sampling_state`` dict.

    ``loader``: a callable returning the real :class:`DataSource`, called once, when
    something needs the data (``reference``, ``sample_train``, ...); ``origin``
    names the run or export in error messages.
    """

    def __init__(self, state: dict, loader: Callable[[], DataSource] | None = None, origin: str = "this model"):
        if not isinstance(state, dict):
            raise StraightflowError(f"the saved sampling state of {origin} is not a mapping")
        self.origin = origin
        where = f"the saved sampling state of {origin}"
        name, kind, shape = state.get("name"), state.get("kind"), state.get("shape")
        if not isinstance(name, str) or not name:
            raise StraightflowError(f"{where} has no data name")
        if not isinstance(kind, str) or not kind:
            raise StraightflowError(f"{where} has no data kind")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise StraightflowError(f"{where} has shape {shape!r}; expected a list of positive integers")
        names = state.get("class_names", [])
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise StraightflowError(f"{where} has class names {names!r}; expected a list of strings")
        self.name, self.kind, self.shape, self.class_names = name, kind, tuple(shape), tuple(names)
        self._class_probs: torch.Tensor | None = None
        if state.get("class_probs") is not None:  # saved since the sampling state holds them; older runs ask the data
            probs = _float_list(state["class_probs"], f"{where}: class_probs")
            if len(probs) != len(names) or min(probs) < 0 or sum(probs) <= 0:
                raise StraightflowError(f"{where}: class_probs must hold {len(names)} non-negative weights, one per "
                                        "class, not all zero")
            self._class_probs = torch.tensor(probs, dtype=torch.float64) / sum(probs)
        self._norm = state.get("normalization")
        self.shift: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        if self._norm is not None:
            if not isinstance(self._norm, dict):
                raise StraightflowError(f"{where} has a normalisation that is not a mapping")
            shift = _float_list(self._norm.get("shift"), f"{where}: normalization.shift")
            scale = _float_list(self._norm.get("scale"), f"{where}: normalization.scale")
            if any(s == 0 for s in scale):
                raise StraightflowError(f"{where}: normalization.scale holds a zero")
            self.shift, self.scale = self._broadcast(shift, where), self._broadcast(scale, where)
        self._loader = loader
        self._source: DataSource | None = None
        self._failure: str | None = None
        self._device = None

    def _broadcast(self, values: list[float], where: str) -> torch.Tensor:
        """One entry per feature (the sample's shape) or per channel (the first axis, broadcast over the rest)."""
        t = torch.tensor(values, dtype=torch.float32)
        numel = math.prod(self.shape)
        if len(values) == numel:
            return t.reshape(self.shape)
        if len(values) == self.shape[0]:
            return t.reshape(self.shape[0], *([1] * (len(self.shape) - 1)))
        needs = f"{numel}" if numel == self.shape[0] else f"{self.shape[0]} (per channel) or {numel} (per feature)"
        raise StraightflowError(f"{where}: the normalisation has {len(values)} entries; data of shape {self.shape} "
                                f"needs {needs}")

    # ------------------------------------------------------------ what sampling needs
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            return x
        return (x - self.shift.to(x.device)) / self.scale.to(x.device)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            return x
        return x * self.scale.to(x.device) + self.shift.to(x.device)

    def normalization_state(self) -> dict | None:
        return None if self._norm is None else {"shift": list(self._norm["shift"]), "scale": list(self._norm["scale"])}

    def describe(self) -> str:
        return f"{self.name} ({self.kind}, shape {tuple(self.shape)}; from the saved sampling state)"

    # ------------------------------------------------------------ the real data, on first use
    @property
    def loaded(self) -> bool:
        """Whether the real data has been loaded."""
        return self._source is not None

    def available(self) -> bool:
        """Whether the real data can be loaded (loads it if so)."""
        try:
            self.source("the data")
        except StraightflowError:
            return False
        return True

    def source(self, what: str) -> DataSource:
        """The real data source (loaded once and checked against the saved state); ``what`` says
        what needs it in the error raised when it cannot be loaded."""
        if self._source is not None:
            return self._source
        if self._failure is None:
            if self._loader is None:
                self._failure = "no way to load it was given"
            else:
                try:
                    source = self._loader()
                except StraightflowError as exc:
                    self._failure = str(exc)
                else:
                    self._check(source)
                    self._source = source if self._device is None else source.to(self._device)
                    return self._source
        raise StraightflowError(f"this model was loaded without its training data: {self.name} could not be loaded "
                                f"({self._failure}); it is needed for {what}; sampling works without it")

    def _check(self, source: DataSource) -> None:
        """The data found now must be the data the model was trained on."""
        if tuple(source.shape) != self.shape or source.kind != self.kind:
            raise StraightflowError(f"{self.origin} was trained on {self.kind} data of shape {self.shape} but "
                                    f"{self.name} now holds {source.kind} data of shape {tuple(source.shape)}")
        if tuple(source.class_names) != self.class_names:
            raise StraightflowError(f"{self.origin} was trained on classes {list(self.class_names)} but {self.name} "
                                    f"now has {list(source.class_names)}")
        now = source.normalization_state()
        if (now is None) != (self._norm is None):
            raise StraightflowError(f"{self.name} has changed since {self.origin} was trained: its normalisation "
                                    "differs from the saved one")
        if now is not None:
            same = all(len(now[k]) == len(self._norm[k])
                       and torch.allclose(torch.tensor(now[k], dtype=torch.float64),
                                          torch.tensor(self._norm[k], dtype=torch.float64), rtol=1e-5, atol=1e-7)
                       for k in ("shift", "scale"))
            if not same:
                raise StraightflowError(f"{self.name} has changed since {self.origin} was trained: its normalisation "
                                        "(shift/scale) differs from the saved one")

    def to(self, device) -> "StoredSource":
        self._device = device
        if self._source is not None:
            self._source = self._source.to(device)
        return self

    def sample_train(self, n, generator):
        return self.source("training batches").sample_train(n, generator)

    def reference(self, n, seed=0):
        return self.source("held-out references").reference(n, seed)

    def floor_reference(self, n, seed=0):
        return self.source("two-sample floors").floor_reference(n, seed)

    def validation(self, n, seed=0):
        return self.source("the validation split").validation(n, seed)

    def class_probs(self) -> torch.Tensor:
        if self._class_probs is not None:
            return self._class_probs.clone()
        return self.source("the class frequencies").class_probs()

    def known_class_probs(self) -> torch.Tensor | None:
        if self._class_probs is None and not self.available():
            return None
        return self.class_probs()

    def __getattr__(self, name: str):
        """A source's own extras (e.g. an image set's ``train_images`` or ``key``) come from the real data."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.source(f"the data's {name!r}"), name)
