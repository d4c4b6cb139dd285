"""User point clouds of any dimension from ``.npy`` (N x D) or ``.csv``.

The file is split once into train and held-out parts with a fixed seed, and
standardised per dimension with the training part's mean and std (samples are
mapped back before they are written or scored).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ..errors import StraightflowError
from .base import DataSource, seeded_subset


def load_array(path: Path) -> np.ndarray:
    """Read a .npy or .csv file into a float64 array, or raise a one-line error."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            if path.stat().st_size == 0:
                raise StraightflowError(f"{path} is empty")
            arr = np.genfromtxt(path, delimiter=",", dtype=np.float64)
            header = arr.ndim == 2 and arr.shape[0] > 1 and np.isnan(arr[0]).all()
            if header:
                arr = arr[1:]  # header row
            _reject_text_cells(path, arr, skip_rows=1 if header else 0)
        else:
            raise StraightflowError(f"unsupported data file {path}: use .npy or .csv (or a built-in name)")
    except StraightflowError:
        raise
    except Exception as exc:  # numpy raises many types for malformed files
        raise StraightflowError(f"could not read {path}: {exc}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise StraightflowError(f"{path} holds non-numeric data (dtype {arr.dtype})")
    return np.asarray(arr, dtype=np.float64)


def _reject_text_cells(path: Path, arr: np.ndarray, skip_rows: int) -> None:
    """genfromtxt reads a text cell as NaN: name the first one that is not a spelling of NaN / inf."""
    if not np.isnan(arr).any():
        return
    with open(path, newline="") as fh:
        for row, line in enumerate(csv.reader(fh)):
            if row < skip_rows:
                continue
            for col, cell in enumerate(line):
                try:
                    float(cell)
                except ValueError:
                    raise StraightflowError(f"{path} row {row + 1} column {col + 1} holds text {cell.strip()[:30]!r}, not a number") from None


def validate_points(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.size == 0:
        raise StraightflowError(f"{path} is empty")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise StraightflowError(f"{path} has shape {arr.shape}; a point cloud must be N x D")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise StraightflowError(f"{path} contains {int(bad.sum())} non-finite values (NaN or inf), first in row {row}")
    if arr.shape[0] < 10:
        raise StraightflowError(f"{path} has only {arr.shape[0]} points; need at least 10 to split train/held-out")
    return arr


class PointCloud(DataSource):
    kind = "vector"

    def __init__(self, path: str | Path, heldout_fraction: float = 0.2, split_seed: int = 0):
        path = Path(path)
        if not path.exists():
            raise StraightflowError(f"data file {path} does not exist")
        arr = validate_points(load_array(path), path)
        self.name = str(path)
        self.shape = (arr.shape[1],)
        perm = np.random.default_rng(split_seed).permutation(arr.shape[0])
        n_held = max(1, int(round(heldout_fraction * arr.shape[0])))
        data = torch.from_numpy(arr[perm]).float()
        self.heldout = data[:n_held]
        train = data[n_held:]
        self.mean = train.mean(dim=0)
        std = train.std(dim=0)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        self.train = self.normalize(train)

    def to(self, device):
        self.train = self.train.to(device)
        return self

    def normalize(self, x):
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def denormalize(self, x):
        return x * self.std.to(x.device) + self.mean.to(x.device)

    def sample_train(self, n, generator):
        idx = torch.randint(0, self.train.shape[0], (n,), generator=generator, device=generator.device)
        return self.train[idx]

    def reference(self, n, seed=0):
        # all of the held-out split, or a seeded subset of it
        return seeded_subset(self.heldout, n, seed)

    def floor_reference(self, n, seed=0):
        # training points, same count as the reference: the two-sample floor
        return self.denormalize(seeded_subset(self.train, min(n, self.heldout.shape[0]), seed + 1)).cpu()
