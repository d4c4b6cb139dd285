"""Watching a run while it trains (``docs/monitoring.md``).

:class:`QualityProbe` samples a fixed set of seeded noises with a velocity net at a
few NFEs and scores the samples against held-out data: W2 and the energy distance
for vectors, the Fréchet distance in the data's named feature space for images
(the metrics of ``straightflow eval``, on the same noise and reference as
``eval -n N``, seed 0: a log to watch, which chooses nothing). A run with
``--validation-fraction`` scores against the validation split carved from its
training data instead, which is what anything that *chooses* (``--beta auto``'s
pilots) must be judged on. :class:`TrainingMonitor` is what ``train`` runs on rank 0
with ``--tensorboard`` and / or ``--eval-every``: every logged stats line becomes
TensorBoard scalars (``train/<key>``), and every ``eval_every`` steps the EMA
weights are probed: one line in ``RUNDIR/quality.jsonl`` and, with TensorBoard,
``quality/<metric>_nfe<k>`` scalars and a sample grid (images) or scatter (2D
data) per NFE (``samples/nfe<k>``). Both use only the layers below training, and
neither draws from the training random streams, so monitoring never changes the
weights a run trains to.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..conditioning import GuidedVelocity, stratified_labels
from ..errors import StraightflowError
from ..formatting import significant_or_na
from ..metrics import energy_distance, wasserstein2
from ..metrics.frechet import FrechetDistance, feature_extractor
from ..noise import seeded_noise
from ..solvers import solve

#: where the monitor writes inside a run directory
TENSORBOARD_DIR = "tensorboard"
QUALITY_FILE = "quality.jsonl"
#: what a quality probe scores against: ``eval``'s held-out split (a log that chooses nothing), or the
#: validation split carved from the training data (``--validation-fraction``: what model selection is judged on)
PROBE_SPLITS = ("heldout", "validation")
#: samples drawn in a grid or scatter (the first ones of the probe's noise)
GRID_IMAGES = 64
SCATTER_POINTS = 1000


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line error naming the extra that provides it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise StraightflowError("--tensorboard needs the tensorboard package: pip install "
                                "'straightflow[tensorboard]'") from None
    return SummaryWriter


def read_records(path: str | Path) -> list[dict]:
    """The JSON lines of ``path`` (``stats.jsonl``, ``quality.jsonl``), one per step, sorted by step.

    A line that is not a JSON object with an integer ``step`` (e.g. half-written when a run was
    killed) is skipped; where a step occurs twice (a run resumed before its lines were truncated)
    the later line wins."""
    path = Path(path)
    if not path.is_file():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


@dataclass
class ProbeResult:
    """One quality check: the scores and the samples behind them."""

    #: ``<metric>_nfe<k>`` per NFE, the floors (``<metric>_floor``), ``features`` for images
    scores: dict[str, float | str | None]
    #: requested NFE -> (n, ...) samples in data units, CPU
    samples: dict[int, torch.Tensor] = field(default_factory=dict)
    labels: torch.Tensor | None = None  #: (n,) class of each sample (conditional nets)
    seconds: float = 0.0  #: wall time of the check
    #: with several draws: each draw's own scores (``scores`` is their mean)
    draws: list[dict] = field(default_factory=list)


class QualityProbe:
    """Quality of a velocity net at ``nfes`` on ``n`` fixed seeded noises (docs/monitoring.md).

    ``data``: the run's :class:`~straightflow.data.DataSource` (``split="heldout"``: its held-out
    ``reference(n, seed)`` is the reference, as in ``eval``; ``split="validation"``: its ``validation(n, seed)``,
    the split carved from the training data for choosing, never what ``eval`` reports on;
    ``floor_reference`` gives the two-sample floor); ``prior``: the noise prior
    (None = N(0, I)); ``solver``: the method's own. The noise of sample i is row i of the
    ``"sample"`` stream of ``seed``, as in ``Run.sample``, so successive checks are comparable.
    ``num_classes`` > 0: a conditional net, guidance 1, the samples' classes in proportion to the
    training class frequencies (as ``eval``'s, :func:`~straightflow.conditioning.stratified_labels`). The floor and the
    reference features are computed once, here. ``draws`` > 1: every score is the mean over that
    many independent draws of noise and held-out reference (seeds ``seed .. seed + draws - 1``):
    a finite-sample W2 or FD varies a lot from draw to draw (docs/kl_target.md measures it), and
    the mean of k draws varies about sqrt(k) times less; the samples returned are the first draw's.
    """

    def __init__(self, data, nfes: list[int], *, n: int = 256, solver: str = "euler", prior=None, seed: int = 0,
                 num_classes: int = 0, device: torch.device | str = "cpu", batch_size: int = 1024, draws: int = 1,
                 split: str = "heldout"):
        if draws < 1:
            raise StraightflowError(f"the quality probe needs at least one draw, got {draws}")
        if not nfes or min(nfes) < 1:
            raise StraightflowError(f"eval NFEs must be positive integers, got {nfes}")
        if n < 2:
            raise StraightflowError(f"the quality probe needs at least 2 samples, got {n}")
        if split not in PROBE_SPLITS:
            raise StraightflowError(f"unknown quality-probe split {split!r}: use one of {', '.join(PROBE_SPLITS)}")
        base = getattr(data, "base", data)  # teacher pairs: score against the data they stand for
        self.data, self.nfes, self.solver, self.device, self.batch_size = (
            base, list(nfes), solver, torch.device(device), batch_size)
        self.split = split
        self.reference, _ = base.validation(n, seed) if split == "validation" else base.reference(n, seed)
        self.n = min(n, int(self.reference.shape[0]))
        self.noise = seeded_noise(self.n, tuple(base.shape), seed, "sample", prior)
        # in proportion to the training classes, like `eval`: the reference is the held-out data,
        # classes mixed as they are
        self.labels = stratified_labels(self.n, base.class_probs()) if num_classes else None
        floor_reference, _ = base.floor_reference(int(self.reference.shape[0]), seed)
        if base.kind == "image":
            extractor, features = feature_extractor(base)
            self.frechet = FrechetDistance(extractor, features, device=self.device)
            self.floor = self.frechet.floor(self.reference, floor_reference)
        else:
            self.frechet = None
            self.floor = self._vector_scores(floor_reference, "floor")
        self.limits = _scatter_limits(self.reference) if base.kind == "vector" and tuple(base.shape) == (2,) else None
        self.draws = int(draws)
        self._more = [QualityProbe(data, nfes, n=n, solver=solver, prior=prior, seed=seed + d, num_classes=num_classes,
                                   device=device, batch_size=batch_size, split=split)
                      for d in range(1, draws)]

    def _vector_scores(self, samples: torch.Tensor, suffix: str) -> dict:
        return {f"w2_{suffix}": wasserstein2(samples, self.reference, []),
                f"energy_{suffix}": energy_distance(samples, self.reference)}

    def score(self, samples: torch.Tensor, nfe: int) -> dict:
        """The metric of ``samples`` (data units) against the reference, keyed ``<metric>_nfe<nfe>``."""
        if not bool(torch.isfinite(samples).all()):  # a diverging net: no score, but training goes on
            return {f"{k[: -len('_floor')]}_nfe{nfe}": None for k in self.floor if k.endswith("_floor")}
        if self.frechet is not None:  # images scored clamped to the data range [-1, 1], as eval scores them by default
            return {f"fd_nfe{nfe}": self.frechet.score(samples.clamp(-1.0, 1.0), self.reference)["fd"]}
        return self._vector_scores(samples, f"nfe{nfe}")

    @torch.inference_mode()
    def sample(self, velocity, nfe: int) -> torch.Tensor:
        """The probe's ``n`` samples of ``velocity`` (model units in, data units out, CPU) at ``nfe``."""
        outs = []
        for s in range(0, self.n, self.batch_size):
            v = (velocity if self.labels is None
                 else GuidedVelocity(velocity, self.labels[s : s + self.batch_size].to(self.device)))
            res = solve(v, self.noise[s : s + self.batch_size].to(self.device), self.solver, nfe)
            outs.append(self.data.denormalize(res.samples).float().cpu())
        return torch.cat(outs)

    def __call__(self, velocity) -> ProbeResult:
        """Sample and score ``velocity`` (e.g. the EMA's ``shadow.velocity``) at every NFE."""
        t0 = time.perf_counter()
        scores: dict = {k: v for k, v in self.floor.items() if not k.endswith("_note")}
        samples = {}
        for k in self.nfes:
            samples[k] = self.sample(velocity, k)
            scores.update(self.score(samples[k], k))
        draws = [scores] + [other(velocity).scores for other in self._more] if self._more else []
        if draws:
            scores = _mean_scores(draws)
        return ProbeResult(scores, samples, self.labels, time.perf_counter() - t0, draws)


def _mean_scores(draws: list[dict]) -> dict:
    """Key by key the mean of several draws' scores (None where any draw has none; text from the first)."""
    out = {}
    for key, first in draws[0].items():
        values = [d.get(key) for d in draws]
        if isinstance(first, (int, float)) and all(isinstance(v, (int, float)) for v in values):
            out[key] = float(sum(values) / len(values))
        else:
            out[key] = None if any(v is None for v in values) else first
    return out


def _scatter_limits(points: torch.Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    """Fixed axes for every scatter of a run: the reference's 0.5-99.5 percentiles, widened by a quarter."""
    lo, hi = torch.quantile(points.float(), torch.tensor([0.005, 0.995]), dim=0)
    pad = 0.25 * (hi - lo).clamp_min(1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def scatter_image(samples: torch.Tensor, reference: torch.Tensor, limits, *, title: str = "",
                  labels: torch.Tensor | None = None, size: float = 4.0, dpi: int = 80) -> np.ndarray:
    """2D ``samples`` (red, or coloured by class) over ``reference`` (grey) on fixed ``limits`` as an
    H x W x 3 uint8 image (matplotlib's Agg canvas; no pyplot, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size, size), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ref = reference[:SCATTER_POINTS].numpy()
    pts = samples[:SCATTER_POINTS].numpy()
    ax.scatter(ref[:, 0], ref[:, 1], s=3, c="0.75")
    colour = labels[:SCATTER_POINTS].numpy() if labels is not None else "tab:red"
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c=colour, cmap="tab10" if labels is not None else None)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def image_batch(images: torch.Tensor, labels: torch.Tensor | None = None, count: int = GRID_IMAGES, min_size: int = 32,
                pad: int = 2) -> torch.Tensor:
    """The first ``count`` images (in [-1, 1]; grouped by class when labelled) as an N x C x H x W batch
    in [0, 1] for ``SummaryWriter.add_images``, upscaled by nearest neighbours to at least ``min_size``
    pixels (8x8 digits stay visible) and framed by ``pad`` white pixels (TensorBoard tiles them edge to edge)."""
    x = images[:count]
    if labels is not None:
        x = x[torch.argsort(labels[:count], stable=True)]
    x = ((x.float().clamp(-1, 1) + 1) / 2).cpu()
    scale = max(1, math.ceil(min_size / max(x.shape[-2:])))
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.pad(x, (pad, pad, pad, pad), value=1.0) if pad else x


class TrainingMonitor:
    """Rank 0's monitor of a training run: TensorBoard scalars of every stats line, and quality checks.

    ``writer_dir``: where TensorBoard event files go (None: no TensorBoard); ``quality_file``:
    the JSON lines of the checks; ``probe``: a :class:`QualityProbe` (None: no checks). A run
    resumed at ``start_step`` continues in a new event file that purges the old files' events
    after that step, as ``stats.jsonl`` and ``quality.jsonl`` are truncated there.
    """

    def __init__(self, writer_dir: Path | None, quality_file: Path | None, probe: QualityProbe | None,
                 start_step: int = 0):
        self.probe, self.quality_file, self.writer = probe, quality_file, None
        if writer_dir is not None:
            writer_cls = summary_writer_class()
            # drop what an earlier launch logged after the checkpoint
            purge = start_step + 1 if Path(writer_dir).exists() else None
            self.writer = writer_cls(log_dir=str(writer_dir), purge_step=purge)

    def log_stats(self, record: dict) -> None:
        """One ``stats.jsonl`` line as ``train/<key>`` scalars at its ``step``."""
        if self.writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def check(self, step: int, velocity) -> ProbeResult:
        """Probe ``velocity`` (the EMA weights) at ``step``: a ``quality.jsonl`` line, TensorBoard
        ``quality/*`` scalars and ``samples/nfe<k>`` images. Never draws from the caller's random
        streams (the global CPU and CUDA generators are forked around it)."""
        devices = [self.probe.device] if self.probe.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            result = self.probe(velocity)
        record = {"step": step, "n": self.probe.n, "draws": self.probe.draws, "split": self.probe.split,
                  "solver": self.probe.solver, **result.scores,
                  "seconds": result.seconds}
        for key in result.scores if result.draws else ():  # each draw's score of every NFE: <metric>_nfe<k>_draws
            if "_nfe" in key:
                record[f"{key}_draws"] = [d.get(key) for d in result.draws]
        if self.quality_file is not None:
            with open(self.quality_file, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in result.scores.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"quality/{key}", value, step)
            for k, samples in result.samples.items():
                self._add_samples(f"samples/nfe{k}", samples, result.labels, step,
                                  f"step {step}, {self.probe.solver} NFE {k}")
            self.writer.flush()
        return result

    def _add_samples(self, tag: str, samples: torch.Tensor, labels, step: int, title: str) -> None:
        finite = bool(torch.isfinite(samples).all())
        if self.probe.data.kind == "image":
            self.writer.add_images(tag, image_batch(samples if finite else torch.zeros_like(samples), labels), step)
        elif self.probe.limits is not None:
            pts = samples if finite else torch.zeros(0, 2)
            self.writer.add_image(tag,
                                  scatter_image(pts, self.probe.reference, self.probe.limits, title=title,
                                                labels=labels), step,
                                  dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def summary_line(step: int, result: ProbeResult, nfes: list[int]) -> str:
    """``step 500 quality: w2 nfe1 1.23, nfe2 0.61, nfe100 0.15 (floor 0.12)`` (the first metric)."""
    metric = next(k[: -len("_floor")] for k in result.scores if k.endswith("_floor"))

    parts = ", ".join(f"nfe{k} {significant_or_na(result.scores.get(f'{metric}_nfe{k}'))}" for k in nfes)
    return (f"straightflow: step {step} quality: {metric} {parts} (floor "
            f"{significant_or_na(result.scores.get(f'{metric}_floor'))})")
