"""Scoring a set of samples against a data source's held-out reference: the quality metrics by data kind,
their two-sample floors, class accuracy and per-class scores (:class:`HeldoutScoring`), and :func:`score`,
which scores any samples (a file, an array, a pairs folder's x*) the way ``eval`` scores a run's
(``docs/evaluation.md``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from ..data.pairs import PairData, teacher_info
from ..errors import StraightflowError
from ..metrics import energy_distance, nearest_neighbour_accuracy, wasserstein2
from ..metrics.frechet import classifier_accuracy, classifier_features
from ..metrics.images import image_metric
from ..run import Run, clamp_samples


class QualityMetric(Protocol):
    name: str

    def floor(self, reference: torch.Tensor, floor_reference: torch.Tensor) -> dict: ...

    def score(self, samples: torch.Tensor, reference: torch.Tensor) -> dict: ...


class VectorQuality:
    """Exact W2 (POT) and the unbiased energy distance; W2's notes (a subsample above
    ``W2_MAX_ENTRIES``, POT's iteration limit) go into ``w2_floor_note`` / ``w2_note``."""

    name = "w2"

    @staticmethod
    def _w2(key: str, a, b) -> dict:
        notes: list[str] = []
        out = {key: wasserstein2(a, b, notes)}
        if notes:
            out[f"{key}_note"] = "; ".join(notes)
        return out

    def floor(self, reference, floor_reference):
        return {**self._w2("w2_floor", floor_reference, reference),
                "energy_floor": energy_distance(floor_reference, reference)}

    def score(self, samples, reference):
        return {**self._w2("w2", samples, reference), "energy": energy_distance(samples, reference)}


class LatentQuality(VectorQuality):
    """W2 and energy distance of latents, each sample flattened to one vector (data units)."""

    def floor(self, reference, floor_reference):
        return super().floor(reference.flatten(1), floor_reference.flatten(1))

    def score(self, samples, reference):
        return super().score(samples.flatten(1), reference.flatten(1))


#: what ``floor_source`` says in an ``eval`` report: where the two-sample floor's two sets came from
FLOOR_FROM_DATA = "run data: held-out reference vs a second sample"


FLOOR_FROM_REFERENCE = "run data vs --reference"


#: data kind -> factory(run) -> QualityMetric
QUALITY_METRICS: dict[str, Callable[[Run], QualityMetric]] = {"vector": lambda run: VectorQuality(),
                                                              "image": image_metric,
                                                              "latent": lambda run: LatentQuality()}


#: generated samples per NFE by default: vectors (against as many held-out points)
VECTOR_N = 2000


#: generated images per NFE by default, scored against the whole held-out set: enough that one
#: noise seed's FD means something (docs/evaluation.md, "Defaults")
IMAGE_N = 5000


#: ``reference(ALL_HELDOUT)`` of an image source is its whole held-out set (it returns min(n, held-out size) images)
ALL_HELDOUT = sys.maxsize


def default_n(data) -> int:
    """``eval -n``'s default for ``data``: :data:`IMAGE_N` for images, :data:`VECTOR_N` for vectors."""
    return IMAGE_N if data.kind == "image" else VECTOR_N


def load_reference(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    path = Path(path)
    if not path.exists():
        raise StraightflowError(f"reference file {path} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise StraightflowError(f"could not read reference {path}: {exc}") from None
    if arr.ndim < 1 or tuple(arr.shape[1:]) != tuple(shape):
        raise StraightflowError(f"reference {path} has shape {arr.shape}; expected N x {' x '.join(map(str, shape))}")
    if not np.isfinite(arr).all():
        raise StraightflowError(f"reference {path} contains non-finite values")
    return torch.from_numpy(arr.astype(np.float32))


#: ``flow_loss_source`` of a pair method's report (``flow_loss_note`` says why when it is not this)
FLOW_LOSS_FROM_PAIRS = "held-out teacher pairs"


class ClassAccuracy:
    """How often conditional samples are of their requested class."""

    def __init__(self, data, seed: int):
        if data.kind == "image":
            self.name, self.classifier = "classifier_accuracy", classifier_features(data)[0]
        else:  # 1-NN on labelled training points (the floor draw: never the held-out set)
            self.name, self.classifier = "knn_accuracy", None
            self.points, self.point_labels = data.floor_reference(5000, seed + 7)

    def __call__(self, samples: torch.Tensor, labels: torch.Tensor) -> float:
        if self.classifier is not None:
            return classifier_accuracy(self.classifier, samples, labels)
        return nearest_neighbour_accuracy(samples, labels, self.points, self.point_labels)


def _per_class(metric, samples, labels, ref, ref_labels, names) -> list[dict]:
    """The metric of the samples of each class against the reference points of that class (>= 2 of each)."""
    rows = []
    for c, name in enumerate(names):
        a, b = samples[labels == c], ref[ref_labels == c]
        row = {"class": name, "n": int(a.shape[0]), "n_reference": int(b.shape[0])}
        if a.shape[0] >= 2 and b.shape[0] >= 2:
            row.update(metric.score(a, b))
        rows.append(row)
    return rows


class HeldoutScoring:
    """The scoring of sets of samples against a data source's held-out reference, one function for
    ``eval`` (every NFE and seed, and the teacher block of a pair-trained student) and ``score``.

    It draws the reference (vectors and latents: ``n`` held-out points; images: the whole held-out
    set; or the user's ``reference``) and the floor sample once, at ``seed``; :meth:`floors` are the
    metric's two-sample floors at the sizes :meth:`score` scores at, and :meth:`score` scores the
    first :attr:`n` samples given (clamped to the data range for images unless ``clamp`` is False). ``labelled``:
    the reference carries labels, and samples with labels are also scored per class and by the class
    accuracy (``per_class=False`` leaves both out)."""

    def __init__(self, data, metric: QualityMetric, n: int, seed: int = 0, reference: torch.Tensor | None = None,
                 labelled: bool = False, per_class: bool = True, clamp: bool = True):
        if n < 2:
            raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
        if reference is not None and reference.shape[0] < 2:
            raise StraightflowError(f"the reference holds {reference.shape[0]} sample(s); it needs at least 2")
        if labelled and reference is not None:
            raise StraightflowError("--reference holds no labels: a conditional run is evaluated against its data's "
                                    "labelled held-out set")
        self.data, self.metric, self.seed, self.clamp = data, metric, seed, clamp
        self.user_reference = reference is not None
        images = data.kind == "image"
        n_ref = ALL_HELDOUT if images else n  # images: always the whole held-out set
        self.ref, self.ref_labels = (reference, None) if reference is not None else data.reference(n_ref, seed)
        if labelled and self.ref_labels is None:
            raise data._no_labels()
        self.n = n if images or reference is not None else min(n, self.ref.shape[0])
        # the floor: held-out reference against a second sample of the run's data, as many points as are
        # generated (images: training images; with --reference: the run's own data against the user's)
        n_floor = self.n if images or reference is not None else self.ref.shape[0]
        self.floor_ref, self.floor_labels = data.floor_reference(n_floor, seed)
        if not labelled:  # labels of an unconditional run's data are not scored
            self.ref_labels = self.floor_labels = None
        self.class_names = tuple(data.class_names) if labelled else ()
        self.accuracy = ClassAccuracy(data, seed) if labelled and per_class else None

    def sizes(self) -> dict:
        """``quality_metric``, ``n`` (samples scored) and ``n_reference``."""
        return {"quality_metric": self.metric.name, "n": self.n, "n_reference": int(self.ref.shape[0])}

    def floors(self) -> dict:
        """The metric's floors (``<key>_floor``), ``floor_source``, ``n_floor``, ``floor_note`` and, for image
        data, ``clamped`` (whether samples are clamped to [-1, 1] before they are scored)."""
        out = dict(self.metric.floor(self.ref, self.floor_ref))
        out["floor_source"] = FLOOR_FROM_REFERENCE if self.user_reference else FLOOR_FROM_DATA
        out["n_floor"] = int(self.floor_ref.shape[0])
        if self.floor_ref.shape[0] < self.n:
            out["floor_note"] = (f"the floor sample holds all {self.floor_ref.shape[0]} training points, fewer than "
                                 f"the {self.n} generated: fd is biased by the set sizes, so a perfect model's fd at "
                                 f"n={self.n} is somewhat below fd_floor (kid, precision and recall do not depend on "
                                 "it; docs/evaluation.md)")
        if self.data.kind == "image":
            out["clamped"] = bool(self.clamp)
        return out

    def class_floors(self) -> dict:
        """``classes``, ``per_class_floor`` and the held-out data's own class accuracy (``<accuracy>_floor``)."""
        if self.accuracy is None:
            return {}
        return {"classes": list(self.class_names),
                "per_class_floor": _per_class(self.metric, self.floor_ref, self.floor_labels, self.ref, self.ref_labels,
                                              self.class_names),
                f"{self.accuracy.name}_floor": self.accuracy(self.ref, self.ref_labels)}

    def score(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """The quality of the first :attr:`n` ``samples`` (data units); with ``labels`` (and a labelled reference) also
        their class accuracy and the quality of each class against the reference's points of that class."""
        samples = clamp_samples(self.data, samples[: self.n], self.clamp)
        row = dict(self.metric.score(samples, self.ref))
        if self.accuracy is not None and labels is not None:
            labels = labels[: self.n]
            row[self.accuracy.name] = self.accuracy(samples, labels)
            row["per_class"] = _per_class(self.metric, samples, labels, self.ref, self.ref_labels, self.class_names)
            for entry in row["per_class"]:
                mask = labels == self.class_names.index(entry["class"])
                entry[self.accuracy.name] = (self.accuracy(samples[mask], labels[mask])
                                             if bool(mask.any()) else float("nan"))
        return row


#: ``teacher["source"]`` of a report: what the teacher's quality was measured on
TEACHER_SOURCE = "pairs' x*"


def pair_samples(pairs: PairData, n: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The teacher samples of a pairs folder for scoring: the x* (data units) of the first ``n`` held-out pairs, or,
    where fewer than ``n`` are held out, of the folder's first ``n`` pairs (every pair's x* is a teacher sample);
    with their class labels where the pairs carry them, and which pairs they are."""
    if 0 < n <= pairs.heldout:
        idx, which = np.arange(pairs.n_train, pairs.n_train + n), f"the first {n} of the {pairs.heldout} held-out pairs"
    else:
        count = min(n, pairs.n)
        idx, which = np.arange(count), f"the first {count} of the {pairs.n} pairs (fewer than {n} are held out)"
    x, _ = pairs.gather(idx)
    labels = pairs.gather_labels(idx) if pairs.has_labels else None
    return pairs.denormalize(x), labels, which


class _MetricTarget:
    """What a quality-metric factory (:data:`QUALITY_METRICS`) reads of a run: its data, device and Inception
    weights."""

    def __init__(self, data, device, inception_weights: str | None):
        self.data, self.device, self.inception_weights = data, device, inception_weights


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise StraightflowError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise StraightflowError(f"{what} {path} is a folder: give a .npy file"
                                + (" (or a pairs folder)" if what == "samples" else ""))
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise StraightflowError(f"could not read {what} {path} as a .npy array "
                                f"({first[0] if first else type(exc).__name__})") from None


def _as_samples(samples, shape: tuple[int, ...], where: str) -> torch.Tensor:
    arr = samples.detach().cpu().numpy() if torch.is_tensor(samples) else np.asarray(samples)
    if arr.dtype.kind not in "fiu":
        raise StraightflowError(f"samples {where} are of dtype {arr.dtype}; expected numbers")
    if arr.ndim < 2 or tuple(arr.shape[1:]) != tuple(shape):
        raise StraightflowError(f"samples {where} have shape {arr.shape}; the data's samples are N x "
                                f"{' x '.join(map(str, shape))}")
    if not np.isfinite(arr).all():
        raise StraightflowError(f"samples {where} contain non-finite values (NaN or inf)")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _as_labels(labels, count: int, names: tuple[str, ...], where: str) -> torch.Tensor:
    arr = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != count:
        raise StraightflowError(f"labels {where} have shape {arr.shape}; expected ({count},), one per sample")
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.isfinite(arr).all()
                                           and (arr == np.round(arr)).all()):
        raise StraightflowError(f"labels {where} must be integer class indices 0..{len(names) - 1}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
        raise StraightflowError(f"labels {where} must be in 0..{len(names) - 1} (the data's classes: "
                                f"{', '.join(names[:20])})")
    return torch.from_numpy(arr)


def is_pairs_folder(path) -> bool:
    """Whether ``path`` is a teacher-pairs folder (``straightflow pairs --out``)."""
    return isinstance(path, (str, Path)) and Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def score(samples, data=None, labels=None, n: int | None = None, seed: int = 0, clamp: bool = True,
          inception_weights: str | None = None, device: str = "cpu", data_options: dict | None = None) -> dict:
    """The quality of any set of samples against ``data``'s held-out reference, scored as ``evaluate`` scores
    a run's samples at one NFE (the same :class:`HeldoutScoring`): W2 and energy for vectors, FD, KID,
    precision and recall for images, each beside its two-sample floor (``floor_source``).

    ``samples``: an array or tensor (N x the data's shape, data units), a ``.npy`` file, or a pairs folder
    (its x*: the held-out pairs' or the first ``n``, in data units; ``data`` defaults to the manifest's).
    ``data``: a ``--data`` spec or a :class:`~straightflow.data.DataSource`, read with ``data_options``
    (``heldout_fraction``, ``split_seed``, ``image_size``, ``data_kind``, ``label_column``, ...).
    ``labels`` (N,) class indices (array or ``.npy``): also the class accuracy and per-class scores (labelled data).
    ``n``: the first n samples (default all; a pairs folder: :func:`default_n`); vectors are scored against
    min(n, held-out) points, images against the whole held-out set. ``clamp``: image samples clamped to [-1, 1]
    (``clamped`` in the report). ``seed``: the reference and floor draws (``eval``'s ``--seed``).
    ``inception_weights``: image FD in Inception features."""
    from ..data import DataSource, load_data
    from ..data.pairs import read_manifest
    from ..device import resolve_device

    options = {k: v for k, v in (data_options or {}).items() if v is not None}
    teacher = None
    if isinstance(samples, (str, Path)) and Path(samples).is_dir():
        folder = Path(samples)
        manifest = read_manifest(folder)
        if data is None:
            tcfg = dict(manifest.get("teacher_config") or {})
            if "data" not in tcfg:
                raise StraightflowError(f"pairs manifest in {folder} records no data; pass --data")
            data, options = tcfg.pop("data"), {**tcfg, **options}
        source = data if isinstance(data, DataSource) else load_data(str(data), options)
        if labels is not None:
            raise StraightflowError(f"{folder} is a pairs folder: its x* carry their own labels (if any); --labels "
                                    "goes with a samples file")
        pairs = PairData.open(folder, base=source)
        values, labels, which = pair_samples(pairs, default_n(source) if n is None else n)
        n = int(values.shape[0])  # fewer than asked when the folder holds fewer pairs ("which" says so)
        teacher = {**teacher_info(pairs.manifest, folder), "samples": TEACHER_SOURCE, "which": which}
        name = str(folder)
    else:
        if data is None:
            raise StraightflowError("score needs --data (the data the samples are scored against), unless SAMPLES is a "
                                    "pairs folder")
        source = data if isinstance(data, DataSource) else load_data(str(data), options)
        name = str(samples) if isinstance(samples, (str, Path)) else "the given samples"
        values = _load_array(Path(samples), "samples") if isinstance(samples, (str, Path)) else samples
    if source.kind not in QUALITY_METRICS:
        raise StraightflowError(f"no quality metric for {source.kind} data")
    x = _as_samples(values, tuple(source.shape), f"in {name}" if isinstance(samples, (str, Path)) else "given")
    if labels is not None:
        if not source.class_names:
            raise StraightflowError(f"--labels: the data {source.name} has no class labels to score per class against")
        label_where = f"in {labels}" if isinstance(labels, (str, Path)) else "given"
        labels = _as_labels(_load_array(Path(labels), "labels") if isinstance(labels, (str, Path)) else labels,
                            x.shape[0], tuple(source.class_names), label_where)
    n = x.shape[0] if n is None else n
    if n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    if x.shape[0] < n:
        raise StraightflowError(f"-n {n}: {name} holds {x.shape[0]} samples")
    dev = resolve_device(device)
    metric = QUALITY_METRICS[source.kind](_MetricTarget(source, dev, inception_weights))
    scoring = HeldoutScoring(source, metric, n, seed, labelled=labels is not None, clamp=clamp)
    report: dict = {"samples": name, "data": data if isinstance(data, str) else source.name, **scoring.sizes(),
                    "seed": seed}
    if teacher is not None:
        report["teacher"] = teacher
    report.update(scoring.floors())
    report.update(scoring.class_floors())
    row = {"set": TEACHER_SOURCE if teacher is not None else "samples", **scoring.score(x, labels)}
    report["results"] = [row]
    return report
