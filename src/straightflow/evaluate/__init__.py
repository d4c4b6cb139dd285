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

import math
import statistics
import sys
import time

import torch
from tqdm.auto import tqdm

from ..conditioning import stratified_labels
from ..data.pairs import PairData, teacher_info
from ..errors import StraightflowError
from ..metrics import curvature, prediction_drift
from ..noise import seeded_noise, stream_seed
from ..objectives import VelocityObjective
from ..run import Run
from ..solvers import check_solver
from .scoring import (
    ALL_HELDOUT,
    FLOOR_FROM_DATA,
    FLOOR_FROM_REFERENCE,
    FLOW_LOSS_FROM_PAIRS,
    IMAGE_N,
    QUALITY_METRICS,
    TEACHER_SOURCE,
    VECTOR_N,
    ClassAccuracy,
    HeldoutScoring,
    LatentQuality,
    QualityMetric,
    VectorQuality,
    default_n,
    is_pairs_folder,
    load_reference,
    pair_samples,
    score,
)
from .table import format_table, notes_of, row_notes

__all__ = [
    "evaluate", "score", "format_table", "notes_of", "row_notes", "aggregate_seeds", "heldout_flow_loss",
    "heldout_pair_flow_loss", "default_n", "load_reference", "is_pairs_folder", "pair_samples", "HeldoutScoring",
    "ClassAccuracy", "QualityMetric", "VectorQuality", "LatentQuality", "QUALITY_METRICS", "FLOOR_FROM_DATA",
    "FLOOR_FROM_REFERENCE", "FLOW_LOSS_FROM_PAIRS", "TEACHER_SOURCE", "VECTOR_N", "IMAGE_N", "IMAGE_CURVATURE_N",
    "ALL_HELDOUT",
]


#: images whose paths the curvature and prediction drift follow by default (vectors: min(n, 2000));
#: a mean over pixels and 128 steps settles long before the quality metrics do, at a fraction of their cost
IMAGE_CURVATURE_N = 512


@torch.no_grad()
def _flow_loss(run: Run, x_all: torch.Tensor, z_all: torch.Tensor | None, labels: torch.Tensor | None, seed: int,
               batch_size: int) -> float:
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
        loss, _ = (objective(run.velocity, pair.x, pair.z, g)
                   if y is None else objective(run.velocity, pair.x, pair.z, g, y=y))
        total += float(loss) * x.shape[0]
        count += x.shape[0]
    return total / max(count, 1)


def heldout_flow_loss(run: Run, reference: torch.Tensor, seed: int = 0, batch_size: int = 1024,
                      labels: torch.Tensor | None = None) -> float:
    """Eq. 8 upper bound: the flow loss on held-out data under the run's coupling (conditional on ``labels`` if
    given)."""
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


def _flow_loss_report(run: Run, reference: torch.Tensor, n: int, seed: int, labels: torch.Tensor | None) -> dict:
    """``flow_loss_heldout``: on held-out data with the run's coupling, or for a run trained on teacher pairs
    on its held-out pairs (falling back to held-out data with independent noise, with a note, without them)."""
    if not run.method.trains_on_pairs:
        return {"flow_loss_heldout": heldout_flow_loss(run, reference, seed, labels=labels)}
    try:
        return {"flow_loss_heldout": heldout_pair_flow_loss(run, n, seed), "flow_loss_source": FLOW_LOSS_FROM_PAIRS}
    except StraightflowError as exc:
        return {"flow_loss_heldout": heldout_flow_loss(run, reference, seed, labels=labels),
                "flow_loss_source": "held-out data, independent noise",
                "flow_loss_note": f"held-out pairs unavailable ({exc}): flow loss on held-out data with independent "
                                  "noise instead"}


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


def check_evaluation(run: Run, nfes: list[int], *, solver: str | None = None, n: int | None = None,
                     guidance: float | None = None, seeds: int = 1,
                     batch_size: int | None = None) -> tuple[int, str, int]:
    """The errors :func:`evaluate` gives before any work, and its defaults: ``(n, solver, batch_size)``."""
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
        raise StraightflowError(f"{run.dir} is not class-conditional (trained without --conditional): --guidance "
                                "does not apply")
    if n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    solver = solver or run.method.default_solver
    for k in nfes:
        check_solver(solver, k)
    if guidance is not None and not math.isfinite(guidance):
        raise StraightflowError(f"--guidance must be a finite number, got {guidance}")
    return n, solver, batch_size or (4096 if torch.device(run.device).type == "cuda" else 1024)


def evaluation_plan(run: Run, nfes: list[int], *, solver: str | None = None, n: int | None = None,
                    guidance: float | None = None, seeds: int = 1, seed: int = 0, batch_size: int | None = None,
                    reference: torch.Tensor | None = None) -> str:
    """What :func:`evaluate` would do, checked without sampling (``eval --dry-run``): the run, the NFEs and solver,
    the samples and the reference they are scored against."""
    n, solver, batch_size = check_evaluation(run, nfes, solver=solver, n=n, guidance=guidance, seeds=seeds,
                                             batch_size=batch_size)
    ref = reference if reference is not None else run.data.reference(ALL_HELDOUT if run.data.kind == "image" else n,
                                                                     seed)[0]
    n_scored = n if run.data.kind == "image" or reference is not None else min(n, ref.shape[0])
    where = "the --reference file" if reference is not None else "the held-out split"
    return (f"would evaluate {run.dir} (step {run.step}, {run.cfg.method}) at NFE {','.join(map(str, nfes))} with "
            f"{solver}: {n_scored} samples x {seeds} noise seed(s) from {seed}, scored against {ref.shape[0]} points "
            f"of {where}" + (f", guidance {1.0 if guidance is None else guidance:g}" if run.conditional else "")
            + f", batches of {batch_size}")


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
    n, solver, batch_size = check_evaluation(run, nfes, solver=solver, n=n, guidance=guidance, seeds=seeds,
                                             batch_size=batch_size)
    metric = QUALITY_METRICS[run.data.kind](run)
    # w = 0: no sample has a class to be scored by
    unguided = run.conditional and guidance is not None and float(guidance) == 0
    scoring = HeldoutScoring(run.data, metric, n, seed, reference, labelled=run.conditional, per_class=not unguided,
                             clamp=clamp)
    n_eval, images = scoring.n, run.data.kind == "image"
    report: dict = {"method": run.cfg.method, "data": run.cfg.data, "run": str(run.dir), "step": run.step,
                    **scoring.sizes(), "seeds": list(range(seed, seed + seeds))}
    if run.fitted_prior:  # sampling noise from the mixture fitted to the aggregate posterior (docs/guide.md)
        report["noise"] = run.sampling_prior.describe()
    report.update(scoring.floors())
    z = seeded_noise(curvature_n or min(n_eval, IMAGE_CURVATURE_N if images else VECTOR_N), tuple(run.data.shape), seed,
                     "curvature", run.sampling_prior)
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
    bar = tqdm(total=len(nfes) * seeds * n_eval, disable=not progress, desc="eval", unit="sample", dynamic_ncols=True,
               mininterval=0.5, file=sys.stderr)
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
    report.update(run.method.evaluate_extra(run, scoring.ref, n_eval, seed, list(nfes), solver, metric,
                                            labels=scoring.ref_labels, guidance=guidance))
    if run.method.trains_on_pairs and run.cfg.pairs:
        report.update(_teacher_report(run, scoring))
    return report


def _score_nfe(run, scoring: HeldoutScoring, k, solver, seed, probs, guidance, batch_size, bar) -> dict:
    """The result row of one NFE and one noise seed: quality (and, conditional, class accuracy and per-class
    quality)."""
    t0 = time.perf_counter()
    classes = stratified_labels(scoring.n, probs) if run.conditional else None
    # eval's default is w = 1, an export's recommendation or not
    weight = (1.0 if guidance is None else guidance) if run.conditional else None
    out = run.sample(scoring.n, nfe=k, solver=solver, seed=seed, batch_size=batch_size, progress=bar, classes=classes,
                     guidance=weight)
    seconds = time.perf_counter() - t0
    if not bool(torch.isfinite(out.samples).all()):
        raise StraightflowError(f"the samples of {run.dir} at NFE {out.nfe} ({out.solver}) are not finite: no quality "
                                "can be measured")
    quality = scoring.score(out.samples, out.labels)
    per_class = {key: quality.pop(key) for key in [k for k in quality if k == "per_class" or k.endswith("_accuracy")]}
    row = {"nfe": out.nfe, "nfe_requested": k, "solver": solver, **quality, "sample_seconds": seconds}
    if out.note:  # e.g. Heun at even NFE evaluates the network at t = 0 (docs/api.md "Solvers")
        row["note"] = out.note
    if run.conditional:
        row["network_evals"] = out.network_evals
    row.update(per_class)
    return row


def _teacher_report(run: Run, scoring: HeldoutScoring) -> dict:
    """``teacher``: the quality of the student's pairs' x* against the student's own reference (same n), beside the
    teacher's solver and NFE; ``teacher_note`` when the pairs folder cannot be read."""
    try:
        pairs = PairData.open(run.cfg.pairs, base=run.data, labels=run.conditional)
    except StraightflowError as exc:
        return {"teacher_note": f"the teacher's quality is not measured: its pairs are unavailable ({exc})"}
    samples, labels, which = pair_samples(pairs, scoring.n)
    if samples.shape[0] < 2:
        return {"teacher_note": f"the teacher's quality is not measured: the pairs folder {run.cfg.pairs} holds "
                                f"{samples.shape[0]} pair(s)"}
    block = {**teacher_info(pairs.manifest, run.cfg.pairs), "samples": TEACHER_SOURCE, "which": which,
             "n": int(samples.shape[0])}
    block.update(scoring.score(samples, labels))
    return {"teacher": block}
