"""User point clouds of any dimension from ``.npy`` (N x D) or ``.csv``.

The file is split once into train and held-out parts with a fixed seed, and
standardised per dimension with the training part's mean and std (samples are
mapped back before they are written or scored).

With ``label_column`` (a 0-based column index, or a CSV header name) one
column holds class labels: it is removed from the points, and its sorted
unique values (integers sorted numerically, text as strings) are the class
names. Labels follow the points through the seeded split.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import torch

from ..errors import StraightflowError
from .base import DataSource, split_rows, subset_index
from .stream import TensorRows, TrainItems


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


def _reject_text_cells(path: Path, arr: np.ndarray, skip_rows: int, skip_col: int | None = None) -> None:
    """genfromtxt reads a text cell as NaN: name the first one that is not a spelling of NaN / inf
    (``skip_col``: a label column, whose text is allowed)."""
    if not np.isnan(arr if skip_col is None else np.delete(arr, skip_col, axis=1)).any():
        return
    with open(path, newline="") as fh:
        for row, line in enumerate(csv.reader(fh)):
            if row < skip_rows:
                continue
            for col, cell in enumerate(line):
                if col == skip_col:
                    continue
                try:
                    float(cell)
                except ValueError:
                    raise StraightflowError(f"{path} row {row + 1} column {col + 1} holds text {cell.strip()[:30]!r}, "
                                            "not a number") from None


def _cell(text: str) -> str:
    """A CSV cell without surrounding blanks and double quotes."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def _column_index(path: Path, label_column: str, ncols: int, header: list[str] | None) -> int:
    """The 0-based index that ``label_column`` (an index or a header name) names, or a one-line error."""
    try:
        col = int(label_column)
    except ValueError:
        if path.suffix.lower() == ".npy":
            raise StraightflowError(
                f"label column {label_column!r} is a name, but {path} is a .npy file without column names: give a "
                "0-based column index"
            ) from None
        if header is None:
            raise StraightflowError(f"label column {label_column!r} is a name, but {path} has no header row: give a "
                                    "0-based column index") from None
        if label_column not in header:
            raise StraightflowError(f"label column {label_column!r} is not in the header of {path}: columns are "
                                    f"{', '.join(map(repr, header))}") from None
        col = header.index(label_column)
    if not 0 <= col < ncols:
        raise StraightflowError(f"label column {col} is out of range: {path} has {ncols} "
                                f"column{'s' if ncols != 1 else ''} (0..{ncols - 1})")
    if ncols < 2:
        raise StraightflowError(f"{path} has only the label column {label_column!r}; the points need at least one "
                                "more column")
    return col


def _read_labelled_csv(path: Path, label_column: str) -> tuple[np.ndarray, list[str], int, int]:
    """(numbers with the label column still in, label cells, label column, file row of the first label (1-based)) of a
    CSV file."""
    if path.stat().st_size == 0:
        raise StraightflowError(f"{path} is empty")
    arr = np.genfromtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    cells = np.genfromtxt(path, delimiter=",", dtype=str, encoding="utf-8-sig", ndmin=2)
    if arr.size == 0 or cells.size == 0:
        raise StraightflowError(f"{path} is empty")
    if cells.shape != arr.shape:  # both readers skip the same blank / comment lines
        raise StraightflowError(f"could not read the label column of {path}: rows do not line up ({cells.shape} cells, "
                                f"{arr.shape} numbers)")
    header = arr.shape[0] > 1 and bool(np.isnan(arr[0]).all())
    names = [_cell(c) for c in cells[0]] if header else None
    col = _column_index(path, label_column, arr.shape[1], names)
    skip = 1 if header else 0
    arr, cells = arr[skip:], cells[skip:]
    _reject_text_cells(path, arr, skip_rows=skip, skip_col=col)
    return arr, [_cell(c) for c in cells[:, col]], col, skip + 1


def _class_labels(path: Path, values: list, first_row: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """int64 class indices and class names of the raw label values (numbers or text)."""
    empty = [row for row, value in enumerate(values) if isinstance(value, str) and not value]
    if empty:
        raise StraightflowError(f"{path} row {empty[0] + first_row} has an empty label ({len(empty)} empty "
                                f"label{'s' if len(empty) > 1 else ''} in all)")
    numbers: list[float] | None = []
    for value in values:
        try:
            numbers.append(float(value))
        except ValueError:
            numbers = None  # text labels
            break
    if numbers is None:  # text labels
        names = sorted(set(values))
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[v] for v in values], dtype=np.int64)
    else:
        ints = []
        for row, value in enumerate(numbers):
            if not (np.isfinite(value) and value == int(value)):
                raise StraightflowError(f"{path} row {row + first_row} has label {values[row]!r}, not an integer class "
                                        "(use integers or text)")
            ints.append(int(value))
        uniq = sorted(set(ints))
        index = {v: i for i, v in enumerate(uniq)}
        labels = np.array([index[v] for v in ints], dtype=np.int64)
        names = [str(v) for v in uniq]
    if len(names) < 2:
        raise StraightflowError(f"the label column of {path} holds only {len(names)} class "
                                f"({', '.join(map(repr, names))}); class labels need at least 2")
    return labels, tuple(names)


def load_labelled(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Points (float64, label column removed), int64 labels and class names of a .npy / .csv file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = as_matrix(load_array(path), path)
            col = _column_index(path, label_column, arr.shape[1], None)
            values, first_row = [float(v) for v in arr[:, col]], 0  # .npy rows count from 0, as in validate_points
        elif suffix in (".csv", ".txt"):
            arr, values, col, first_row = _read_labelled_csv(path, label_column)
        else:
            raise StraightflowError(f"unsupported data file {path}: use .npy or .csv (or a built-in name)")
    except StraightflowError:
        raise
    except Exception as exc:  # numpy raises many types for malformed files
        raise StraightflowError(f"could not read {path}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    labels, names = _class_labels(path, values, first_row)
    return np.delete(arr, col, axis=1), labels, names


def as_matrix(arr: np.ndarray, path: Path) -> np.ndarray:
    """``arr`` as N x D (a 1-d array is N x 1), or a one-line error for an empty or higher-rank array."""
    if arr.size == 0:
        raise StraightflowError(f"{path} is empty")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise StraightflowError(f"{path} has shape {arr.shape}; a point cloud must be N x D")
    return arr


def validate_points(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = as_matrix(arr, path)
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise StraightflowError(f"{path} contains {int(bad.sum())} non-finite values (NaN or inf), first in row {row}")
    if arr.shape[0] < 10:
        raise StraightflowError(f"{path} has only {arr.shape[0]} points; need at least 10 to split train/held-out")
    return arr


class PointCloud(DataSource):
    """A point-cloud file, split once into train / held-out; labelled when ``label_column`` is given."""

    kind = "vector"

    def __init__(self, path: str | Path, heldout_fraction: float = 0.2, split_seed: int = 0,
                 label_column: str | int | None = ""):
        path = Path(path)
        if not path.exists():
            raise StraightflowError(f"data file {path} does not exist")
        label_column = "" if label_column is None else str(label_column).strip()
        if label_column:
            arr, labels, self.class_names = load_labelled(path, label_column)
        else:
            arr, labels = load_array(path), None
        arr = validate_points(arr, path)
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
        #: int64 class indices of the training / held-out rows (None when unlabelled)
        self.labels: torch.Tensor | None = None
        self.heldout_labels: torch.Tensor | None = None
        if labels is not None:
            y = torch.from_numpy(labels[perm])
            self.heldout_labels, self.labels = y[:n_held], y[n_held:]

    def to(self, device):
        self.train = self.train.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)
        return self

    def train_dataset(self, labels=False):
        if labels and self.labels is None:
            raise self._no_labels()
        return TrainItems(TensorRows(self.train.cpu(), self.labels), np.arange(self.train.shape[0]), labels=labels)

    def class_probs(self) -> torch.Tensor:
        if self.labels is None:
            return super().class_probs()
        counts = torch.bincount(self.labels.cpu(), minlength=self.num_classes).double()
        return (counts / counts.sum()).float()

    def normalize(self, x):
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def denormalize(self, x):
        return x * self.std.to(x.device) + self.mean.to(x.device)

    def normalization_state(self):
        return {"shift": self.mean.tolist(), "scale": self.std.tolist()}

    def _index(self, n, generator):
        return torch.randint(0, self.train.shape[0], (n,), generator=generator, device=generator.device)

    def sample_train(self, n, generator):
        idx = self._index(n, generator)
        return self.train[idx], None if self.labels is None else self.labels[idx]

    def reference(self, n, seed=0):
        # all of the held-out split, or a seeded subset of it
        idx = subset_index(self.heldout.shape[0], n, seed)
        if idx is None:
            return self.heldout, self.heldout_labels
        return self.heldout[idx], None if self.heldout_labels is None else self.heldout_labels[idx]

    def floor_reference(self, n, seed=0):
        # training points, same count as the reference: the two-sample floor
        idx = subset_index(self.train.shape[0], min(n, self.heldout.shape[0]), seed + 1)
        x, y = (self.train, self.labels) if idx is None else (
            self.train[idx.to(self.train.device)],
            None if self.labels is None else self.labels[idx.to(self.labels.device)])
        return self.denormalize(x).cpu(), None if y is None else y.cpu()

    def with_validation(self, fraction: float, seed: int) -> "PointCloud":
        """A copy training on all but ``fraction`` of the training rows; those rows are :meth:`validation`.
        The normalisation stays the full training split's, so model units match a run on all of it."""
        keep, val = split_rows(self.train.shape[0], fraction, seed, f"the training split of {self.name}")
        keep, val = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(val))
        view = copy.copy(self)
        view.train, view._validation = (self.train[keep.to(self.train.device)],
                                        self.denormalize(self.train[val.to(self.train.device)]).cpu())
        view._validation_labels = None
        if self.labels is not None:
            view.labels = self.labels[keep.to(self.labels.device)]
            view._validation_labels = self.labels[val.to(self.labels.device)].cpu()
        return view

    def validation(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        carved = getattr(self, "_validation", None)
        if carved is None:
            return super().validation(n, seed)
        idx = subset_index(carved.shape[0], n, seed)
        y = self._validation_labels
        if idx is None:
            return carved, y
        return carved[idx], None if y is None else y[idx]
