"""Streaming training data: sources read row by row, an epoch sampler per rank, a DataLoader.

``--loader memory`` keeps the training set as one tensor on the training device and
draws each batch with the rank's generator (random rows, with replacement).
``--loader stream`` reads it through a :class:`torch.utils.data.DataLoader`
(:class:`BatchStream`): an :class:`EpochSampler` hands every rank its share of a seeded
permutation per epoch (like ``DistributedSampler``), worker processes read and decode
the rows, batches arrive pinned on CUDA. The sampler's state (epoch, position) goes into
every checkpoint, so ``--resume`` continues with the batches the uninterrupted run would
have drawn. ``auto`` streams when the training set would take more than
:data:`STREAM_AUTO_BYTES` as float32, and always for a user ``Dataset``
(``docs/data.md``).

:class:`ItemSource` is a :class:`DataSource` over a row reader (an image folder, a
memory-mapped ``.npy``, a user ``Dataset``): only the rows asked for are read, so held-out
references and floors are bounded by the ``n`` asked for.
"""

from __future__ import annotations

import copy
import math
import os
import signal
from typing import Protocol, Sequence

import numpy as np
import torch

from ..errors import StraightflowError
from ..noise import stream_generator
from .base import DataSource, split_rows, subset_index

#: ``--loader`` values
LOADER_MODES = ("auto", "memory", "stream")
#: ``auto`` streams a training set larger than this as float32 (128 MiB)
STREAM_AUTO_BYTES = 128 * 2**20
#: at most this many training images train the Fréchet module's classifier feature net of a streamed source
CLASSIFIER_MAX_IMAGES = 10_000


def resolve_loader(requested: str, nbytes: int, what: str) -> str:
    """``memory`` or ``stream`` for a training set of ``nbytes`` float32 bytes (``requested``: a :data:`LOADER_MODES`
    value)."""
    if requested not in LOADER_MODES:
        raise StraightflowError(f"unknown loader {requested!r}: use one of {', '.join(LOADER_MODES)}")
    if requested == "auto":
        return "stream" if nbytes > STREAM_AUTO_BYTES else "memory"
    return requested


def auto_workers(world_size: int = 1, rows: "Rows | None" = None) -> int:
    """``--workers -1``: one fewer than the CPUs this rank may use, at most 4 (0 on a single CPU).

    0 when ``rows`` are held in memory (:func:`rows_in_memory`): a batch is then one gather, cheaper in
    the training process than shipped from a worker, which would only take a core from training
    (measured on 2 cores: 0.90x-0.91x torchcfm's img/s with one worker, 0.95x-1.00x with none; README, Benchmark).
    """
    if rows is not None and rows_in_memory(rows):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus // max(1, world_size) - 1))


# ------------------------------------------------------------------ rows
class Rows(Protocol):
    """Reads rows of a dataset: ``read(indices) -> (x, y)``, x float32 (n, *shape) in data units,
    y int64 (n,) class labels or None. Must be picklable (DataLoader workers)."""

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def rows_in_memory(rows: "Rows") -> bool:
    """Whether reading ``rows`` is a gather from memory (no decoding, no disk): its ``in_memory`` attribute, default
    False."""
    return bool(getattr(rows, "in_memory", False))


class TensorRows:
    """Rows of an in-memory tensor (and its labels), e.g. an in-memory source streamed with ``--loader stream``."""

    in_memory = True

    def __init__(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        self.x, self.y = x, None if labels is None else labels.cpu()

    def __len__(self) -> int:
        return self.x.shape[0]

    def read(self, indices):
        i = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return self.x[i], (None if self.y is None else self.y[i])


class ConcatRows:
    """The rows of ``first`` followed by those of ``second`` (e.g. a train and a test array)."""

    def __init__(self, first: Rows, second: Rows):
        self.first, self.second = first, second
        self.in_memory = rows_in_memory(first) and rows_in_memory(second)

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def read(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self.first)
        x = y = None
        for mask, rows, offset in ((idx < n, self.first, 0), (idx >= n, self.second, n)):
            if not mask.any():
                continue
            part_x, part_y = rows.read(idx[mask] - offset)
            if x is None:
                x = part_x.new_empty((idx.shape[0], *part_x.shape[1:]))
                y = None if part_y is None else part_y.new_empty(idx.shape[0])
            m = torch.from_numpy(mask)
            x[m] = part_x
            if y is not None:
                y[m] = part_y
        return x, y


class _Failed:
    """A batch a worker could not read: its one-line message travels to the main process."""

    def __init__(self, message: str):
        self.message = message


def _failure(exc: BaseException) -> str:
    if isinstance(exc, StraightflowError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class TrainItems(torch.utils.data.Dataset):
    """The training rows of a source in model units: item i is ``(x, y)`` (``y`` None unless ``labels``).

    ``__getitems__`` reads a whole batch in one call (the DataLoader uses it), so a
    memory-mapped array is read with one fancy index and a tensor with one gather.
    """

    def __init__(self, rows: Rows, index: np.ndarray, shift: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, labels: bool = False):
        self.rows, self.index, self.shift, self.scale, self.labels = (rows, np.asarray(index, dtype=np.int64), shift,
                                                                      scale, labels)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def batch(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = self.rows.read(self.index[np.asarray(positions, dtype=np.int64)])
        if self.shift is not None:
            x = (x - self.shift) / self.scale
        if self.labels and y is None:
            raise StraightflowError("this data has no class labels")
        return x, (y if self.labels else None)

    def __getitems__(self, positions):
        try:
            return self.batch(positions)
        except Exception as exc:  # a worker cannot raise cleanly: hand the message to the main process
            return _Failed(_failure(exc))

    def __getitem__(self, i: int):
        x, y = self.batch([i])
        return x[0], (None if y is None else y[0])


def _collate(batch):
    return batch  # __getitems__ already returns the stacked batch (or a _Failed)


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C / SIGTERM reach the whole process group: the main process finishes its step and
    # checkpoints; its workers must keep serving until it shuts them down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ------------------------------------------------------------------ sampler
class EpochSampler:
    """Batches of row positions for one rank: a seeded permutation of all ``n`` rows per epoch
    (``noise`` stream ``epochs``, the same on every rank), padded by wrapping to a multiple of
    ``world_size`` and dealt out ``rank::world_size`` as ``DistributedSampler`` does; batches run
    across epoch boundaries. State: the epoch and this rank's position in it."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n < 1:
            raise StraightflowError("the training set is empty")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = (
            int(n), int(batch_size), int(seed), int(rank), int(world_size))
        self.epoch, self.position = 0, 0

    @property
    def shard_size(self) -> int:
        """Rows per rank and epoch."""
        return math.ceil(self.n / self.world_size)

    def shard(self, epoch: int) -> np.ndarray:
        """This rank's row positions in ``epoch``, in order."""
        perm = torch.randperm(self.n, generator=stream_generator("epochs", self.seed, epoch)).numpy()
        total = self.shard_size * self.world_size
        if total > self.n:
            perm = np.concatenate([perm, np.resize(perm, total - self.n)])
        return perm[self.rank:total:self.world_size]

    def __iter__(self):
        """Batches from the current state on (the state itself moves only with :meth:`advance`)."""
        epoch, position = self.epoch, self.position
        shard = self.shard(epoch)
        while True:
            parts, need = [], self.batch_size
            while need:
                take = shard[position:position + need]
                parts.append(take)
                need -= take.shape[0]
                position += take.shape[0]
                if position == shard.shape[0]:
                    epoch, position = epoch + 1, 0
                    shard = self.shard(epoch)
            yield np.concatenate(parts).tolist()

    def advance(self) -> None:
        """One batch was consumed."""
        self.position += self.batch_size
        self.epoch += self.position // self.shard_size
        self.position %= self.shard_size

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "n": self.n, "batch_size": self.batch_size,
                "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> str | None:
        """Continue from ``state``; returns a warning where the data or the ranks changed since it was saved."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if int(state["n"]) != self.n:
            self.position = 0
            return (f"warning: the training set has {self.n} rows but had {state['n']} when the checkpoint "
                    f"was written: the data changed; batches restart at epoch {self.epoch}")
        if int(state["world_size"]) != self.world_size or int(state["batch_size"]) != self.batch_size:
            consumed = self.position * int(state["world_size"])  # rows of this epoch all ranks had read
            self.position = min(consumed // self.world_size, self.shard_size - 1)
            return (f"warning: the checkpoint read batches on {state['world_size']} ranks, resuming on "
                    f"{self.world_size}: epoch {self.epoch} continues approximately")
        return None


class BatchStream:
    """Training batches from a DataLoader over ``dataset`` (a :class:`TrainItems`) in ``sampler`` order,
    on ``device``: ``next()`` returns ``(x, y)``; the sampler advances only for the batches taken,
    so its state (:meth:`state_dict`) is what a checkpoint of the step needs, whatever was prefetched."""

    def __init__(self, dataset: TrainItems, sampler: EpochSampler, workers: int, device: torch.device):
        self.sampler, self.device, self.workers = sampler, torch.device(device), int(workers)
        sampler_view = _SamplerView(sampler)
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler_view, num_workers=self.workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if self.workers else None,
            prefetch_factor=4 if self.workers else None,
        )
        self._it = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._it is None:
            self._it = iter(self._loader)
        try:
            batch = next(self._it)
        except StraightflowError:
            raise
        except RuntimeError as exc:  # a worker died (killed, out of memory)
            raise StraightflowError(f"data loading failed: {_failure(exc)}") from None
        if isinstance(batch, _Failed):
            raise StraightflowError(batch.message)
        self.sampler.advance()
        x, y = batch
        x = x.to(self.device, non_blocking=True)
        return x, (None if y is None else y.to(self.device, non_blocking=True))

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def close(self) -> None:
        """Stop the workers."""
        self._it = None


class _SamplerView:
    """The sampler as the DataLoader's batch sampler (iterating never moves its state)."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        return iter(self.sampler)


# ------------------------------------------------------------------ source
def channel_view(values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Per-channel values (C,) shaped to broadcast over one sample of ``shape`` (C, H, W) or (D,)."""
    return values.reshape(-1, *([1] * (len(shape) - 1)))


class ItemSource(DataSource):
    """A data source read row by row from ``rows``: training rows ``train_index``, held-out rows ``heldout_index``.

    ``shift`` / ``scale`` (per channel, or None): model units are ``(x - shift) / scale``.
    ``loader="stream"``: the trainer reads :meth:`train_dataset` through a DataLoader;
    ``"memory"``: :meth:`to` reads the training rows once into a tensor on the device and
    :meth:`sample_train` draws from it. Either way ``sample_train`` works (rows read on demand
    before :meth:`to`), and references read only the rows asked for.
    """

    def __init__(self, name: str, kind: str, shape: tuple[int, ...], rows: Rows, train_index: np.ndarray,
                 heldout_index: np.ndarray, *, loader: str = "stream", key: str | None = None, hflip: bool = False,
                 shift: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 class_names: tuple[str, ...] = (), train_labels: np.ndarray | None = None, note: str = ""):
        self.name, self.kind, self.shape, self.rows = name, kind, tuple(int(s) for s in shape), rows
        self.train_index, self.heldout_index = (np.asarray(train_index, dtype=np.int64),
                                                np.asarray(heldout_index, dtype=np.int64))
        self.loader, self.key, self.hflip, self.note = loader, key or name, hflip, note
        self.shift = None if shift is None else channel_view(shift.float(), self.shape)
        self.scale = None if scale is None else channel_view(scale.float(), self.shape)
        self.class_names = tuple(class_names)
        self._train_labels = train_labels  # labels of the training rows, where known without reading them
        self._memory: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._classifier_set: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- sizes and units
    @property
    def train_size(self) -> int:
        return int(self.train_index.shape[0])

    def normalize(self, x):
        return x if self.shift is None else (x - self.shift.to(x.device)) / self.scale.to(x.device)

    def denormalize(self, x):
        return x if self.shift is None else x * self.scale.to(x.device) + self.shift.to(x.device)

    def normalization_state(self):
        if self.shift is None:
            return None
        return {"shift": self.shift.flatten().tolist(), "scale": self.scale.flatten().tolist()}

    def describe(self) -> str:
        how = "streamed" if self.loader == "stream" else "in memory"
        return (f"{self.name} ({self.kind}, shape {tuple(self.shape)}, {self.train_size:,} training rows, {how}"
                + (f", {self.note}" if self.note else "") + ")")

    def class_probs(self) -> torch.Tensor:
        if self._train_labels is None:
            return super().class_probs()
        counts = torch.bincount(torch.from_numpy(np.asarray(self._train_labels)), minlength=self.num_classes).double()
        return (counts / counts.sum()).float()

    # ---- training
    def train_dataset(self, labels: bool = False) -> TrainItems:
        """The training rows in model units, for a DataLoader (``labels``: items carry their class)."""
        if labels and not self.class_names:
            raise self._no_labels()
        return TrainItems(self.rows, self.train_index, self.shift, self.scale, labels)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def to(self, device):
        """``loader="memory"``: read every training row once into a tensor on ``device``."""
        if self.loader == "memory" and self._memory is None:
            items, chunks, labels = self.train_dataset(labels=bool(self.class_names)), [], []
            for s in range(0, len(items), 4096):
                x, y = items.batch(range(s, min(s + 4096, len(items))))
                chunks.append(x)
                labels.append(y)
            y = torch.cat(labels) if self.class_names else None
            self._memory = (torch.cat(chunks).to(device), None if y is None else y.to(device))
        elif self._memory is not None:
            self._memory = (self._memory[0].to(device), None if self._memory[1] is None else self._memory[1].to(device))
        return self

    def _draw(self, n, generator, labels: bool):
        dev = generator.device
        idx = torch.randint(0, self.train_size, (n,), generator=generator, device=dev)
        if self._memory is not None:
            x, y = self._memory
            i = idx.to(x.device)
            x, y = x[i].to(dev), (None if y is None else y[i].to(dev))
        else:
            x, y = self.train_dataset(labels).batch(idx.cpu().numpy())
            x, y = x.to(dev), (None if y is None else y.to(dev))
        return self.augment(x, generator), y

    def sample_train(self, n, generator):
        return self._draw(n, generator, bool(self.class_names))

    # ---- references (data units, CPU; only the rows asked for are read)
    def _read(self, index: np.ndarray, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        pick = subset_index(index.shape[0], n, seed)
        rows = index if pick is None else index[pick.numpy()]
        xs, ys = [], []
        for s in range(0, rows.shape[0], 4096):
            x, y = self.rows.read(rows[s:s + 4096])
            xs.append(x)
            ys.append(y)
        if not xs:
            return torch.empty(0, *self.shape), None
        return torch.cat(xs), (None if ys[0] is None else torch.cat(ys))

    def _labelled(self, x, y):
        return x, (y if self.class_names else None)

    def reference(self, n, seed=0):
        return self._labelled(*self._read(self.heldout_index, n, seed))

    def floor_reference(self, n, seed=0):
        return self._labelled(*self._read(self.train_index, n, seed + 1))

    # ---- the validation split (model selection; ``DataSource.with_validation``)
    def with_validation(self, fraction: float, seed: int) -> "ItemSource":
        """A copy training on all but ``fraction`` of the training rows (chosen by ``seed``); those rows are
        :meth:`validation`. Normalisation and held-out rows are unchanged; call before :meth:`to`."""
        keep, val = split_rows(self.train_size, fraction, seed, f"the training split of {self.name}")
        keep, val = np.sort(keep), np.sort(val)
        view = copy.copy(self)
        view.train_index, view._validation_index = self.train_index[keep], self.train_index[val]
        view._train_labels = None if self._train_labels is None else np.asarray(self._train_labels)[keep]
        view._memory, view._classifier_set = None, None
        view.key = f"{self.key}-val{fraction:g}s{seed}"
        return view

    def validation(self, n, seed=0):
        carved = getattr(self, "_validation_index", None)
        if carved is None:
            return super().validation(n, seed)
        return self._labelled(*self._read(carved, n, seed))

    # ---- the Fréchet module's classifier (labelled images)
    def train_images(self) -> torch.Tensor:
        """A seeded subset of at most :data:`CLASSIFIER_MAX_IMAGES` training images (CPU, data units); :attr:`labels`
        are theirs."""
        return self._classifier()[0]

    @property
    def labels(self) -> torch.Tensor | None:
        """The labels of :meth:`train_images` (None for unlabelled data)."""
        return self._classifier()[1] if self.class_names else None

    def _classifier(self):
        if self._classifier_set is None:
            x, y = self._read(self.train_index, CLASSIFIER_MAX_IMAGES, 0)
            self._classifier_set = (x, y)
        return self._classifier_set


