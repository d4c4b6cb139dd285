"""Beta sweeps of the curvature method: one run per beta, evaluated and tabulated (``straightflow sweep``).

    straightflow sweep --data moons --betas 0.3,1,3,10,30,inf --steps 3000 --out runs/sweep-moons

trains ``DIR/beta-<b>/`` for each beta sequentially (``inf`` is the baseline,
``--method rectified``: the paper's beta -> infinity limit), evaluates each
(quality per NFE, curvature (Eq. 5), held-out flow loss (Eq. 8 bound), KL and
reconstruction quality (Fig. 8)), and writes

* ``DIR/sweep.json`` - every run's full evaluation report,
* ``DIR/sweep.md`` - the table (beta, curvature, quality at each NFE, KL, reconstruction),
* ``DIR/curvature_vs_beta.png`` (Fig. 5), ``DIR/quality_vs_nfe.png`` (Fig. 7),
  ``DIR/recon_gap.png`` (Fig. 8a) and, for 2D data, ``DIR/trajectories.png`` (Fig. 4).

Trainings run one after another here; with several CUDA devices (or ``--jobs K``)
K betas train at once as separate ``straightflow train`` processes, one device each.

Resumable: a beta whose run already reached ``--steps`` is not retrained (a
partial one is resumed from its checkpoint), and its evaluation is reused when
it was made with the same step, NFEs, solver, n and seed (``DIR/beta-<b>/eval.json``).
Any other ``train`` flag (``--width``, ``--lr``, ``--encoder``, ...) is passed to every run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from ..config import TrainConfig
from ..errors import StraightflowError
from ..formatting import beta_label, significant

# torch, the plots and the training loop are imported where used: `straightflow sweep --help`
# reads SWEEP_FIELDS and parse_betas from here without them

#: config fields the sweep sets itself (not passed through to every run)
SWEEP_FIELDS = {"data", "method", "out", "steps", "batch_size", "seed", "beta"}


def parse_betas(text: str) -> list[float]:
    betas = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            b = float(item)
        except ValueError:
            raise StraightflowError(f"--betas: {item!r} is not a number (use e.g. 0.3,1,3,10,inf)") from None
        if math.isnan(b) or b < 0:
            raise StraightflowError(f"--betas: beta must be >= 0 or inf, got {item}")
        betas.append(b)
    if not betas:
        raise StraightflowError("--betas: give at least one beta")
    if len(set(betas)) != len(betas):
        raise StraightflowError(f"--betas: repeated values in {text!r}")
    return betas


def _trained_step(run_dir: Path) -> int:
    from ..checkpoint import latest_checkpoint, read_meta

    ckpt = latest_checkpoint(run_dir)
    return int(read_meta(ckpt).get("step", 0)) if ckpt is not None else 0


def _run_overrides(run_dir: Path, beta: float, overrides: dict) -> dict:
    """The train fields of one beta's run: ``inf`` is the baseline (``--method rectified``)."""
    kw = dict(overrides, out=str(run_dir))
    if math.isinf(beta):
        kw["method"] = "rectified"
    else:
        kw.update(method="curvature", beta=beta)
    return kw


def _train_one(run_dir: Path, beta: float, overrides: dict, config_file: str | None, log,
               dry_run: bool = False) -> None:
    from ..training import train

    kw = _run_overrides(run_dir, beta, overrides)
    done = _trained_step(run_dir)
    if done >= kw["steps"] and not dry_run:
        log(f"sweep: beta={beta_label(beta)}: already trained to step {done}, skipping training")
        return
    resume = (run_dir / "config.yaml").exists()
    if resume:
        log(f"sweep: beta={beta_label(beta)}: resuming from step {done}")
    train(config_file=config_file, resume=resume, dry_run=dry_run, **kw)


def _cli_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _train_argv(run_dir: Path, beta: float, overrides: dict, config_file: str | None) -> list[str]:
    """``python -m straightflow train ...`` for one beta (resuming a partial run)."""
    kw = _run_overrides(run_dir, beta, overrides)
    argv = [sys.executable, "-m", "straightflow", "train"]
    for key, value in kw.items():
        argv += ["--" + key.replace("_", "-"), _cli_value(value)]
    if config_file:
        argv += ["--config", str(config_file)]
    if (run_dir / "config.yaml").exists():
        argv.append("--resume")
    return argv


def default_jobs(device: str) -> int:
    """Parallel trainings by default: one per CUDA device when there are several, else 1."""
    import torch

    if device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return torch.cuda.device_count()
    return 1


def _train_parallel(out: Path, betas: list[float], overrides: dict, config_file: str | None, jobs: int, log) -> None:
    """Train the betas not yet done as ``jobs`` concurrent ``straightflow train`` processes.

    On CUDA, process k sees only device ``k % device_count`` (``CUDA_VISIBLE_DEVICES``);
    on the CPU the cores are shared out (``OMP_NUM_THREADS``). Each process logs to
    ``DIR/beta-<b>.train.log``; a failure names the beta and its log.
    """
    import queue
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    import torch

    todo = [b for b in betas if _trained_step(out / f"beta-{beta_label(b)}") < overrides["steps"]]
    for b in betas:
        if b not in todo:
            log(f"sweep: beta={beta_label(b)}: already trained, skipping training")
    if not todo:
        return
    use_cuda = overrides.get("device", "auto") != "cpu" and torch.cuda.is_available()
    n_dev = torch.cuda.device_count() if use_cuda else 0
    slots: queue.Queue = queue.Queue()
    for k in range(jobs):
        slots.put(k)

    def one(beta: float) -> tuple[float, int, Path]:
        run_dir = out / f"beta-{beta_label(beta)}"
        slot = slots.get()
        env = dict(os.environ)
        if n_dev:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % n_dev)
        else:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
        log_path = out / f"beta-{beta_label(beta)}.train.log"
        log(f"sweep: beta={beta_label(beta)} -> {run_dir} (job {slot}{', cuda:' + str(slot % n_dev) if n_dev else ''}; "
            f"log {log_path})")
        try:
            with open(log_path, "w") as fh:
                code = subprocess.call(_train_argv(run_dir, beta, overrides, config_file), env=env, stdout=fh,
                                       stderr=subprocess.STDOUT)
        finally:
            slots.put(slot)
        return beta, code, log_path

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, todo))
    failed = [(b, p) for b, code, p in results if code != 0]
    if failed:
        b, p = failed[0]
        last = (p.read_text().strip().splitlines() or ["(empty log)"])[-1]
        raise StraightflowError(f"sweep: training beta={beta_label(b)} failed ({last}); see {p}")


def _evaluate_one(run_dir: Path, nfes: list[int], solver: str | None, n: int | None, seed: int, device: str, log,
                  progress: bool) -> dict:
    from ..evaluate import default_n, evaluate
    from ..run import Run

    run = Run.load(run_dir, device=device)
    solver = solver or run.method.default_solver
    n = default_n(run.data) if n is None else n
    key = {"step": run.step, "nfe": list(nfes), "solver": solver, "n": n, "seed": seed}
    cache = run_dir / "eval.json"
    if cache.exists():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                log(f"sweep: {run_dir.name}: reusing {cache}")
                return saved["report"]
        except (json.JSONDecodeError, KeyError):
            pass
    report = evaluate(run, nfes, solver=solver, n=n, seed=seed, progress=progress)
    cache.write_text(json.dumps({"key": key, "report": report}, indent=1))
    return report


def _quality_at(report: dict, key: str, nfe: int):
    return next((r.get(key) for r in report["results"] if r["nfe_requested"] == nfe), None)


def format_sweep_table(sweep: dict) -> str:
    """Markdown table: beta, curvature, quality at each NFE, KL, reconstruction quality."""
    from ..evaluate import notes_of, row_notes

    key, nfes = sweep["quality_metric"], sweep["nfe"]
    top = max(nfes)
    base = next((r for r in sweep["runs"] if r["beta"] == "inf"), None)
    notes = row_notes([r for run in sweep["runs"] for r in run["report"]["results"]])
    marks = {k: " ".join(dict.fromkeys(notes[v] for run in sweep["runs"] for r in run["report"]["results"]
                                       if r["nfe_requested"] == k for v in notes_of(r))) for k in nfes}
    head = ["beta", "method", "curvature"] + [f"{key} NFE {k}" + (f" {marks[k]}" if marks[k] else "") for k in nfes]
    head += ["KL (held-out)", f"recon {key} NFE {top}", "flow loss (held-out)"]
    if base is not None:
        head += ["curvature / baseline", f"{key} NFE {min(nfes)} / baseline"]
    lines = [
        f"# beta sweep on {sweep['data']}: {sweep['steps']} steps, batch {sweep['batch_size']}, solver "
        f"{sweep['solver']}, n = {sweep['n']}",
        "",
    ]
    floor = sweep.get("floor") or {}
    if floor:
        lines += ["two-sample floor: " + ", ".join(f"{k[:-6]} {v:.4g}" for k, v in floor.items()), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(sweep["runs"], key=lambda r: math.inf if r["beta"] == "inf" else r["beta"])
    for r in order:
        rep = r["report"]
        cells = ([beta_label(float(r["beta"])), r["method"], significant(rep["curvature"])]
                 + [significant(_quality_at(rep, key, k)) for k in nfes])
        cells += [significant(rep.get("kl", 0.0 if r["beta"] == "inf" else None)), significant(rep.get(f"recon_{key}")),
                  significant(rep["flow_loss_heldout"])]
        if base is not None:
            b = base["report"]
            q, qb = _quality_at(rep, key, min(nfes)), _quality_at(b, key, min(nfes))
            cells += [significant(rep["curvature"] / b["curvature"]) if b["curvature"] else "-",
                      significant(q / qb) if q is not None and qb else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += [""] + [f"{mark} {note}" for note, mark in notes.items()]
    return "\n".join(lines)


def _check_sweep(nfes: list[int], solver: str | None, n: int | None, train_overrides: dict) -> None:
    """The errors a sweep gives before it trains anything (evaluation's included, so none comes after training)."""
    from ..solvers import check_solver

    if not nfes or any(k < 1 for k in nfes):
        raise StraightflowError(f"--nfe needs positive integers, got {nfes}")
    if n is not None and n < 2:
        raise StraightflowError(f"-n must be >= 2 (quality compares two sets of samples), got {n}")
    for k in nfes if solver else ():
        check_solver(solver, k)
    bad = set(train_overrides) - set(TrainConfig.field_names())
    if bad:
        raise StraightflowError(f"unknown train option(s) for the sweep: {', '.join(sorted(bad))}")
    if train_overrides.get("kl_target") is not None:
        raise StraightflowError("sweep: --kl-target would give every beta the same KL target; a sweep fixes beta "
                                "per run (compare KL targets with bench/kl_target.py, docs/kl_target.md)")


def run_sweep(
    out: str | Path,
    data: str,
    betas: list[float],
    steps: int,
    batch_size: int = 256,
    nfes: list[int] = (1, 2, 4, 8, 100),
    seed: int = 0,
    solver: str | None = None,
    n: int | None = None,
    config_file: str | None = None,
    trajectories: bool = True,
    quiet: bool = False,
    jobs: int | None = None,
    dry_run: bool = False,
    **train_overrides,
) -> dict:
    """Train and evaluate one run per beta; write sweep.json, sweep.md and the plots. Returns the sweep dict.
    ``n``: samples per evaluation (default: ``eval``'s, :func:`~straightflow.evaluate.default_n`); each
    evaluation shows a progress bar counting its samples unless ``quiet``.

    ``jobs`` > 1 trains that many betas at once in separate processes (default: one per
    CUDA device when there are several, else sequentially in this process).

    ``dry_run``: every beta's run checked as ``train(dry_run=True)`` checks it (printing its plan), nothing
    trained, evaluated or written; returns ``{"dry_run": True, ...}``."""
    from ..plots.curvature import plot_sweep_trajectories, write_sweep_plots
    from ..run import Run

    log = (lambda msg: None) if quiet else print
    out = Path(out)
    nfes = list(nfes)
    _check_sweep(nfes, solver, n, train_overrides)
    device = train_overrides.get("device", "auto")
    overrides = dict(train_overrides, data=data, steps=steps, batch_size=batch_size, seed=seed)
    sweep: dict = {"data": data, "steps": steps, "batch_size": batch_size, "nfe": nfes, "solver": solver or "euler",
                   "n": n, "seed": seed, "train_overrides": dict(train_overrides), "runs": []}
    jobs = default_jobs(device) if jobs is None else jobs
    if jobs < 1:
        raise StraightflowError(f"--jobs must be >= 1, got {jobs}")
    if dry_run:
        for beta in sorted(betas):
            _train_one(out / f"beta-{beta_label(beta)}", beta, overrides, config_file, log, dry_run=True)
        return {**sweep, "dry_run": True}
    out.mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        _train_parallel(out, sorted(betas), overrides, config_file, jobs, log)
    for beta in sorted(betas):
        run_dir = out / f"beta-{beta_label(beta)}"
        if jobs == 1:
            log(f"sweep: beta={beta_label(beta)} -> {run_dir}")
            _train_one(run_dir, beta, overrides, config_file, log)
        report = _evaluate_one(run_dir, nfes, solver, n, seed, device, log, progress=not quiet)
        sweep["quality_metric"] = report["quality_metric"]
        sweep["n"] = report["n"]
        sweep["solver"] = report["results"][0]["solver"]
        sweep["floor"] = {k: v for k, v in report.items() if k.endswith("_floor")}
        sweep["runs"].append({"beta": "inf" if math.isinf(beta) else beta, "method": report["method"],
                              "run": str(run_dir), "report": report})
        (out / "sweep.json").write_text(json.dumps(sweep, indent=1))  # partial progress is visible
    table = format_sweep_table(sweep)
    (out / "sweep.md").write_text(table + "\n")
    plots = write_sweep_plots(sweep, out)
    if trajectories:
        runs = [(f"beta = {beta_label(b)}", Run.load(out / f"beta-{beta_label(b)}", device=device))
                for b in sorted(betas, key=lambda b: -b)]
        if runs and runs[0][1].data.kind == "vector" and tuple(runs[0][1].data.shape) == (2,):
            plot_sweep_trajectories(runs, out / "trajectories.png")
            plots.append(out / "trajectories.png")
    sweep["plots"] = [str(p) for p in plots]
    (out / "sweep.json").write_text(json.dumps(sweep, indent=1))
    log(table)
    log(f"sweep: wrote {out / 'sweep.json'}, {out / 'sweep.md'}, " + ", ".join(p.name for p in plots))
    return sweep
