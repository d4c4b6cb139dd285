"""``plot --kind loss``: what a run logged while it trained, against the step (``docs/monitoring.md``).

Reads ``stats.jsonl`` (loss, lr, steps/s, the coupling's and the objective's stats: one
panel each) and, when the run was trained with ``--eval-every``, ``quality.jsonl`` (one
panel per quality metric, a line per NFE and the two-sample floor dashed). Needs no
checkpoint and samples nothing, so it works on a run that is still training, stopped
early or was resumed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import StraightflowError
from ..training.monitor import QUALITY_FILE, read_records
from .figure import save, subplots

STATS_FILE = "stats.jsonl"
#: stats drawn last, in this order (bookkeeping rather than the objective)
_LAST = ("grad_norm", "lr", "steps_per_sec")
_QUALITY_KEY = re.compile(r"^(?P<metric>.+)_nfe(?P<nfe>\d+)$")


@dataclass
class LossPlot:
    """What :func:`plot_loss` drew."""

    out: Path  #: the figure file
    #: line label -> (steps, values): ``loss``, ``lr``, ... and ``quality/<metric>_nfe<k>``, ``quality/<metric>_floor``
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    panels: list[str] = field(default_factory=list)  #: panel titles, in drawing order


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], float(r[key])) for r in records
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
           and math.isfinite(float(r[key]))]
    return [s for s, _ in pts], [v for _, v in pts]


def _title(run_dir: Path) -> str:
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        return f"{run_dir.name}: {cfg.get('method', '?')} on {Path(str(cfg.get('data', '?'))).name}"
    except (OSError, yaml.YAMLError, AttributeError):
        return run_dir.name


def plot_loss(run, out: Path, n: int | None = None, nfe: int | None = None, solver: str | None = None, seed: int = 0,
              classes=None, guidance: float | None = None) -> LossPlot:
    """Every logged stat of ``run`` (a :class:`~straightflow.run.Run` or a run directory) against the step,
    one panel each (log scale where a positive stat spans a factor of 10 or more), then the in-training
    quality. ``n``, ``nfe``, ``solver``, ``classes`` and ``guidance`` do not apply (nothing is sampled)."""
    given = [flag
             for flag, value in (("-n", n), ("--nfe", nfe), ("--solver", solver), ("--class", classes),
                                 ("--guidance", guidance))
             if value is not None]
    if given:
        raise StraightflowError(f"plot --kind loss draws the logged {STATS_FILE}; {', '.join(given)} "
                                f"{'does' if len(given) == 1 else 'do'} not apply")
    run_dir = Path(getattr(run, "dir", run))
    if not run_dir.is_dir():
        raise StraightflowError(f"{run_dir} is not a run directory")
    stats = read_records(run_dir / STATS_FILE)
    if not stats:
        raise StraightflowError(f"{run_dir} has no training stats ({STATS_FILE} is missing or holds no logged step): "
                                "nothing to plot")
    quality = read_records(run_dir / QUALITY_FILE)

    keys = sorted({k for r in stats for k in r if k != "step"},
                  key=lambda k: (k != "loss", k in _LAST, _LAST.index(k) if k in _LAST else 0, k))
    panels: list[tuple[str, dict[str, tuple[list[int], list[float]]]]] = []
    loss = _series(stats, "loss")
    for key in keys:
        s = _series(stats, key)
        if s[0] and (key == "loss" or s != loss):  # e.g. rectified's flow_loss is its loss: not drawn twice
            panels.append((key, {key: s}))
    by_metric: dict[str, list[tuple[int, str]]] = {}  # metric -> (nfe, key), the floor last
    for key in {k for r in quality for k in r}:
        m = _QUALITY_KEY.match(key)
        if m:
            by_metric.setdefault(m["metric"], []).append((int(m["nfe"]), key))
    for metric in sorted(by_metric):
        lines = {f"quality/{key}": _series(quality, key)
                 for _, key in sorted(by_metric[metric]) + [(0, f"{metric}_floor")]}
        lines = {label: s for label, s in lines.items() if s[0]}
        if any(not label.endswith("_floor") for label in lines):
            panels.append((f"{metric} (EMA, in training)", lines))

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(4.0 * ncols, 2.6 * nrows + 0.4), squeeze=False)
    result = LossPlot(Path(out))
    for i, (title, lines) in enumerate(panels):
        ax = axes[i // ncols, i % ncols]
        values = []
        for label, (steps, ys) in lines.items():
            floor = label.endswith("_floor")
            few = len(steps) <= 3
            ax.plot(steps, ys, lw=1.0, ls="--" if floor else "-", c="0.5" if floor else None,
                    marker="o" if few else None, ms=3,
                    label=("floor" if floor else f"NFE {_QUALITY_KEY.match(label.split('/', 1)[1])['nfe']}")
                          if label.startswith("quality/") else None)
            result.series[label] = (steps, ys)
            values += ys
        if min(values) > 0 and max(values) >= 10 * min(values) and title not in ("lr", "steps_per_sec"):
            ax.set_yscale("log")
        if len(lines) > 1:
            ax.legend(fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if i // ncols == nrows - 1 or i + ncols >= len(panels):
            ax.set_xlabel("step", fontsize=8)
        result.panels.append(title)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.suptitle(_title(run_dir), fontsize=9)
    save(fig, Path(out))
    return result
