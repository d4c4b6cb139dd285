"""``.npy`` arrays read row by row (memory-mapped), and latents of any float range.

``--data-kind latent`` reads an N x C x H x W or N x D ``.npy`` of finite floats of any range
and standardises it per channel (per feature for N x D) with the mean and std of its
training split; ``normalization_state()`` returns them as ``{"shift": means, "scale": stds}``
and samples come back in the file's units. Streamed image arrays (``--loader stream``)
follow the same range rules as in-memory ones (``data/images.py``), found in one pass over
the memory-mapped file; so are the statistics of latents, so memory stays bounded by the
chunk read (``docs/data.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import StraightflowError
from .base import DataOptions, resize_images, split_rows
from .stream import ItemSource, resolve_loader

#: rows per chunk of a pass over an array
CHUNK_ROWS = 4096

class ArrayRows:
    """Rows of an N x ... array: a ``.npy`` file (memory-mapped, opened lazily in every process,
    so DataLoader workers never copy it) or an in-memory array (torchvision's uint8 sets).

    ``layout``: "nchw" (as stored), "nhw" (grey images: a channel axis is added) or "nhwc"
    (channels last, moved first). ``scaling``: "none" (the values are data units), "uint8" /
    "byte" (``x / 127.5 - 1``), "unit" (``2 x - 1``). ``size`` > 0 resizes images (antialiased bilinear).
    """

    def __init__(self, source: Path | np.ndarray, layout: str = "nchw", scaling: str = "none", size: int = 0,
                 labels: np.ndarray | None = None):
        self.path = None if isinstance(source, np.ndarray) else str(source)
        self._arr = source if isinstance(source, np.ndarray) else None
        self.layout, self.scaling, self.size = layout, scaling, int(size)
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.path is not None:
            state["_arr"] = None  # each worker maps the file itself
        return state

    @property
    def array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._arr

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def raw(self, indices) -> np.ndarray:
        """The stored rows at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # a memory map reads sorted rows fastest
        out = np.empty((idx.shape[0], *self.array.shape[1:]), dtype=self.array.dtype)
        out[order] = self.array[idx[order]]
        return out

    def read(self, indices):

        a = self.raw(indices)
        if self.layout == "nhw":
            a = a[:, None]
        elif self.layout == "nhwc":
            a = a.transpose(0, 3, 1, 2)
        x = a.astype(np.float32)
        if self.scaling in ("uint8", "byte"):
            x = x / 127.5 - 1.0
        elif self.scaling == "unit":
            x = x * 2.0 - 1.0
        x = torch.from_numpy(np.ascontiguousarray(x))
        if self.size:
            x = resize_images(x, self.size)
        y = None if self.labels is None else self.labels[torch.as_tensor(np.asarray(indices, dtype=np.int64))]
        return x, y


@dataclass
class ArrayScan:
    """One pass over an array: its range and, over the training rows, per-channel mean and std."""

    lo: float
    hi: float
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None


def scan_array(arr: np.ndarray, path: Path, train_rows: np.ndarray | None = None, channel_axis: int = 1) -> ArrayScan:
    """Range of ``arr`` (a one-line error at its first non-finite value) and, with ``train_rows``,
    the mean and std (unbiased; 1 where 0) per index of ``channel_axis`` over those rows; read
    :data:`CHUNK_ROWS` rows at a time."""
    n = arr.shape[0]
    is_train = None
    if train_rows is not None:
        is_train = np.zeros(n, dtype=bool)
        is_train[train_rows] = True
    lo, hi = np.inf, -np.inf
    s = ss = None
    count = 0
    chunks = range(0, n, CHUNK_ROWS)
    for start in tqdm(chunks, desc=f"scan {Path(path).name}", disable=len(chunks) < 50, leave=False):
        a = np.asarray(arr[start:start + CHUNK_ROWS], dtype=np.float64)
        bad = ~np.isfinite(a)
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            total = int(bad.sum())
            raise StraightflowError(f"{path} contains non-finite values (NaN or inf): {total} in rows "
                                    f"{start}..{start + a.shape[0] - 1}, first in row {row}")
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
        if is_train is not None:
            t = a[is_train[start:start + a.shape[0]]]
            t = np.moveaxis(t, channel_axis, 1).reshape(t.shape[0], t.shape[channel_axis], -1)
            s = t.sum(axis=(0, 2)) if s is None else s + t.sum(axis=(0, 2))
            ss = (t * t).sum(axis=(0, 2)) if ss is None else ss + (t * t).sum(axis=(0, 2))
            count += t.shape[0] * t.shape[2]
    out = ArrayScan(lo, hi)
    if is_train is not None:
        mean = s / count
        var = np.maximum(ss - count * mean * mean, 0.0) / max(1, count - 1)
        std = np.sqrt(var)
        out.mean = torch.from_numpy(mean).float()
        out.std = torch.from_numpy(np.where(std > 0, std, 1.0)).float()
    return out


def _open(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise StraightflowError(f"could not read {path}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise StraightflowError(f"{path} holds non-numeric data (dtype {arr.dtype})")
    if arr.size == 0:
        raise StraightflowError(f"{path} is empty")
    return arr


def load_latents(path: Path, options: DataOptions = DataOptions(), kind: str = "latent") -> ItemSource:
    """A ``.npy`` of latents (N x C x H x W or N x D, finite floats of any range), standardised per
    channel with its training split's mean and std; ``kind="vector"``: an N x D point cloud read the same way."""
    arr = _open(path)
    if arr.ndim not in (2, 4) or (kind == "vector" and arr.ndim != 2):
        want = "N x D" if kind == "vector" else "N x C x H x W or N x D"
        raise StraightflowError(f"{path} has shape {arr.shape}; {kind} arrays must be {want}")
    if not np.issubdtype(arr.dtype, np.floating) and kind == "latent":
        raise StraightflowError(f"{path} holds {arr.dtype} values; latents must be floats (use --data-kind image for "
                                "uint8 images)")
    tr, ho = split_rows(arr.shape[0], options.heldout_fraction, options.split_seed, str(path))
    nbytes = tr.shape[0] * int(np.prod(arr.shape[1:])) * 4
    loader = resolve_loader(options.loader, nbytes, str(path))
    scan = scan_array(arr, path, train_rows=tr)
    return ItemSource(str(path), kind, tuple(arr.shape[1:]), ArrayRows(path), tr, ho, loader=loader,
                      key=f"{kind}-{path.resolve()}-s{options.split_seed}-h{options.heldout_fraction:g}",
                      shift=scan.mean, scale=scan.std,
                      note=f"values in [{scan.lo:.4g}, {scan.hi:.4g}], standardised per "
                           f"{'channel' if arr.ndim == 4 else 'feature'}")


def image_array_layout(shape: tuple[int, ...], path: Path) -> str:
    """How an image array stores its rows: N x H x W, N x C x H x W or N x H x W x C (C in 1, 3)."""
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4 and shape[1] not in (1, 3) and shape[-1] in (1, 3):
        return "nhwc"
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise StraightflowError(f"{path} has shape {shape}; image arrays must be N x H x W or N x C x H x W with C = 1 "
                                "or 3 (other arrays: --data-kind latent)")
    return "nchw"


def image_scaling(arr: np.ndarray, path: Path) -> str:
    """The range rule of an image array (``data/images.py``), from one pass over it."""
    if arr.dtype == np.uint8:
        return "uint8"
    scan = scan_array(arr, path)
    lo, hi = scan.lo, scan.hi
    if lo >= -1.0 and hi <= 1.0 and lo < 0:
        return "none"
    if lo >= 0 and hi <= 1.0:
        return "unit"
    if lo >= 0 and hi <= 255.0:
        return "byte"
    raise StraightflowError(f"{path} has values in [{lo:.4g}, {hi:.4g}]; image arrays must be uint8, or floats in [-1, "
                            "1], [0, 1] or [0, 255] (--data-kind latent reads any range)")


def stream_image_array(path: Path, options: DataOptions) -> ItemSource:
    """A ``.npy`` image array read row by row from its memory map (``--loader stream``)."""
    arr = _open(path)
    layout = image_array_layout(tuple(arr.shape), path)
    scaling = image_scaling(arr, path)
    size = int(options.image_size or 0)
    c = 1 if layout == "nhw" else (arr.shape[-1] if layout == "nhwc" else arr.shape[1])
    h, w = (size, size) if size else ((arr.shape[1], arr.shape[2])
                                      if layout in ("nhw", "nhwc") else (arr.shape[2], arr.shape[3]))
    tr, ho = split_rows(arr.shape[0], options.heldout_fraction, options.split_seed, str(path), unit="images")
    key = f"npy-{path.resolve()}-s{options.split_seed}-h{options.heldout_fraction:g}-{w}px"
    return ItemSource(str(path), "image", (c, h, w), ArrayRows(path, layout, scaling, size), tr, ho, loader="stream",
                      key=key, hflip=bool(options.hflip))
