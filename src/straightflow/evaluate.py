"""``straightflow eval``: quality per NFE, curvature and held-out flow loss.

Quality metrics are chosen by the data kind (:data:`QUALITY_METRICS`, a static
table): W2 and the unbiased energy distance for vectors, a Fréchet distance in
a named feature space for images. Every report carries the metric's two-sample
floor. Each random draw has its own named stream (:mod:`straightflow.noise`),
so evaluation noise never shares a seed with reference data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from .errors import StraightflowError
from .metrics import curvature, energy_distance, prediction_drift, wasserstein2
from .metrics.frechet import frechet_metric
from .noise import seeded_noise, stream_seed
from .objectives import VelocityObjective
from .run import Run


class QualityMetric(Protocol):
    name: str

    def floor(self, reference: torch.Tensor, floor_reference: torch.Tensor) -> dict: ...

    def score(self, samples: torch.Tensor, reference: torch.Tensor) -> dict: ...


class VectorQuality:
    """Exact W2 (POT) and the unbiased energy distance."""

    name = "w2"

    def floor(self, reference, floor_reference):
        return {"w2_floor": wasserstein2(floor_reference, reference), "energy_floor": energy_distance(floor_reference, reference)}

    def score(self, samples, reference):
        return {"w2": wasserstein2(samples, reference), "energy": energy_distance(samples, reference)}


#: data kind -> factory(run) -> QualityMetric
QUALITY_METRICS: dict[str, Callable[[Run], QualityMetric]] = {"vector": lambda run: VectorQuality(), "image": frechet_metric}


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
def heldout_flow_loss(run: Run, reference: torch.Tensor, seed: int = 0, batch_size: int = 1024) -> float:
    """Eq. 8 upper bound: the flow loss on held-out data under the run's coupling."""
    g = torch.Generator(device=run.device).manual_seed(stream_seed("heldout-loss", seed))
    objective = VelocityObjective(run.cfg.t_min)
    total, count = 0.0, 0
    x_all = run.data.normalize(reference.to(run.device))
    for s in range(0, x_all.shape[0], batch_size):
        x = x_all[s : s + batch_size]
        pair = run.module.coupling(x, g)
        loss, _ = objective(run.velocity, pair.x, pair.z, g)
        total += float(loss) * x.shape[0]
        count += x.shape[0]
    return total / max(count, 1)


def evaluate(
    run: Run,
    nfes: list[int],
    solver: str | None = None,
    n: int = 2000,
    reference: torch.Tensor | None = None,
    seed: int = 0,
    curvature_n: int | None = None,
    progress: bool = False,
) -> dict:
    """Quality per NFE (with its floor), curvature (Eq. 5), prediction drift, held-out flow loss
    (Eq. 8 bound) and the method's own extras; ``solver`` defaults to the method's own."""
    if not nfes or any(k < 1 for k in nfes):
        raise StraightflowError(f"--nfe needs positive integers, got {nfes}")
    if n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    if reference is not None and reference.shape[0] < 2:
        raise StraightflowError(f"the reference holds {reference.shape[0]} sample(s); it needs at least 2")
    if run.data.kind not in QUALITY_METRICS:
        raise StraightflowError(f"no quality metric for {run.data.kind} data")
    metric = QUALITY_METRICS[run.data.kind](run)
    solver = solver or run.method.default_solver
    ref = reference if reference is not None else run.data.reference(n, seed)
    n_eval = min(n, ref.shape[0]) if reference is None else n
    floor_ref = run.data.floor_reference(ref.shape[0], seed)
    report: dict = {
        "method": run.cfg.method,
        "data": run.cfg.data,
        "run": str(run.dir),
        "step": run.step,
        "quality_metric": metric.name,
        "n": n_eval,
        "n_reference": int(ref.shape[0]),
    }
    report.update(metric.floor(ref, floor_ref) if reference is None else {})
    z = seeded_noise(curvature_n or min(n_eval, 2000), tuple(run.data.shape), seed, "curvature", run.prior)
    report["curvature"] = curvature(run.velocity, z.to(run.device))
    report["prediction_drift"] = prediction_drift(run.velocity, z.to(run.device))  # temporal consistency of x_hat
    report["flow_loss_heldout"] = heldout_flow_loss(run, ref, seed)
    results = []
    for k in nfes:
        t0 = time.perf_counter()
        out = run.sample(n_eval, nfe=k, solver=solver, seed=seed, progress=progress)
        seconds = time.perf_counter() - t0
        if not bool(torch.isfinite(out.samples).all()):
            raise StraightflowError(f"the samples of {run.dir} at NFE {out.nfe} ({out.solver}) are not finite: no quality can be measured")
        row = {"nfe": out.nfe, "nfe_requested": k, "solver": solver, **metric.score(out.samples, ref), "sample_seconds": seconds}
        results.append(row)
    report["results"] = results
    report.update(run.method.evaluate_extra(run, ref, n_eval, seed, list(nfes), solver, metric))
    return report


def format_table(report: dict) -> str:
    """A plain-text quality-vs-NFE table."""
    keys = [k for k in report["results"][0] if k not in ("nfe", "nfe_requested", "solver", "sample_seconds")]
    lines = [f"{report['method']} on {report['data']} (step {report['step']}, n={report['n']}): curvature {report['curvature']:.4g}, held-out flow loss {report['flow_loss_heldout']:.4g}"]
    floors = {k: v for k, v in report.items() if k.endswith("_floor")}
    if floors:
        lines.append("two-sample floor: " + ", ".join(f"{k[:-6]} {v:.4g}" for k, v in floors.items()))
    lines.append(f"{'solver':>7} {'NFE':>5} " + " ".join(f"{k:>10}" for k in keys))
    for r in report["results"]:
        lines.append(f"{r['solver']:>7} {r['nfe']:>5} " + " ".join(f"{r[k]:>10.4g}" if isinstance(r[k], float) else f"{str(r[k]):>10}" for k in keys))
    # scalar keys added by the method's evaluate_extra (e.g. kl, recon_w2)
    shown = {"curvature", "flow_loss_heldout"}
    extra = {k: v for k, v in report.items() if isinstance(v, float) and k not in shown and not k.endswith("_floor")}
    if extra:
        lines.append("method extras: " + ", ".join(f"{k} {v:.4g}" for k, v in extra.items()))
    return "\n".join(lines)
