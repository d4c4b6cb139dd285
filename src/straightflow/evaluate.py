"""``straightflow eval``: quality per NFE, curvature and held-out flow loss.

Quality metrics are chosen by the data kind (:data:`QUALITY_METRICS`, a static
table): W2 and the unbiased energy distance for vectors; for images the Fréchet
distance, the unbiased kernel distance (KID, with its sd over subsets) and k-NN
precision/recall, all in one named feature space (``docs/evaluation.md``).
Sizes (:func:`default_n`): vectors generate ``n`` (default 2000) samples against
``n`` held-out ones; images generate ``n`` (default :data:`IMAGE_N`) against the
*whole* held-out set. Every report carries each metric's two-sample floor at the
same sizes and says where its two sets came from (``floor_source``): the held-out
reference against a second sample of the run's data (training images for image
data), or, with ``--reference``, the user's reference against ``n`` points of
the run's own data (its ``floor_reference`` draw, the size of the generated
set), so the floor is what a perfect model of the run's data would score
against that reference. With ``seeds`` = K > 1 every NFE is sampled with the
noise seeds ``seed .. seed + K - 1`` and each number is the mean over them,
beside ``<key>_sd`` (their standard deviation) and ``<key>_seeds`` (the values).
Each random draw has its own named stream (:mod:`straightflow.noise`), so
evaluation noise never shares a seed with reference data. Caveats travel with
the numbers: a result row's ``note`` (the solver's, e.g. Heun at even NFE) and
``*_note`` keys (a metric's, e.g. W2 on a subsample) are marked in
:func:`format_table`.

Class-conditional runs (``docs/conditional.md``) are scored overall (samples
with the data's class mix, each of its requested class) and per class (the
samples of class c against the held-out points of class c, with that class's
floor), beside the class accuracy of the samples: the dataset's own classifier
for images, a nearest-neighbour classifier on labelled training points for
vectors.

One object scores a set of samples against the data's held-out reference
(:class:`HeldoutScoring`): ``evaluate`` at every NFE and seed, the teacher block
of a run trained on teacher pairs (its pairs' x*, against the same reference at
the same n), and :func:`score` (``straightflow score``), which scores any samples
(a ``.npy``, an array, a pairs folder's x*) exactly as ``eval`` scores a run's.
Image samples are scored clamped to the data range [-1, 1] unless ``clamp=False``
(``--raw``); vectors and latents never are.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .conditioning import stratified_labels
from .data.pairs import PairData, teacher_info
from .errors import StraightflowError
from .metrics import curvature, energy_distance, nearest_neighbour_accuracy, prediction_drift, wasserstein2
from .metrics.frechet import classifier_accuracy, classifier_features
from .metrics.images import image_metric
from .noise import seeded_noise, stream_seed
from .objectives import VelocityObjective
from .run import Run, clamp_samples


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
        return {**self._w2("w2_floor", floor_reference, reference), "energy_floor": energy_distance(floor_reference, reference)}

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
QUALITY_METRICS: dict[str, Callable[[Run], QualityMetric]] = {"vector": lambda run: VectorQuality(), "image": image_metric,
                                                               "latent": lambda run: LatentQuality()}

#: generated samples per NFE by default: vectors (against as many held-out points)
VECTOR_N = 2000
#: generated images per NFE by default, scored against the whole held-out set: enough that one
#: noise seed's FD means something (docs/evaluation.md, "Defaults")
IMAGE_N = 5000
#: images whose paths the curvature and prediction drift follow by default (vectors: min(n, 2000));
#: a mean over pixels and 128 steps settles long before the quality metrics do, at a fraction of their cost
IMAGE_CURVATURE_N = 512
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


@torch.no_grad()
def _flow_loss(run: Run, x_all: torch.Tensor, z_all: torch.Tensor | None, labels: torch.Tensor | None, seed: int, batch_size: int) -> float:
    """The velocity loss (curvature paper Eq. 1) of ``x_all`` (model units) under the run's coupling;
    ``z_all``: the noise paired with each row (teacher pairs pass through the pair coupling as they are)."""
    g = torch.Generator(device=run.device).manual_seed(stream_seed("heldout-loss", seed))
    objective = VelocityObjective(run.cfg.t_min)
    total, count = 0.0, 0
    for s in range(0, x_all.shape[0], batch_size):
        x = x_all[s : s + batch_size].to(run.device)
        batch = x if z_all is None else (x, z_all[s : s + batch_size].to(run.device))
        y = None if labels is None else labels[s : s + batch_size].to(run.device)
        pair = run.module.coupling(batch, g, y)
        loss, _ = objective(run.velocity, pair.x, pair.z, g) if y is None else objective(run.velocity, pair.x, pair.z, g, y=y)
        total += float(loss) * x.shape[0]
        count += x.shape[0]
    return total / max(count, 1)


def heldout_flow_loss(run: Run, reference: torch.Tensor, seed: int = 0, batch_size: int = 1024, labels: torch.Tensor | None = None) -> float:
    """Eq. 8 upper bound: the flow loss on held-out data under the run's coupling (conditional on ``labels`` if given)."""
    return _flow_loss(run, run.data.normalize(reference.to(run.device)), None, labels, seed, batch_size)


def heldout_pair_flow_loss(run: Run, n: int, seed: int = 0, batch_size: int = 1024) -> float:
    """The flow loss of a run trained on teacher pairs on its own held-out pairs (x*, z) (the first ``n``;
    with their class labels for a conditional run): the loss it trained on, never on pairs it saw.
    Raises StraightflowError when the pairs folder is gone or holds no held-out pairs."""
    pairs = PairData.open(run.cfg.pairs, base=run.data, labels=run.conditional)
    if pairs.heldout == 0:
        raise StraightflowError(f"the pairs folder {run.cfg.pairs} holds no held-out pairs")
    x, z = pairs.heldout_pairs(max_n=n)
    labels = pairs.heldout_labels(max_n=n) if run.conditional else None
    return _flow_loss(run, x, z, labels, seed, batch_size)


#: ``flow_loss_source`` of a pair method's report (``flow_loss_note`` says why when it is not this)
FLOW_LOSS_FROM_PAIRS = "held-out teacher pairs"


def _flow_loss_report(run: Run, reference: torch.Tensor, n: int, seed: int, labels: torch.Tensor | None) -> dict:
    """``flow_loss_heldout``: on held-out data with the run's coupling, or for a run trained on teacher pairs
    on its held-out pairs (falling back to held-out data with independent noise, with a note, without them)."""
    if not run.method.trains_on_pairs:
        return {"flow_loss_heldout": heldout_flow_loss(run, reference, seed, labels=labels)}
    try:
        return {"flow_loss_heldout": heldout_pair_flow_loss(run, n, seed), "flow_loss_source": FLOW_LOSS_FROM_PAIRS}
    except StraightflowError as exc:
        return {"flow_loss_heldout": heldout_flow_loss(run, reference, seed, labels=labels), "flow_loss_source": "held-out data, independent noise",
                "flow_loss_note": f"held-out pairs unavailable ({exc}): flow loss on held-out data with independent noise instead"}


class ClassAccuracy:
    """How often conditional samples are of their requested class."""

    def __init__(self, data, seed: int):
        if data.kind == "image":
            self.name, self.classifier = "classifier_accuracy", classifier_features(data)[0]
        else:  # 1-NN on labelled training points (the floor draw: never the held-out set)
            self.name, self.classifier = "knn_accuracy", None
            self.points, self.point_labels = data.floor_reference_labeled(5000, seed + 7)

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
            raise StraightflowError("--reference holds no labels: a conditional run is evaluated against its data's labelled held-out set")
        self.data, self.metric, self.seed, self.clamp = data, metric, seed, clamp
        self.user_reference = reference is not None
        images = data.kind == "image"
        n_ref = ALL_HELDOUT if images else n  # images: always the whole held-out set
        self.ref_labels = self.floor_labels = None
        if labelled:
            self.ref, self.ref_labels = data.reference_labeled(n_ref, seed)
        else:
            self.ref = reference if reference is not None else data.reference(n_ref, seed)
        self.n = n if images or reference is not None else min(n, self.ref.shape[0])
        # the floor: held-out reference against a second sample of the run's data, as many points as are
        # generated (images: training images; with --reference: the run's own data against the user's)
        n_floor = self.n if images or reference is not None else self.ref.shape[0]
        if labelled:
            self.floor_ref, self.floor_labels = data.floor_reference_labeled(n_floor, seed)
        else:
            self.floor_ref = data.floor_reference(n_floor, seed)
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
            out["floor_note"] = (f"the floor sample holds all {self.floor_ref.shape[0]} training points, fewer than the {self.n} generated: "
                                 f"fd is biased by the set sizes, so a perfect model's fd at n={self.n} is somewhat below fd_floor "
                                 "(kid, precision and recall do not depend on it; docs/evaluation.md)")
        if self.data.kind == "image":
            out["clamped"] = bool(self.clamp)
        return out

    def class_floors(self) -> dict:
        """``classes``, ``per_class_floor`` and the held-out data's own class accuracy (``<accuracy>_floor``)."""
        if self.accuracy is None:
            return {}
        return {"classes": list(self.class_names),
                "per_class_floor": _per_class(self.metric, self.floor_ref, self.floor_labels, self.ref, self.ref_labels, self.class_names),
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
                entry[self.accuracy.name] = self.accuracy(samples[mask], labels[mask]) if bool(mask.any()) else float("nan")
        return row


def aggregate_seeds(rows: list[dict]) -> dict:
    """One row from the rows of several noise seeds: each float the mean, beside ``<key>_sd`` (the sample
    standard deviation over seeds; not for keys that are already ``*_sd``) and ``<key>_seeds`` (the values);
    ``sample_seconds`` summed, ``per_class`` entries aggregated alike, anything else from the first seed."""
    out: dict = {}
    for key, first in rows[0].items():
        values = [r.get(key) for r in rows]
        if key == "per_class":
            out[key] = [aggregate_seeds([r[key][i] for r in rows]) for i in range(len(first))]
        elif key == "sample_seconds":
            out[key] = float(sum(values))
        elif isinstance(first, float) and all(isinstance(v, float) for v in values):
            out[key] = statistics.fmean(values)
            if not key.endswith("_sd"):
                out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
                out[f"{key}_seeds"] = values
        else:
            out[key] = first
    return out


def evaluate(
    run: Run,
    nfes: list[int],
    solver: str | None = None,
    n: int | None = None,
    reference: torch.Tensor | None = None,
    seed: int = 0,
    curvature_n: int | None = None,
    progress: bool = False,
    guidance: float | None = None,
    seeds: int = 1,
    batch_size: int | None = None,
    clamp: bool = True,
) -> dict:
    """Quality per NFE (with its floor), curvature (Eq. 5), prediction drift, held-out flow loss
    (Eq. 8 bound; on the run's own held-out teacher pairs for a pair method) and the method's own
    extras; ``solver`` defaults to the method's own, ``n`` to :func:`default_n`.
    ``seeds`` > 1: quality at each NFE over the noise seeds ``seed .. seed + seeds - 1`` (mean, ``*_sd``, ``*_seeds``);
    the rest at ``seed``. ``progress``: one bar counting the generated samples. ``batch_size``: samples solved
    together (default 4096 on CUDA, 1024 elsewhere, so the bar moves).
    A conditional run is also scored per class, with the class accuracy of its samples, at ``guidance``.
    ``clamp``: image samples are scored clamped to the data range [-1, 1], as ``sample`` writes them
    (``clamped`` in the report); vectors and latents never are.
    A run trained on teacher pairs also reports its teacher's quality (``teacher``: the pairs' x*, scored
    against the same reference at the same n), or ``teacher_note`` when the pairs folder is gone."""
    if not nfes or any(k < 1 for k in nfes):
        raise StraightflowError(f"--nfe needs positive integers, got {nfes}")
    n = default_n(run.data) if n is None else n
    if seeds < 1:
        raise StraightflowError(f"--seeds must be >= 1, got {seeds}")
    if batch_size is not None and batch_size < 1:
        raise StraightflowError(f"--batch-size must be >= 1, got {batch_size}")
    if run.data.kind not in QUALITY_METRICS:
        raise StraightflowError(f"no quality metric for {run.data.kind} data")
    if not run.conditional and guidance is not None:
        raise StraightflowError(f"{run.dir} is not class-conditional (trained without --conditional): --guidance does not apply")
    if n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    metric = QUALITY_METRICS[run.data.kind](run)
    solver = solver or run.method.default_solver
    batch_size = batch_size or (4096 if torch.device(run.device).type == "cuda" else 1024)
    unguided = run.conditional and guidance is not None and float(guidance) == 0  # w = 0: no sample has a class to be scored by
    scoring = HeldoutScoring(run.data, metric, n, seed, reference, labelled=run.conditional, per_class=not unguided, clamp=clamp)
    n_eval, images = scoring.n, run.data.kind == "image"
    report: dict = {"method": run.cfg.method, "data": run.cfg.data, "run": str(run.dir), "step": run.step, **scoring.sizes(),
                    "seeds": list(range(seed, seed + seeds))}
    report.update(scoring.floors())
    z = seeded_noise(curvature_n or min(n_eval, IMAGE_CURVATURE_N if images else VECTOR_N), tuple(run.data.shape), seed, "curvature", run.prior)
    probs = run.data.class_probs() if run.conditional else None
    velocity = run.velocity_fn(stratified_labels(z.shape[0], probs) if run.conditional else None, guidance)
    report["curvature"] = curvature(velocity, z.to(run.device))
    report["prediction_drift"] = prediction_drift(velocity, z.to(run.device))  # temporal consistency of x_hat
    report.update(_flow_loss_report(run, scoring.ref, n_eval, seed, scoring.ref_labels))
    if run.conditional:
        report["guidance"] = 1.0 if guidance is None else float(guidance)
    if unguided:
        report["per_class_note"] = "guidance 0 samples unconditionally: no per-class scores or class accuracy"
    report.update(scoring.class_floors())
    results = []
    bar = tqdm(total=len(nfes) * seeds * n_eval, disable=not progress, desc="eval", unit="sample", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    try:
        for k in nfes:
            rows = []
            for s in range(seed, seed + seeds):
                bar.set_postfix_str(f"NFE {k}, seed {s}", refresh=False)
                rows.append(_score_nfe(run, scoring, k, solver, s, probs, guidance, batch_size, bar))
            results.append(rows[0] if seeds == 1 else aggregate_seeds(rows))
    finally:
        bar.close()
    report["results"] = results
    report.update(run.method.evaluate_extra(run, scoring.ref, n_eval, seed, list(nfes), solver, metric, labels=scoring.ref_labels, guidance=guidance))
    if run.method.trains_on_pairs and run.cfg.pairs:
        report.update(_teacher_report(run, scoring))
    return report


def _score_nfe(run, scoring: HeldoutScoring, k, solver, seed, probs, guidance, batch_size, bar) -> dict:
    """The result row of one NFE and one noise seed: quality (and, conditional, class accuracy and per-class quality)."""
    t0 = time.perf_counter()
    classes = stratified_labels(scoring.n, probs) if run.conditional else None
    weight = (1.0 if guidance is None else guidance) if run.conditional else None  # eval's default is w = 1, an export's recommendation or not
    out = run.sample(scoring.n, nfe=k, solver=solver, seed=seed, batch_size=batch_size, progress=bar, classes=classes, guidance=weight)
    seconds = time.perf_counter() - t0
    if not bool(torch.isfinite(out.samples).all()):
        raise StraightflowError(f"the samples of {run.dir} at NFE {out.nfe} ({out.solver}) are not finite: no quality can be measured")
    quality = scoring.score(out.samples, out.labels)
    per_class = {key: quality.pop(key) for key in [k for k in quality if k == "per_class" or k.endswith("_accuracy")]}
    row = {"nfe": out.nfe, "nfe_requested": k, "solver": solver, **quality, "sample_seconds": seconds}
    if out.note:  # e.g. Heun at even NFE evaluates the network at t = 0 (docs/api.md "Solvers")
        row["note"] = out.note
    if run.conditional:
        row["network_evals"] = out.network_evals
    row.update(per_class)
    return row


# ---------------------------------------------------------------- the teacher's quality: a pairs folder's x*
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


def _teacher_report(run: Run, scoring: HeldoutScoring) -> dict:
    """``teacher``: the quality of the student's pairs' x* against the student's own reference (same n), beside the teacher's
    solver and NFE; ``teacher_note`` when the pairs folder cannot be read."""
    try:
        pairs = PairData.open(run.cfg.pairs, base=run.data, labels=run.conditional)
    except StraightflowError as exc:
        return {"teacher_note": f"the teacher's quality is not measured: its pairs are unavailable ({exc})"}
    samples, labels, which = pair_samples(pairs, scoring.n)
    if samples.shape[0] < 2:
        return {"teacher_note": f"the teacher's quality is not measured: the pairs folder {run.cfg.pairs} holds {samples.shape[0]} pair(s)"}
    block = {**teacher_info(pairs.manifest, run.cfg.pairs), "samples": TEACHER_SOURCE, "which": which, "n": int(samples.shape[0])}
    block.update(scoring.score(samples, labels))
    return {"teacher": block}


def _spread_key(values: dict, key: str, suffix: str = "") -> str | None:
    """The key of ``key``'s spread in ``values``: its sd over noise seeds, else (KID) its sd over subsets."""
    for spread in (f"{key}_sd{suffix}", f"{key}_subset_sd{suffix}"):
        if isinstance(values.get(spread), float):
            return spread
    return None


def _value_text(values: dict, key: str, suffix: str = "") -> str:
    """``values[key + suffix]`` to 4 digits, with `` ± spread`` where it has one (:func:`_spread_key`)."""
    value = values[key + suffix]
    if not isinstance(value, float):
        return str(value)
    spread = _spread_key(values, key, suffix)
    return f"{value:.4g}" + (f" ± {values[spread]:.2g}" if spread else "")


def _is_spread(key: str) -> bool:
    return key.endswith(("_sd", "_seeds"))


def _row_head(row: dict) -> str:
    """The first two cells of a result row: solver and NFE (``eval``), or which set was scored (``score``)."""
    return f"{row['solver']:>7} {row['nfe']:>5}" if "nfe" in row else f"{row.get('set', 'samples'):>13}"


def _quality_keys(row: dict) -> list[str]:
    return [k for k in row if k not in ("nfe", "nfe_requested", "solver", "sample_seconds", "per_class", "features", "set")
            and not _is_note(k) and not _is_spread(k)]


def _teacher_text(report: dict, keys: list[str]) -> str | None:
    """The line of a pair-trained student's ``teacher`` block: its pairs' x* scored like the student's rows."""
    block = report.get("teacher")
    if not isinstance(block, dict):
        return None
    size = f", n={block['n']}" if block.get("n") != report.get("n") else ""
    guided = f", guidance {block['guidance']:g}" if isinstance(block.get("guidance"), float) else ""
    values = ", ".join(f"{k} {_value_text(block, k)}" for k in keys if k in block)
    return f"teacher ({block.get('samples', TEACHER_SOURCE)}, {block['solver']} NFE {block['nfe']}{guided}{size}): {values}"


def format_table(report: dict) -> str:
    """A plain-text quality-vs-NFE table (and, for a conditional run, one per class); a ``score`` report's
    one row alike. A value's `` ± x`` is its sd over the noise seeds (``--seeds``), or for kid on one
    seed its sd over subsets. A pair-trained student's teacher is a line below its rows."""
    results = report["results"]
    keys = _quality_keys(results[0])
    on_pairs = " (on held-out teacher pairs)" if report.get("flow_loss_source") == FLOW_LOSS_FROM_PAIRS else ""
    seeds = report.get("seeds") or [0]
    about = [f"n={report['n']}"]
    if report.get("n_reference", report["n"]) != report["n"]:
        about[0] += f" vs {report['n_reference']} reference"
    if report.get("features"):
        about.append(f"{report['features']} features")
    if isinstance(report.get("clamped"), bool):
        about.append("samples clamped to [-1, 1]" if report["clamped"] else "samples unclamped (--raw)")
    if len(seeds) > 1:
        about.append(f"mean ± sd over seeds {seeds[0]}-{seeds[-1]}")
    if isinstance(report.get("guidance"), float):  # every sampled number below, extras included, is at this weight
        about.append(f"guidance {report['guidance']:g}")
    if "method" in report:
        lines = [f"{report['method']} on {report['data']} (step {report['step']}, {', '.join(about)}): curvature {report['curvature']:.4g}, "
                 f"held-out flow loss {report['flow_loss_heldout']:.4g}{on_pairs}"]
    else:  # straightflow score
        teacher = report.get("teacher")
        made = f" ({teacher['samples']} of a {teacher['kind']} teacher, {teacher['solver']} NFE {teacher['nfe']})" if isinstance(teacher, dict) else ""
        lines = [f"score of {report['samples']}{made} against {report['data']} ({', '.join(about)})"]
    floors = [k for k, v in report.items() if k.endswith("_floor") and isinstance(v, float) and not _is_spread(k[:-6])]
    if floors:
        source = f" ({report['floor_source']})" if report.get("floor_source") == FLOOR_FROM_REFERENCE else ""
        size = f", n={report['n_floor']}" if "n_floor" in report and report["n_floor"] != report["n"] else ""
        lines.append(f"two-sample floor{source}{size}: " + ", ".join(f"{k[:-6]} {_value_text(report, k[:-6], '_floor')}" for k in floors))
    notes = row_notes(results)
    cells = [[_value_text(r, k) for k in keys] for r in results]
    widths = [max([10, len(k)] + [len(row[i]) for row in cells]) for i, k in enumerate(keys)]
    lines.append((f"{'solver':>7} {'NFE':>5} " if "nfe" in results[0] else f"{'':>13} ") + " ".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
    for r, row in zip(results, cells):
        marks = " ".join(notes[v] for v in notes_of(r))
        lines.append(f"{_row_head(r)} " + " ".join(f"{c:>{w}}" for c, w in zip(row, widths)) + (f"  {marks}" if marks else ""))
    lines.extend(f"{mark} {note}" for note, mark in notes.items())
    teacher_line = _teacher_text(report, keys) if "method" in report else None
    if teacher_line:
        lines.append(teacher_line)
    if "per_class" in results[0]:
        lines.extend(_class_table(report))
    # scalar keys added by the method's evaluate_extra (e.g. kl, recon_w2)
    shown = {"curvature", "flow_loss_heldout", "guidance", "kid_scale"}
    extra = {k: v for k, v in report.items() if isinstance(v, float) and k not in shown and not k.endswith("_floor")}
    if extra:
        lines.append("method extras: " + ", ".join(f"{k} {v:.4g}" for k, v in extra.items()))
    lines.extend(f"note: {v}" for k, v in report.items() if k.endswith("_note") and isinstance(v, str))
    return "\n".join(lines)


def _is_note(key: str) -> bool:
    return key == "note" or key.endswith("_note")


def notes_of(row: dict) -> list[str]:
    """A result row's caveats: ``note`` (the solver's) and ``*_note`` (a metric's), in order."""
    return [v for k, v in row.items() if _is_note(k) and isinstance(v, str) and v]


def row_notes(rows: list[dict]) -> dict[str, str]:
    """The distinct notes of result rows, each with the marker ("*", "**", ...) its rows carry in a table."""
    notes: dict[str, str] = {}
    for r in rows:
        for note in notes_of(r):
            if note not in notes:
                notes[note] = "*" * (len(notes) + 1)
    return notes


def _class_table(report: dict) -> list[str]:
    """Per-class rows: the quality metric and class accuracy at each NFE (or of the scored set), beside the class's floor."""
    metric = report["quality_metric"]
    acc = next(k for k in report["results"][0] if k.endswith("_accuracy"))
    floors = {row["class"]: row.get(metric) for row in report["per_class_floor"]}
    head = " ".join(f"{metric + ('@' + str(r['nfe']) if 'nfe' in r else ''):>10} {'acc':>6}" for r in report["results"])
    evals = [f"NFE {r['nfe']} -> {r['network_evals']}" for r in report["results"] if "network_evals" in r]
    about = [f"guidance {report['guidance']:g}"] if isinstance(report.get("guidance"), float) else []
    about.append(acc.replace("_", " "))
    if evals:
        about.append("network evaluations per sample: " + ", ".join(evals))
    lines = [f"per class ({'; '.join(about)})", f"{'class':>12} {'floor':>10} " + head]
    for i, name in enumerate(report["classes"]):
        cells = []
        for r in report["results"]:
            row = r["per_class"][i]
            value = row.get(metric)
            cells.append(f"{value:>10.4g} {row[acc]:>6.3f}" if value is not None else f"{'-':>10} {row[acc]:>6.3f}")
        floor = floors.get(name)
        lines.append(f"{name[:12]:>12} {floor if floor is None else format(floor, '.4g'):>10} " + " ".join(cells))
    return lines


# ---------------------------------------------------------------- straightflow score: any samples against the data
class _MetricTarget:
    """What a quality-metric factory (:data:`QUALITY_METRICS`) reads of a run: its data, device and Inception weights."""

    def __init__(self, data, device, inception_weights: str | None):
        self.data, self.device, self.inception_weights = data, device, inception_weights


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise StraightflowError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise StraightflowError(f"{what} {path} is a folder: give a .npy file" + (" (or a pairs folder)" if what == "samples" else ""))
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise StraightflowError(f"could not read {what} {path} as a .npy array ({first[0] if first else type(exc).__name__})") from None


def _as_samples(samples, shape: tuple[int, ...], where: str) -> torch.Tensor:
    arr = samples.detach().cpu().numpy() if torch.is_tensor(samples) else np.asarray(samples)
    if arr.dtype.kind not in "fiu":
        raise StraightflowError(f"samples {where} are of dtype {arr.dtype}; expected numbers")
    if arr.ndim < 2 or tuple(arr.shape[1:]) != tuple(shape):
        raise StraightflowError(f"samples {where} have shape {arr.shape}; the data's samples are N x {' x '.join(map(str, shape))}")
    if not np.isfinite(arr).all():
        raise StraightflowError(f"samples {where} contain non-finite values (NaN or inf)")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _as_labels(labels, count: int, names: tuple[str, ...], where: str) -> torch.Tensor:
    arr = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != count:
        raise StraightflowError(f"labels {where} have shape {arr.shape}; expected ({count},), one per sample")
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise StraightflowError(f"labels {where} must be integer class indices 0..{len(names) - 1}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
        raise StraightflowError(f"labels {where} must be in 0..{len(names) - 1} (the data's classes: {', '.join(names[:20])})")
    return torch.from_numpy(arr)


def is_pairs_folder(path) -> bool:
    """Whether ``path`` is a teacher-pairs folder (``straightflow pairs --out``)."""
    return isinstance(path, (str, Path)) and Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def score(samples, data=None, labels=None, n: int | None = None, seed: int = 0, clamp: bool = True, inception_weights: str | None = None,
          device: str = "cpu", data_options: dict | None = None) -> dict:
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
    from .data import DataSource, load_data
    from .data.pairs import read_manifest
    from .device import resolve_device

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
            raise StraightflowError(f"{folder} is a pairs folder: its x* carry their own labels (if any); --labels goes with a samples file")
        pairs = PairData.open(folder, base=source)
        values, labels, which = pair_samples(pairs, default_n(source) if n is None else n)
        n = int(values.shape[0])  # fewer than asked when the folder holds fewer pairs ("which" says so)
        teacher = {**teacher_info(pairs.manifest, folder), "samples": TEACHER_SOURCE, "which": which}
        name = str(folder)
    else:
        if data is None:
            raise StraightflowError("score needs --data (the data the samples are scored against), unless SAMPLES is a pairs folder")
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
        labels = _as_labels(_load_array(Path(labels), "labels") if isinstance(labels, (str, Path)) else labels, x.shape[0],
                            tuple(source.class_names), label_where)
    n = x.shape[0] if n is None else n
    if n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    if x.shape[0] < n:
        raise StraightflowError(f"-n {n}: {name} holds {x.shape[0]} samples")
    dev = resolve_device(device)
    metric = QUALITY_METRICS[source.kind](_MetricTarget(source, dev, inception_weights))
    scoring = HeldoutScoring(source, metric, n, seed, labelled=labels is not None, clamp=clamp)
    report: dict = {"samples": name, "data": data if isinstance(data, str) else source.name, **scoring.sizes(), "seed": seed}
    if teacher is not None:
        report["teacher"] = teacher
    report.update(scoring.floors())
    report.update(scoring.class_floors())
    row = {"set": TEACHER_SOURCE if teacher is not None else "samples", **scoring.score(x, labels)}
    report["results"] = [row]
    return report
