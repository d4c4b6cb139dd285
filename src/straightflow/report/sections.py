"""What ``straightflow report`` reproduces: the static table :data:`SECTIONS` and the budgets :data:`SCALES`.

Each :class:`SectionSpec` names the jobs it needs (command lines, see :mod:`.jobs`) at a
given :class:`Scale` and renders their outputs (eval JSON, sweep JSON, script output,
figures) into report blocks. Jobs shared by several sections (the 2D teachers, their
pairs, the lines students) have one id and one command and run once.

Budgets: ``full`` is those of the full-scale record, docs/experiments-full.md (3000 steps per
model, four 2D sets, 100,000 pairs, digits); ``quick`` cuts them, aimed at under 20 minutes on 2 cores (1000 steps,
two 2D sets, 20,000 pairs, no digits); ``smoke`` is a tiny network on a few steps, to
check that every command runs (its numbers mean nothing).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import StraightflowError
from .document import Block, Code, Figure, Heading, Table, Text
from .jobs import Job, JobResult

SETS4 = ("moons", "8gaussians", "checkerboard", "spirals")


@dataclass(frozen=True)
class Scale:
    """The budgets of one report scale (every field is shown in the report's header)."""

    name: str
    steps: int = 3000  # 2D: training steps of every model
    batch: int = 256  # 2D batch size
    n: int = 2000  # 2D: samples per evaluation (W2 against as many held-out points)
    net: tuple[str, ...] = ()  # extra network flags of every 2D model (smoke: a tiny MLP)
    sweep_sets: tuple[str, ...] = SETS4
    betas: str = "0.3,1,3,10,30,inf"
    sweep_nfe: str = "1,2,4,8,100"
    lines_sets: tuple[str, ...] = SETS4
    pairs: int = 100_000  # 2D teacher pairs
    teacher_nfe: int = 100  # Euler steps of the teacher solve that makes the pairs
    adv: float = 0.1  # weight of lines_adv's adversarial term
    table1_nfe: str = "1,2,3,4,6,8,12,16,24,32,48,64,100"
    table1_sets: tuple[str, ...] = ("moons", "digits")
    curv_lines_sets: tuple[str, ...] = SETS4
    ot_args: tuple[str, ...] = ()  # extra flags of bench/ot_dimension.py
    peer_images_steps: int = 100  # bench_baseline.py's digits row (0: skipped)
    cond_steps: int = 3000
    any_teacher_pairs: int = 100_000
    digits: bool = True  # the digits (8x8 images) parts
    digits_steps: int = 3000
    digits_batch: int = 128
    digits_net: tuple[str, ...] = ()
    digits_pairs: int = 20_000
    digits_teacher_nfe: int = 16
    digits_betas: str = "1,3,10,inf"
    digits_n: int = 2000
    spread_seeds: int = 6  # sampling seeds of the digits seed spreads
    verdict_seeds: int = 5  # sampling seeds behind section 9's verdict (mean and sd of each student's quality at NFE 1)

    @property
    def teacher_eval_nfe(self) -> str:
        return ",".join(str(k) for k in sorted({1, 2, 4, 8, self.teacher_nfe}))

    @property
    def quarter_nfe(self) -> int:
        return max(1, self.teacher_nfe // 4)

    def settings(self) -> list[tuple[str, str]]:
        """(budget, value) rows for the report's header."""
        rows = [("2D training steps / batch (every model)", f"{self.steps} / {self.batch}"),
                ("2D network", "MLP width 256, depth 3" if not self.net else " ".join(self.net)),
                ("2D evaluation samples (W2 vs as many held-out points)", str(self.n)),
                ("curvature sweeps: sets / betas", f"{', '.join(self.sweep_sets)} / {self.betas}"),
                ("lines section: sets / teacher pairs / pairs' Euler NFE", f"{', '.join(self.lines_sets)} / {self.pairs:,} / {self.teacher_nfe}"),
                ("Table 1 sets", ", ".join(s for s in self.table1_sets if self.digits or s != "digits")),
                ("curvature teacher -> lines: sets / beta = 10 pairs' NFE", f"{', '.join(self.curv_lines_sets)} / {self.quarter_nfe}"),
                ("section 9's verdict: sampling seeds per student", str(self.verdict_seeds)),
                ("conditional 8gaussians steps", str(self.cond_steps))]
        if self.digits:
            rows += [("digits: steps / batch", f"{self.digits_steps} / {self.digits_batch}"),
                     ("digits: pairs / pairs' Euler NFE / betas", f"{self.digits_pairs:,} / {self.digits_teacher_nfe} / {self.digits_betas}")]
        else:
            rows.append(("digits (8x8 images)", "skipped at this scale"))
        return rows


SCALES: dict[str, Scale] = {
    "full": Scale("full"),
    "quick": Scale("quick", steps=1000, n=1000, sweep_sets=("moons", "spirals"), betas="0.3,1,10,inf", lines_sets=("moons", "spirals"),
                   pairs=20_000, table1_sets=("moons",), curv_lines_sets=("moons",), ot_args=("--batches", "4"), peer_images_steps=0,
                   cond_steps=1000, any_teacher_pairs=20_000, digits=False),
    "smoke": Scale("smoke", steps=30, batch=64, n=200, net=("--width", "32", "--depth", "2"), sweep_sets=("moons",), betas="1,10,inf",
                   sweep_nfe="1,4", lines_sets=("moons",), pairs=1000, teacher_nfe=8, table1_nfe="1,2,4,8", curv_lines_sets=("moons",),
                   ot_args=("--dims", "2,4", "--batch", "32", "--big", "64", "--batches", "1"), peer_images_steps=2, cond_steps=30,
                   any_teacher_pairs=1000, digits_steps=3, digits_batch=16, digits_net=("--channels", "8"), digits_pairs=200,
                   digits_teacher_nfe=2, digits_betas="10,inf", digits_n=100, spread_seeds=2, verdict_seeds=2),
}


class Missing(Exception):
    """A result file a renderer needs does not exist (its job did not finish)."""


@dataclass
class Context:
    """What a renderer sees: the report folder, the scale and every job's result."""

    out: Path
    scale: Scale
    results: dict[str, JobResult]
    jobs_at_once: int = 1

    def json(self, rel: str):
        """The JSON in ``rel``; for a command's captured stdout, its last line that is a JSON object or list."""
        text = self.text(rel)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            for line in reversed(text.splitlines()):
                if line.startswith(("{", "[")):
                    try:
                        return json.loads(line)
                    except json.JSONDecodeError:
                        break
            raise Missing(f"{rel} (unreadable: {exc})") from None

    def text(self, rel: str) -> str:
        try:
            return (self.out / rel).read_text()
        except FileNotFoundError:
            raise Missing(rel) from None

    def has(self, rel: str) -> bool:
        return (self.out / rel).exists()

    def figure(self, rel: str, caption: str, name: str | None = None) -> list[Block]:
        """A figure block for ``rel`` (copied to ``figures/NAME`` when it lives elsewhere), or nothing when absent."""
        src = self.out / rel
        if not src.is_file():
            return []
        if name is not None and not rel.startswith("figures/"):
            dest = self.out / "figures" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            rel = f"figures/{name}"
        return [Figure(rel, caption)]

    def maybe_json(self, rel: str):
        """:meth:`json`, or None when the file is missing or unreadable (a table then shows the rows that exist)."""
        try:
            return self.json(rel)
        except Missing:
            return None

    def part(self, render: Callable[[], list[Block]], what: str = "") -> list[Block]:
        """``render()``'s blocks, or one note naming the missing input, so the rest of the section still renders."""
        try:
            return render()
        except Missing as exc:
            return [missing_note(str(exc), what)]

    def wall(self, job_id: str) -> float | None:
        r = self.results.get(job_id)
        return r.wall_s if r is not None else None


def missing_note(rel: str, what: str = "") -> Text:
    """The note shown where a part of a section could not be rendered."""
    return Text(f"**Not available{' (' + what + ')' if what else ''}:** `{rel}` is missing (its job did not finish; see the commands above).")


@dataclass(frozen=True)
class SectionSpec:
    """One section of the report: its jobs at a scale and how their results render.

    ``jobs(scale)`` lists every job the section reads (shared ones included, dependencies
    first); ``render(ctx, scale)`` returns blocks and may raise :class:`Missing`.
    ``runs_at(scale)`` is False where the section is skipped (its ``skip_note`` is shown).
    """

    name: str
    title: str
    about: str
    jobs: Callable[[Scale], list[Job]]
    render: Callable[[Context, Scale], list[Block]]
    runs_at: Callable[[Scale], bool] = lambda scale: True
    skip_note: str = ""


# ================================================================== command builders
def _sf(*args) -> tuple[str, ...]:
    return ("straightflow",) + tuple(str(a) for a in args)


def _py(*args) -> tuple[str, ...]:
    return ("python",) + tuple(str(a) for a in args)


def _net(scale: Scale, data: str) -> tuple[str, ...]:
    return scale.digits_net if data == "digits" else scale.net


def _budget(scale: Scale, data: str) -> tuple[int, int]:
    return (scale.digits_steps, scale.digits_batch) if data == "digits" else (scale.steps, scale.batch)


def _n(scale: Scale, data: str) -> int:
    return scale.digits_n if data == "digits" else scale.n


def _pairs_nfe(scale: Scale, data: str) -> int:
    return scale.digits_teacher_nfe if data == "digits" else scale.teacher_nfe


def _root(data: str) -> str:
    return "runs/digits" if data == "digits" else f"runs/2d/{data}"


def train_job(run: str, *flags, scale: Scale, data: str, after: tuple[str, ...] = ()) -> Job:
    """``straightflow train ... --out RUN`` with the scale's budget and network flags (students inherit the data from their pairs)."""
    steps, batch = _budget(scale, data)
    extra = ("--ckpt-every", 1000) if data == "digits" and steps > 1000 else ()
    argv = _sf("train", *flags, "--steps", steps, "--batch-size", batch, *_net(scale, data), *extra, "--progress", "false", "--out", run)
    return Job(run, argv, outputs=(f"{run}/config.yaml",), after=after, resume_dir=run)


def eval_job(run: str, nfe: str, scale: Scale, data: str, file: str = "eval.json", extra: tuple = ()) -> Job:
    return Job(f"{run}/{file}", _sf("eval", run, "--nfe", nfe, "-n", _n(scale, data), *extra, "--json"), stdout=f"{run}/{file}", after=(run,))


def pairs_job(teacher: str, out: str, n: int, nfe: int, extra: tuple = ()) -> Job:
    return Job(out, _sf("pairs", teacher, "-n", n, "--solver", "euler", "--nfe", nfe, *extra, "--out", out, "--quiet"),
               outputs=(f"{out}/manifest.json",), after=(teacher,))


def plot_job(run: str, kind: str, name: str, *flags) -> Job:
    return Job(f"figures/{name}", _sf("plot", run, "--kind", kind, *flags, "--out", f"figures/{name}"), outputs=(f"figures/{name}",), after=(run,))


def teacher_jobs(scale: Scale, data: str) -> list[Job]:
    """The baseline teacher (``--method rectified``) of ``data`` and its evaluation at 1, 2, 4, 8 and the pairs' NFE (100)."""
    run = f"{_root(data)}/teacher"
    return [train_job(run, "--data", data, "--method", "rectified", scale=scale, data=data),
            eval_job(run, scale.teacher_eval_nfe, scale, data)]


def pairs_jobs(scale: Scale, data: str) -> list[Job]:
    root = _root(data)
    n = scale.digits_pairs if data == "digits" else scale.pairs
    return teacher_jobs(scale, data) + [pairs_job(f"{root}/teacher", f"{root}/pairs", n, _pairs_nfe(scale, data))]


STUDENTS = {  # name -> train flags on the teacher's pairs
    "reflow": ("--method", "reflow", "--init-from-teacher", "true"),
    "distill": ("--method", "distill"),
    "lines": ("--method", "lines"),
    "lines_k2": ("--method", "lines", "--sampler-steps", "2"),
    "lines_adv": ("--method", "lines", "--adv", "ADV"),
}


def student_jobs(scale: Scale, data: str, names: tuple[str, ...] = tuple(STUDENTS)) -> list[Job]:
    root = _root(data)
    jobs = pairs_jobs(scale, data)
    for name in names:
        flags = tuple(str(scale.adv) if f == "ADV" else f for f in STUDENTS[name])
        run = f"{root}/{name}"
        jobs += [train_job(run, *flags, "--pairs", f"{root}/pairs", scale=scale, data=data, after=(f"{root}/pairs",)),
                 eval_job(run, "1,2,4", scale, data)]
    return jobs


def beta10_jobs(scale: Scale, data: str) -> list[Job]:
    run = f"{_root(data)}/teacher_beta10"
    return [train_job(run, "--data", data, "--method", "curvature", "--beta", 10, scale=scale, data=data)]


def sweep_job(scale: Scale, data: str, out: str, betas: str, *extra: str) -> Job:
    steps, batch = _budget(scale, data)
    ckpt = ("--ckpt-every", "1000") if data == "digits" and steps > 1000 else ()
    argv = _sf("sweep", "--data", data, "--betas", betas, "--steps", steps, "--batch-size", batch, "--nfe", scale.sweep_nfe,
               "-n", _n(scale, data), *extra, *_net(scale, data), *ckpt, "--progress", "false", "--out", out)
    return Job(out, argv, outputs=(f"{out}/sweep.json", f"{out}/sweep.md"))


def _betas(text: str) -> list[str]:
    return [b.strip() for b in text.split(",") if b.strip()]


def curvature_sweep_jobs(scale: Scale, data: str) -> list[Job]:
    out = "runs/curvature/digits" if data == "digits" else f"runs/curvature/2d-{data}"
    betas = scale.digits_betas if data == "digits" else scale.betas
    jobs = [sweep_job(scale, data, out, betas)]
    for b in ("1", "10"):
        if b in _betas(betas) and (data != "digits" or b == "10"):
            job = plot_job(f"{out}/beta-{b}", "znorm", f"curvature_{data}_znorm_beta{b}.png")
            jobs.append(Job(job.id, job.argv, job.outputs, after=(out,)))
    if data == "digits":
        for b in ("1", "10", "inf"):
            if b in _betas(betas):
                job = plot_job(f"{out}/beta-{b}", "xhat", f"curvature_digits_xhat_beta{b}.png", "--nfe", "100", "-n", "6")
                jobs.append(Job(job.id, job.argv, job.outputs, after=(out,)))
    return jobs


# ================================================================== rendering helpers
def fmt(v, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def quality(report: dict) -> dict[int, float]:
    key = report.get("quality_metric", "w2")
    return {r["nfe_requested"]: r[key] for r in report["results"] if isinstance(r.get(key), (int, float))}


def floor_of(report: dict) -> float | None:
    return report.get(report.get("quality_metric", "w2") + "_floor")


def eval_block(ctx: Context, rel: str, title: str) -> list[Block]:
    """An eval report as ``straightflow eval`` prints it (format_table), under the command that made it."""
    from ..evaluate import format_table

    return [Text(f"{title} (`{rel}`):"), Code(format_table(ctx.json(rel)))]


def sweep_table(sweep: dict) -> Table:
    """The sweep's table (as ``sweep.md``): curvature, quality per NFE, KL, reconstruction, ratios to beta = inf."""
    key, nfes = sweep["quality_metric"], sweep["nfe"]
    top, low = max(nfes), min(nfes)
    runs = sorted(sweep["runs"], key=lambda r: math.inf if r["beta"] == "inf" else r["beta"])
    base = next((r["report"] for r in runs if r["beta"] == "inf"), None)
    header = ["beta", "method", "curvature"] + [f"{key} NFE {k}" for k in nfes] + ["KL (held-out)", f"recon {key} NFE {top}", "flow loss (held-out)"]
    if base:
        header += ["curvature / baseline", f"{key} NFE {low} / baseline"]
    rows = []
    for r in runs:
        rep, q = r["report"], quality(r["report"])
        row = [fmt(r["beta"] if r["beta"] == "inf" else float(r["beta"])), r["method"], fmt(rep["curvature"])] + [fmt(q.get(k)) for k in nfes]
        row += [fmt(rep.get("kl", 0.0 if r["beta"] == "inf" else None)), fmt(rep.get(f"recon_{key}")), fmt(rep.get("flow_loss_heldout"))]
        if base:
            qb = quality(base)
            row += [fmt(rep["curvature"] / base["curvature"]) if base["curvature"] else "-",
                    fmt(q[low] / qb[low]) if low in q and qb.get(low) else "-"]
        rows.append(row)
    return Table(header, rows)


def sweep_checks(sweep: dict) -> str:
    """The experiment's targets: a beta with curvature >= 10x and quality at the lowest NFE >= 3x below the baseline's."""
    runs = {"inf" if r["beta"] == "inf" else f"{float(r['beta']):g}": r["report"] for r in sweep["runs"]}
    base = runs.get("inf")
    if base is None:
        return ""
    low = min(sweep["nfe"])
    qb = quality(base)[low]
    met = [b for b, rep in runs.items() if b != "inf" and rep["curvature"] * 10 <= base["curvature"] and quality(rep)[low] * 3 <= qb]
    best = min((b for b in runs if b != "inf"), key=lambda b: runs[b]["curvature"], default=None)
    text = (f"Target (some beta with curvature at least 10x lower than the baseline's and {sweep['quality_metric']} at NFE {low} at "
            f"least 3x lower): **{'met by beta = ' + ', '.join(met) if met else 'not met'}**.")
    if best is not None:
        text += (f" Lowest curvature: beta = {best}, {base['curvature'] / max(runs[best]['curvature'], 1e-12):.3g}x below the baseline, "
                 f"{sweep['quality_metric']} at NFE {low} {qb / quality(runs[best])[low]:.3g}x lower.")
    return text


def pairs_rate(ctx: Context, job_id: str) -> float | None:
    """Pairs/s printed by a ``straightflow pairs`` job (its log), when it generated pairs."""
    r = ctx.results.get(job_id)
    if r is None or not ctx.has(r.job.log_name):
        return None
    m = re.search(r"reused, ([0-9.]+) pairs/s\)", ctx.text(r.job.log_name))
    return float(m.group(1)) if m else None


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def sig3(v: float | None) -> str:
    """Seconds to 3 significant digits (0.0417, 3.52, 41.7, 418; no exponent), '-' for None."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


# ================================================================== sections
def _baseline_jobs(scale: Scale) -> list[Job]:
    jobs = teacher_jobs(scale, "moons")
    jobs.append(plot_job("runs/2d/moons/teacher", "trajectories", "baseline_moons_trajectories.png", "--nfe", "100"))
    bench = _py("bench/bench_baseline.py", "--data", "moons", "--steps", scale.steps, "--batch-size", scale.batch, *scale.net,
                "-n", scale.n, "--images-steps", scale.peer_images_steps, "--json", "runs/baseline/bench.json")
    jobs.append(Job("runs/baseline/bench", bench, outputs=("runs/baseline/bench.json",), stdout="runs/baseline/bench.txt", requires=("torchcfm",)))
    return jobs


def _baseline_eval(ctx: Context) -> list[Block]:
    blocks = eval_block(ctx, "runs/2d/moons/teacher/eval.json", "The baseline (`--method rectified`, independent coupling) on moons, Euler")
    rep = ctx.json("runs/2d/moons/teacher/eval.json")
    q, floor = quality(rep), floor_of(rep)
    top = max(q)
    blocks.append(Text(f"W2 at NFE {top}: {q[top]:.4g} against a two-sample floor of {floor:.4g} (target: within 0.1 of the floor: "
                       f"**{'met' if q[top] - floor <= 0.1 else 'missed'}**)."))
    return blocks


def _baseline_render(ctx: Context, scale: Scale) -> list[Block]:
    blocks = ctx.part(lambda: _baseline_eval(ctx), "the baseline's evaluation")
    blocks += ctx.figure("figures/baseline_moons_trajectories.png", "Reverse trajectories of the baseline (Euler 100): the curved paths the "
                         "rest of the report straightens. `straightflow plot runs/2d/moons/teacher --kind trajectories --nfe 100`")
    r = ctx.results.get("runs/baseline/bench")
    if r is not None and r.status == "unavailable":
        blocks.append(Text(f"**Baseline vs torchcfm: not run** — {r.reason}."))
        return blocks
    return blocks + ctx.part(lambda: _bench_blocks(ctx), "baseline vs torchcfm")


def _bench_blocks(ctx: Context) -> list[Block]:
    b = ctx.json("runs/baseline/bench.json")
    nfes = sorted(int(k) for k in b["ours_w2"])
    rows = [["straightflow rectified (EMA)", fmt(b["ours_steps_per_sec"], 4)] + [fmt(b["ours_w2"][str(k)]) for k in nfes],
            ["torchcfm I-CFM", fmt(b["torchcfm_steps_per_sec"], 4)] + [fmt(b["torchcfm_w2"][str(k)]) for k in nfes]]
    return [Heading("Against torchcfm's I-CFM (the same data, network, batch, learning rate and steps, one process)"),
            Table(["model", "steps/s"] + [f"W2 NFE {k}" for k in nfes], rows),
            Text(f"Two-sample floor {b['floor']:.4g}. Speed ratio straightflow / torchcfm: {b['ours_steps_per_sec'] / b['torchcfm_steps_per_sec']:.2f}x; "
                 f"W2 at NFE {nfes[-1]}: {b['ours_w2'][str(nfes[-1])] / b['torchcfm_w2'][str(nfes[-1])]:.3f}x (target: no more than 10% worse; "
                 f"the EMA weights against raw weights). The speeds were measured while up to {ctx.jobs_at_once} report jobs shared the "
                 "machine: read the ratio, not the steps/s. The script's own output:"),
            Code(ctx.text("runs/baseline/bench.txt"))]


def _digits_baseline_jobs(scale: Scale) -> list[Job]:
    run = "runs/digits/teacher"
    jobs = teacher_jobs(scale, "digits")
    jobs.append(plot_job(run, "grid", "digits_baseline_grid_nfe100.png", "--nfe", "100", "-n", "64"))
    jobs.append(Job("figures/digits_baseline_grid_nfe1.png", _sf("sample", run, "--nfe", "1", "-n", "64", "--out", "figures/digits_baseline_grid_nfe1.png"),
                    outputs=("figures/digits_baseline_grid_nfe1.png",), after=(run,)))
    jobs.append(plot_job(run, "xhat", "digits_baseline_xhat.png", "--nfe", "100", "-n", "6"))
    return jobs


def _digits_baseline_eval(ctx: Context) -> list[Block]:
    rep = ctx.json("runs/digits/teacher/eval.json")
    blocks = eval_block(ctx, "runs/digits/teacher/eval.json", "The digits baseline (UNet `digits-cpu`), Euler")
    q, floor = quality(rep), floor_of(rep)
    top = max(q)
    blocks.append(Text(f"FD at NFE {top} / floor = {q[top] / floor:.2f} (target <= 3: **{'met' if q[top] <= 3 * floor else 'missed'}**); "
                       f"training took {_s(ctx.wall('runs/digits/teacher'))} s (job wall time)."))
    return blocks


def _digits_baseline_render(ctx: Context, scale: Scale) -> list[Block]:
    blocks = ctx.part(lambda: _digits_baseline_eval(ctx), "the digits baseline's evaluation")
    blocks += ctx.figure("figures/digits_baseline_grid_nfe100.png", "Samples at NFE 100 (`plot --kind grid --nfe 100`)")
    blocks += ctx.figure("figures/digits_baseline_grid_nfe1.png", "Samples at NFE 1 (`sample --nfe 1`)")
    blocks += ctx.figure("figures/digits_baseline_xhat.png", "x_hat(z_t, t) along t (`plot --kind xhat`, the curvature paper's Fig. 6)")
    return blocks


def _curvature_jobs(scale: Scale) -> list[Job]:
    return [j for d in scale.sweep_sets for j in curvature_sweep_jobs(scale, d)]


def _sweep_table_blocks(ctx: Context, folder: str) -> list[Block]:
    sweep = ctx.json(f"{folder}/sweep.json")
    floor = ", ".join(f"{k[:-6]} {v:.4g}" for k, v in (sweep.get("floor") or {}).items() if isinstance(v, float) and k != "n_floor")
    return [Text(f"Two-sample floor: {floor}." if floor else ""), sweep_table(sweep), Text(sweep_checks(sweep))]


def _sweep_blocks(ctx: Context, data: str, folder: str) -> list[Block]:
    """A sweep's heading, table and checks (a note when its sweep.json is missing), then whichever of its figures exist."""
    blocks: list[Block] = [Heading(data)] + ctx.part(lambda: _sweep_table_blocks(ctx, folder), f"the {data} sweep")
    cmd = f"`straightflow sweep --data {data} ...` ({folder})"
    captions = {"trajectories.png": f"Forward (x -> z ~ q_phi(z|x), top) and reverse (Euler 100, bottom) trajectories per beta (Fig. 4); {cmd}",
                "curvature_vs_beta.png": f"Curvature vs beta, the baseline dashed (Fig. 5); {cmd}",
                "quality_vs_nfe.png": f"Quality vs NFE per beta (Fig. 7); {cmd}",
                "recon_gap.png": f"Reconstruction vs generation quality at the largest NFE (Fig. 8a); {cmd}"}
    for file, caption in captions.items():
        blocks += ctx.figure(f"{folder}/{file}", caption, name=f"curvature_{data}_{file}")
    for b in ("1", "10"):
        blocks += ctx.figure(f"figures/curvature_{data}_znorm_beta{b}.png",
                             f"||z|| under q_phi against the prior at beta = {b} (Fig. 8b); `straightflow plot {folder}/beta-{b} --kind znorm`")
    for b in ("1", "10", "inf"):
        blocks += ctx.figure(f"figures/curvature_{data}_xhat_beta{b}.png",
                             f"x_hat(z_t, t) along one Euler-100 trajectory at beta = {b} (Fig. 6); `straightflow plot {folder}/beta-{b} --kind xhat`")
    return blocks


def _curvature_render(ctx: Context, scale: Scale) -> list[Block]:
    return [b for d in scale.sweep_sets for b in _sweep_blocks(ctx, d, f"runs/curvature/2d-{d}")]


def _encoder_jobs(scale: Scale) -> list[Job]:
    return curvature_sweep_jobs(scale, "moons")[:1] + [sweep_job(scale, "moons", "runs/curvature/2d-moons-encoder-same", "10", "--encoder", "same", "--no-trajectories")]


def _coupling_parameters(run_dir: Path) -> int:
    from ..models import count_parameters
    from ..run import Run

    run = Run.load(run_dir, device="cpu")
    return count_parameters(run.module) - count_parameters(run.module.velocity)


def _encoder_render(ctx: Context, scale: Scale) -> list[Block]:
    rows, notes, qs = [], [], []
    nfes: list[int] = []
    for label, folder in (("`small` (default; from the curvature sweep)", "runs/curvature/2d-moons"),
                          ("`same` (mirrors the velocity net)", "runs/curvature/2d-moons-encoder-same")):
        sweep = ctx.maybe_json(f"{folder}/sweep.json")
        run = next((r for r in sweep["runs"] if r["beta"] == 10), None) if sweep else None
        if run is None:
            notes.append(missing_note(f"{folder}/sweep.json" if sweep is None else f"{folder}: the beta = 10 run", label))
            continue
        rep, nfes = run["report"], sweep["nfe"]
        q = quality(rep)
        qs.append(q)
        rows.append([label, f"{_coupling_parameters(ctx.out / folder / 'beta-10'):,}", fmt(rep["curvature"])] + [fmt(q.get(k)) for k in nfes] + [fmt(rep.get("kl"))])
    blocks: list[Block] = [Table(["encoder", "encoder parameters", "curvature"] + [f"W2 NFE {k}" for k in nfes] + ["KL"], rows)] if rows else []
    if len(qs) == 2:
        qa, qb = qs
        worst = max(abs(qa[k] / qb[k] - 1) for k in nfes if k in qa and k in qb and qb[k])
        blocks.append(Text(f"The two encoders' W2 differ by at most {worst:.1%} over these NFEs (the paper's Table 2: a small encoder does as well)."))
    return blocks + notes


def _digits_curvature_render(ctx: Context, scale: Scale) -> list[Block]:
    return _sweep_blocks(ctx, "digits", "runs/curvature/digits") + _digits_monotone(ctx)


def _digits_monotone(ctx: Context) -> list[Block]:
    blocks: list[Block] = []
    sweep = ctx.maybe_json("runs/curvature/digits/sweep.json")
    if sweep is None:  # _sweep_blocks has said so
        return blocks
    curv = {"inf" if r["beta"] == "inf" else f"{float(r['beta']):g}": r["report"]["curvature"] for r in sweep["runs"]}
    order = sorted(curv, key=lambda b: math.inf if b == "inf" else float(b))
    mono = all(curv[x] < curv[y] for x, y in zip(order, order[1:]))
    blocks.append(Text(f"Curvature falls monotonically as beta falls, all below the baseline: **{'met' if mono else 'missed'}** "
                       f"({' > '.join(f'{curv[b]:.4g} (beta {b})' for b in reversed(order))})."))
    return blocks


def _lines_jobs(scale: Scale) -> list[Job]:
    jobs: list[Job] = []
    for d in scale.lines_sets:
        root = _root(d)
        jobs += student_jobs(scale, d)
        jobs += [train_job(f"{root}/ot", "--data", d, "--method", "ot", scale=scale, data=d), eval_job(f"{root}/ot", "1,2,4", scale, d)]
        jobs.append(plot_job(f"{root}/lines", "trajectories", f"lines_{d}_lines_nfe4.png", "--nfe", "4"))
    return jobs


ORDER = ("teacher", "ot", "reflow", "distill", "lines", "lines_k2", "lines_adv")


def students_table(ctx: Context, data: str, names: tuple[str, ...]) -> tuple[list[Block], dict[str, dict]]:
    """The teacher and students of ``data``: one row per run whose ``eval.json`` exists, a note naming the others."""
    root = _root(data)
    runs = {name: r for name in names if (r := ctx.maybe_json(f"{root}/{name}/eval.json")) is not None}
    teacher = runs.get("teacher")
    tq = quality(teacher) if teacher else {}
    top = max(tq) if tq else None
    metric = (teacher or next(iter(runs.values()), {})).get("quality_metric", "w2")
    header = ["run", "solver", "NFE 1", "NFE 2", "NFE 4", f"teacher NFE {top if top else '-'}", "NFE 1 / teacher", "distill err", "curvature", "pred. drift"]
    rows = []
    for name, r in runs.items():
        q = quality(r)
        rows.append([name, r["results"][0]["solver"]] + [fmt(q.get(k)) for k in (1, 2, 4)]
                    + [fmt(tq[top]) if name == "teacher" else "", fmt(q[1] / tq[top]) if 1 in q and tq.get(top) else "-",
                       fmt(r.get("distill_error")), fmt(r.get("curvature")), fmt(r.get("prediction_drift"))])
    floor = f"; two-sample floor {fmt(floor_of(teacher))}" if teacher else ""
    blocks: list[Block] = [Heading(f"{data} ({metric}{floor})")] + ([Table(header, rows)] if rows else [])
    gone = [f"{root}/{name}/eval.json" for name in names if name not in runs]
    if gone:
        blocks.append(Text(f"**Not available:** {', '.join(f'`{g}`' for g in gone)} (their jobs did not finish; see the commands above)."))
    return blocks, runs


def _lines_check(d: str, runs: dict[str, dict], adv: float) -> str:
    if not all(k in runs for k in ("teacher", "lines", "ot")):
        return f"- {d}: not checked (the teacher, lines or OT-CFM run did not finish)."
    tq, lq, oq = quality(runs["teacher"]), quality(runs["lines"]), quality(runs["ot"])
    top = max(tq)
    text = (f"- {d}: lines W2 at NFE 1 is {lq[1] / tq[top]:.3g}x the teacher's at NFE {top} (target <= 1.3: "
            f"**{'met' if lq[1] <= 1.3 * tq[top] else 'missed'}**) and {lq[1] / oq[1]:.3g}x OT-CFM's at NFE 1 "
            f"(target <= 1: **{'met' if lq[1] <= oq[1] else 'missed'}**)")
    if "lines_adv" in runs:
        aq = quality(runs["lines_adv"])[1]
        text += f"; with `--adv {adv}`: {aq / tq[top]:.3g}x and {aq / oq[1]:.3g}x"
    return text + "."


def _lines_render(ctx: Context, scale: Scale) -> list[Block]:
    blocks: list[Block] = []
    checks = []
    for d in scale.lines_sets:
        table, runs = students_table(ctx, d, ORDER)
        blocks += table
        checks.append(_lines_check(d, runs, scale.adv))
        blocks += ctx.figure(f"figures/lines_{d}_lines_nfe4.png", f"The lines student's paths with the line sampler at NFE 4; "
                             f"`straightflow plot {_root(d)}/lines --kind trajectories --nfe 4`")
    blocks += [Heading("Against the targets"), Text("\n".join(checks)),
               Text("One evaluation decides each number: W2 between a few thousand points moves by a few hundredths from draw to draw "
                    "(the full-scale record, docs/experiments-full.md 4.1, averages ten).")]
    return blocks


def _digits_lines_jobs(scale: Scale) -> list[Job]:
    root = "runs/digits"
    jobs = student_jobs(scale, "digits")
    seeds = str(scale.spread_seeds)
    jobs.append(Job(f"{root}/seed_spread_teacher", _py("bench/seed_spread.py", f"{root}/teacher", "--nfe", 100, "--seeds", seeds, "-n", scale.digits_n),
                    stdout=f"{root}/seed_spread_teacher.txt", after=(f"{root}/teacher",)))
    students = [f"{root}/{s}" for s in STUDENTS]
    jobs.append(Job(f"{root}/seed_spread_students", _py("bench/seed_spread.py", *students, "--nfe", 1, "--seeds", seeds, "-n", scale.digits_n),
                    stdout=f"{root}/seed_spread_students.txt", after=tuple(students)))
    return jobs


def _digits_lines_render(ctx: Context, scale: Scale) -> list[Block]:
    blocks, _ = students_table(ctx, "digits", ("teacher",) + tuple(STUDENTS))
    blocks.append(Text(f"Sampling-seed spread (same models, same held-out set, noise seeds 0-{scale.spread_seeds - 1}):"))
    for rel in ("runs/digits/seed_spread_teacher.txt", "runs/digits/seed_spread_students.txt"):
        blocks += ctx.part(lambda rel=rel: [Code(ctx.text(rel))])
    return blocks


def _table1_sets(scale: Scale) -> list[str]:
    return [d for d in scale.table1_sets if scale.digits or d != "digits"]


def _table1_jobs(scale: Scale) -> list[Job]:
    jobs: list[Job] = []
    for d in _table1_sets(scale):
        root, nfe = _root(d), _pairs_nfe(scale, d)
        n = scale.digits_pairs if d == "digits" else scale.pairs
        jobs += student_jobs(scale, d, ("distill",))
        jobs += beta10_jobs(scale, d)
        for t in ("teacher", "teacher_beta10"):
            jobs.append(eval_job(f"{root}/{t}", scale.table1_nfe, scale, d, file="eval_nfe.json"))
        jobs.append(pairs_job(f"{root}/teacher_beta10", f"{root}/pairs_beta10", n, nfe))
        jobs += [train_job(f"{root}/distill_beta10", "--method", "distill", "--pairs", f"{root}/pairs_beta10", scale=scale, data=d, after=(f"{root}/pairs_beta10",)),
                 eval_job(f"{root}/distill_beta10", "1,2,4", scale, d)]
    return jobs


def _table1_render(ctx: Context, scale: Scale) -> list[Block]:
    blocks: list[Block] = []
    for d in _table1_sets(scale):
        root = _root(d)
        base_rep = ctx.maybe_json(f"{root}/teacher/eval_nfe.json")
        base = quality(base_rep) if base_rep else {}
        target = 1.1 * base[max(base)] if base else None
        rows, reach, gone = [], {}, []
        for t, student in (("teacher", "distill"), ("teacher_beta10", "distill_beta10")):
            rep, s = ctx.maybe_json(f"{root}/{t}/eval_nfe.json"), ctx.maybe_json(f"{root}/{student}/eval.json")
            gone += [rel for rel, v in ((f"{root}/{t}/eval_nfe.json", rep), (f"{root}/{student}/eval.json", s)) if v is None]
            q = quality(rep) if rep else {}
            reach[t] = min((k for k, v in q.items() if v <= target), default=None) if q and target is not None else None
            if not q and s is None:
                continue
            reached = str(reach[t] or f">{max(q)}") if q and target is not None else "-"
            rows.append([t, reached, ", ".join(f"{k}:{v:.3g}" for k, v in sorted(q.items())) or "-",
                         fmt(s.get("distill_error")) if s else "-", fmt(quality(s).get(1)) if s else "-"])
        top = f" at NFE {max(base)} ({fmt(target)})" if base else ""
        blocks.append(Heading(f"Table 1 on {d}: NFE to reach 1.1 x the baseline's quality{top}"))
        if rows:
            blocks.append(Table(["teacher", "NFE to reach", "quality per NFE", "distill err", "student NFE 1"], rows))
        if base and f"{root}/teacher_beta10/eval_nfe.json" not in gone:
            fewer = reach["teacher_beta10"] is not None and (reach["teacher"] is None or reach["teacher_beta10"] < reach["teacher"])
            blocks.append(Text(f"Fewer steps for the beta = 10 teacher: **{'reproduced' if fewer else 'not reproduced'}** "
                               f"({reach['teacher_beta10'] or '-'} vs {reach['teacher'] or '-'})."))
        if gone:
            blocks.append(Text(f"**Not available:** {', '.join(f'`{g}`' for g in gone)} (their jobs did not finish; see the commands above)."))
    return blocks


def _curv_lines_jobs(scale: Scale) -> list[Job]:
    jobs: list[Job] = []
    q = scale.quarter_nfe
    for d in scale.curv_lines_sets:
        root = _root(d)
        jobs += student_jobs(scale, d, ("lines",))
        jobs += beta10_jobs(scale, d)
        jobs.append(eval_job(f"{root}/teacher_beta10", f"{q},{scale.teacher_nfe}", scale, d, file="eval_pairs.json"))
        pairs = f"{root}/pairs_beta10_nfe{q}"
        jobs.append(pairs_job(f"{root}/teacher_beta10", pairs, scale.pairs, q))
        student = f"{root}/lines_beta10_nfe{q}"
        jobs += [train_job(student, "--method", "lines", "--pairs", pairs, scale=scale, data=d, after=(pairs,)), eval_job(student, "1,2,4", scale, d)]
        seeds = ("--seeds", scale.verdict_seeds)
        jobs += [eval_job(run, "1", scale, d, file="eval_seeds.json", extra=seeds) for run in (f"{root}/lines", student)]
    return jobs


#: section 9's verdict: the cheaper pairs cost quality when their student's W2 at NFE 1 is worse by more than
#: this share of the baseline-pairs student's W2 and by more than twice the two students' combined seed sd
VERDICT_SHARE = 0.10


def pairs_verdict(base: tuple[float, float], cheap: tuple[float, float], share: float = VERDICT_SHARE) -> tuple[str, float]:
    """(verdict, tolerance) for two students' quality (mean, sd over sampling seeds; lower is better).

    The tolerance is ``max(share * base mean, 2 * sqrt(sd_base^2 + sd_cheap^2))``: a difference
    within it is no measurable cost; beyond it the cheaper pairs cost quality (or, below, gain it).
    """
    (b, sb), (c, sc) = base, cheap
    tol = max(share * b, 2 * math.hypot(sb, sc))
    if c > b + tol:
        return "cost quality", tol
    if c < b - tol:
        return "do not cost quality (their student is better)", tol
    return "do not cost quality", tol


def _seed_quality(rep: dict | None) -> tuple[float, float] | None:
    """(mean, sd) of the quality at NFE 1 from an ``eval --seeds K`` report."""
    if rep is None:
        return None
    key = rep.get("quality_metric", "w2")
    row = next((r for r in rep["results"] if r.get("nfe_requested") == 1), None)
    if row is None or not isinstance(row.get(key), (int, float)):
        return None
    return float(row[key]), float(row.get(f"{key}_sd") or 0.0)


def _pair_seconds(ctx: Context, pairs: str, n: int) -> tuple[float | None, str]:
    """Seconds the pairs took to generate (n / the pairs/s the command printed), else its job's wall time; and which."""
    rate = pairs_rate(ctx, pairs)
    if rate:
        return n / rate, "generation"
    return ctx.wall(pairs), "job wall"


def _curv_lines_render(ctx: Context, scale: Scale) -> list[Block]:
    q = scale.quarter_nfe
    blocks: list[Block] = []
    for d in scale.curv_lines_sets:
        root = _root(d)
        rows, stats, gone = [], {}, []
        for key, label, teacher_eval, nfe, pairs, student in (
                ("base", "baseline (`rectified`)", f"{root}/teacher/eval.json", scale.teacher_nfe, f"{root}/pairs", f"{root}/lines"),
                ("cheap", "beta = 10 (`curvature`)", f"{root}/teacher_beta10/eval_pairs.json", q, f"{root}/pairs_beta10_nfe{q}", f"{root}/lines_beta10_nfe{q}")):
            t, s, seeds = (ctx.maybe_json(rel) for rel in (teacher_eval, f"{student}/eval.json", f"{student}/eval_seeds.json"))
            gone += [rel for rel, v in ((teacher_eval, t), (f"{student}/eval.json", s), (f"{student}/eval_seeds.json", seeds)) if v is None]
            seconds, what = _pair_seconds(ctx, pairs, scale.pairs)
            sq, mean_sd = quality(s) if s else {}, _seed_quality(seeds)
            stats[key] = (seconds, what, mean_sd)
            if t is None and s is None and seconds is None:
                continue
            rows.append([label, str(nfe), fmt(quality(t).get(nfe)) if t else "-", sig3(ctx.wall(pairs)), _s(pairs_rate(ctx, pairs)),
                         sig3(seconds) if what == "generation" else "-", fmt(sq.get(1)), fmt(sq.get(2)), fmt(sq.get(4)),
                         f"{mean_sd[0]:.4g} ± {mean_sd[1]:.2g}" if mean_sd else "-", fmt(s.get("distill_error")) if s else "-"])
        blocks.append(Heading(f"{d}: {scale.pairs:,} pairs each"))
        if rows:
            blocks.append(Table(["teacher", "pairs' Euler NFE", "teacher W2 at that NFE", "pairs job wall s", "pairs/s", "generation s",
                                 "lines W2 NFE 1", "NFE 2", "NFE 4", f"NFE 1, mean ± sd over {scale.verdict_seeds} seeds", "distill err"], rows))
        blocks.append(Text(_curv_lines_verdict(stats, scale)))
        if gone:
            blocks.append(Text(f"**Not available:** {', '.join(f'`{g}`' for g in gone)} (their jobs did not finish; see the commands above)."))
    blocks.append(Text(f"The verdict: the cheaper pairs **cost quality** when their student's mean W2 at NFE 1 is worse than the "
                       f"baseline-pairs student's by more than the tolerance, max({VERDICT_SHARE:.0%} of the baseline-pairs student's W2, "
                       f"twice the two students' combined sd over {scale.verdict_seeds} sampling seeds). Each student is one training "
                       "run (seed 0): the sd is sampling noise only; the 10% floor stands in for the training-seed noise this does not measure."))
    return blocks


def _curv_lines_verdict(stats: dict, scale: Scale) -> str:
    (tb, wb, qb), (tc, wc, qc) = stats["base"], stats["cheap"]
    if qb is None or qc is None:
        return "No verdict: a student's seed evaluation did not finish."
    verdict, tol = pairs_verdict(qb, qc)
    text = (f"The lines student trained on the beta = 10 teacher's pairs at Euler {scale.quarter_nfe} scores W2 {qc[0]:.4g} ± {qc[1]:.2g} "
            f"at NFE 1 against {qb[0]:.4g} ± {qb[1]:.2g} for the baseline teacher's pairs at Euler {scale.teacher_nfe} (ratio "
            f"{qc[0] / qb[0]:.3g}; difference {qc[0] - qb[0]:+.3g}, tolerance {tol:.3g}): **the cheaper pairs {verdict}**.")
    if tb and tc:
        kind = "generation" if wb == wc == "generation" else "job wall time"
        text += f" Pair {kind}: {sig3(tc)} s vs {sig3(tb)} s ({tb / tc:.3g}x {'faster' if tc < tb else 'slower'})."
    return text


def _ot_jobs(scale: Scale) -> list[Job]:
    return [Job("runs/ot_dimension", _py("bench/ot_dimension.py", *scale.ot_args, "--json"), stdout="runs/ot_dimension.json")]


def _ot_render(ctx: Context, scale: Scale) -> list[Block]:
    rows = ctx.json("runs/ot_dimension.json")
    keys = list(rows[0])
    pct = [k for k in keys if k.startswith("gain") or k == "of_reachable"]
    table = Table(keys, [[f"{r[k]:.1%}" if k in pct else (f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])) for k in keys] for r in rows])
    g = [r for r in rows if r["data"] == "gaussian"]
    gain = next(k for k in keys if k.startswith("gain@"))
    text = (f"At {gain[5:]} per batch, OT removes {g[0][gain]:.0%} of the independent pairing cost at d = {g[0]['dim']} (Gaussian data) and "
            f"{g[-1][gain]:.0%} at d = {g[-1]['dim']}." if g else "")
    return [Text("Mean squared pairing distance per dimension between data and N(0, I): independent pairing, exact minibatch OT at the "
                 "batch size and at a large batch; gain = the share of the independent cost OT removes."), table, Text(text)]


def _any_teacher_jobs(scale: Scale) -> list[Job]:
    argv = _py("bench/torchcfm_teacher.py", "--data", "moons", "--steps", scale.steps, "--student-steps", scale.steps, "--pairs", scale.any_teacher_pairs,
               "--batch-size", scale.batch, *scale.net, "-n", scale.n, "--work", "runs/any-teacher", "--json", "runs/any-teacher/result.json")
    return [Job("runs/any-teacher", argv, outputs=("runs/any-teacher/result.json",), stdout="runs/any-teacher/output.txt", requires=("torchcfm",))]


def _any_teacher_render(ctx: Context, scale: Scale) -> list[Block]:
    r = ctx.results.get("runs/any-teacher")
    if r is not None and r.status == "unavailable":
        return [Text(f"**Not run** — {r.reason}.")]
    res = ctx.json("runs/any-teacher/result.json")
    return [Code(ctx.text("runs/any-teacher/output.txt")),
            Text(f"The lines student of the torchcfm teacher reaches {res['ratio']:.3g}x its teacher's W2 at NFE 100 with one step "
                 f"(target <= 1.3: **{'met' if res['ratio'] <= 1.3 else 'missed'}**).")]


def _conditional_jobs(scale: Scale) -> list[Job]:
    run = "runs/conditional/8gaussians"
    jobs = [Job(run, _sf("train", "--data", "8gaussians", "--conditional", "--steps", scale.cond_steps, "--batch-size", scale.batch, *scale.net,
                         "--progress", "false", "--out", run), outputs=(f"{run}/config.yaml",), resume_dir=run),
            eval_job(run, "1,2,4,100", scale, "8gaussians"),
            eval_job(run, "100", scale, "8gaussians", file="eval_w0.json", extra=("--guidance", "0")),
            Job(f"{run}/nearest_mode", _py("bench/nearest_mode.py", run, "--nfe", 100, "-n", scale.n, "--guidance", 1), stdout=f"{run}/nearest_mode.txt", after=(run,)),
            plot_job(run, "trajectories", "conditional_8gaussians_trajectories.png", "--nfe", "100")]
    if not scale.digits:
        return jobs
    root = "runs/conditional/digits"
    teacher, pairs, lines = f"{root}/teacher", f"{root}/pairs", f"{root}/lines"
    jobs += [train_job(teacher, "--data", "digits", "--conditional", scale=scale, data="digits"),
             pairs_job(teacher, pairs, scale.digits_pairs, scale.digits_teacher_nfe, ("--guidance", "2")),
             train_job(lines, "--method", "lines", "--pairs", pairs, scale=scale, data="digits", after=(pairs,)),
             eval_job(lines, "1,2,4", scale, "digits")]
    for w in ("1", "2"):
        jobs.append(eval_job(teacher, "1,4,16,100", scale, "digits", file=f"eval_w{w}.json", extra=("--guidance", w)))
    seeds = str(max(2, scale.spread_seeds - 2))
    jobs += [Job(f"{root}/seed_spread", _py("bench/seed_spread.py", teacher, "--nfe", 100, "--guidance", 2, "--seeds", seeds, "-n", scale.digits_n),
                 stdout=f"{root}/seed_spread_teacher.txt", after=(teacher,)),
             Job(f"{root}/seed_spread_lines", _py("bench/seed_spread.py", lines, "--nfe", 1, "--seeds", seeds, "-n", scale.digits_n),
                 stdout=f"{root}/seed_spread_lines.txt", after=(lines,))]
    for nfe in ("1", "100"):
        jobs.append(plot_job(teacher, "grid", f"conditional_digits_teacher_nfe{nfe}.png", "--nfe", nfe, "--guidance", "2", "-n", "10"))
    jobs.append(plot_job(lines, "grid", "conditional_digits_lines_nfe1.png", "--nfe", "1", "-n", "10"))
    return jobs


def _conditional_main(ctx: Context, run: str) -> list[Block]:
    rep = ctx.json(f"{run}/eval.json")
    q, floor = quality(rep), floor_of(rep)
    return eval_block(ctx, f"{run}/eval.json", "`straightflow eval` at guidance 1") + [
        Text(f"Pooled W2 at NFE 100: {q[100] / floor:.2f}x the two-sample floor (target: within 1.3x: **{'met' if q[100] <= 1.3 * floor else 'missed'}**).")]


def _conditional_render(ctx: Context, scale: Scale) -> list[Block]:
    run = "runs/conditional/8gaussians"
    blocks = [Heading("8gaussians (the mode as label)")] + ctx.part(lambda: _conditional_main(ctx, run), "the conditional model's evaluation")
    blocks += [Text("Nearest-mode accuracy per class (`python bench/nearest_mode.py`):")]
    blocks += ctx.part(lambda: [Code(ctx.text(f"{run}/nearest_mode.txt"))])
    blocks += ctx.part(lambda: eval_block(ctx, f"{run}/eval_w0.json", "The null branch, `--guidance 0` (the unconditional model)"))
    blocks += ctx.figure("figures/conditional_8gaussians_trajectories.png", f"Reverse paths of the conditional model; `straightflow plot {run} --kind trajectories --nfe 100`")
    if not scale.digits:
        return blocks
    root = "runs/conditional/digits"
    blocks.append(Heading("digits: a guided teacher (w = 2) and its one-step lines student"))
    for rel, title in ((f"{root}/lines/eval.json", "The lines student, its own conditional branch (w = 1)"),
                       (f"{root}/teacher/eval_w2.json", "The guided teacher, `--guidance 2`"),
                       (f"{root}/teacher/eval_w1.json", "The plain conditional teacher, `--guidance 1`")):
        blocks += ctx.part(lambda rel=rel, title=title: eval_block(ctx, rel, title))
    blocks.append(Text("Across sampling seeds:"))
    for rel in (f"{root}/seed_spread_teacher.txt", f"{root}/seed_spread_lines.txt"):
        blocks += ctx.part(lambda rel=rel: [Code(ctx.text(rel))])
    for name, caption in (("teacher_nfe1", "guided teacher (w = 2), NFE 1: 2 network evaluations"), ("teacher_nfe100", "guided teacher (w = 2), NFE 100: 200"),
                          ("lines_nfe1", "lines student, NFE 1: 1")):
        blocks += ctx.figure(f"figures/conditional_digits_{name}.png", f"Per-class grid, one row per class: {caption}")
    return blocks


def _digits(scale: Scale) -> bool:
    return scale.digits


_DIGITS_SKIP = ("Skipped at this scale: the digits UNet trains at about 3000 steps in 10 minutes per model on one core. "
                "`straightflow report --full` runs it.")

#: the report's sections, in page order (``--sections`` takes their names)
SECTIONS: list[SectionSpec] = [
    SectionSpec("baseline", "1. Baseline and benchmark",
                "The baseline (`--method rectified`: rectified flow, independent coupling) on moons, evaluated with Euler at several NFE beside "
                "the two-sample floor, and `bench/bench_baseline.py`: the same model against torchcfm's I-CFM loop (needs `make bench`).",
                _baseline_jobs, _baseline_render),
    SectionSpec("digits-baseline", "2. Images: the digits baseline",
                "The baseline on `digits` (8x8 images, UNet preset `digits-cpu`); quality is a Fréchet distance in the `digits-classifier-v1` "
                "feature space (not FID) beside the train-vs-held-out floor.",
                _digits_baseline_jobs, _digits_baseline_render, _digits, _DIGITS_SKIP),
    SectionSpec("curvature", "3. The curvature method: beta sweeps on 2D data",
                "The curvature paper's Fig. 4, 5, 7 and 8: one `straightflow sweep` per 2D set trains a curvature-method run per beta "
                "(`inf` = the baseline) with the same steps, batch and network, and tabulates curvature (Eq. 5), W2 per NFE, KL and "
                "reconstruction W2.",
                _curvature_jobs, _curvature_render),
    SectionSpec("encoder", "4. Encoder size (the curvature paper's Table 2)",
                "moons, beta = 10: the default `small` encoder against one that mirrors the velocity net (`--encoder same`).",
                _encoder_jobs, _encoder_render),
    SectionSpec("digits-curvature", "5. The curvature method on digits",
                "A beta sweep on `digits` (Fig. 5, 6, 7, 8): curvature should fall monotonically as beta falls.",
                lambda scale: curvature_sweep_jobs(scale, "digits"), _digits_curvature_render, _digits, _DIGITS_SKIP),
    SectionSpec("lines", "6. Teacher pairs: reflow, distillation, lines and OT-CFM on 2D data",
                "Per 2D set, at the baseline's budget: the rectified-flow teacher, `--method ot` (OT-CFM: exact minibatch OT), teacher "
                "pairs (Euler), then on those pairs `reflow` (2-rectified flow, from the teacher), `distill` (one step), `lines` (MSE "
                "endpoint loss), `lines_k2` (`--sampler-steps 2`) and `lines_adv` (`--adv`). `lines*` use the line sampler, the others "
                "Euler. \"distill err\" is the one-step MSE to the teacher's x* on held-out pairs; \"pred. drift\" how far x_hat moves "
                "along the run's own Euler path.",
                _lines_jobs, _lines_render),
    SectionSpec("digits-lines", "7. Teacher pairs on digits",
                "The same students on `digits`: the teacher is the digits baseline of section 2, pairs with Euler 16.",
                _digits_lines_jobs, _digits_lines_render, _digits, _DIGITS_SKIP),
    SectionSpec("table1", "8. Distilling a baseline vs a beta = 10 teacher (the curvature paper's Table 1)",
                "\"NFE to reach\" is the smallest Euler NFE at which a teacher is within 1.1x of the baseline teacher's quality at its "
                "largest NFE; each teacher's pairs (the same NFE for both) train a one-step `distill` student.",
                _table1_jobs, _table1_render),
    SectionSpec("curvature-lines", "9. A curvature teacher for the lines method",
                "Pairs from a beta = 10 curvature teacher at a quarter of the baseline teacher's NFE against the baseline teacher's pairs "
                "at full NFE, each training a `lines` student (the same budget): the student's quality at NFE 1 and what each set of "
                "pairs cost to generate.",
                _curv_lines_jobs, _curv_lines_render),
    SectionSpec("ot-dimension", "10. Minibatch OT pairing vs dimension (the lines paper's argument)",
                "How much exact minibatch OT lowers the pairing cost as the dimension grows (`bench/ot_dimension.py`).",
                _ot_jobs, _ot_render),
    SectionSpec("any-teacher", "11. Any teacher: a torchcfm-trained model through `--teacher-callable`",
                "`bench/torchcfm_teacher.py` trains a plain MLP with torchcfm's I-CFM, makes pairs from it through "
                "`straightflow pairs --teacher-callable`, and trains a lines student on them (needs `make bench`).",
                _any_teacher_jobs, _any_teacher_render),
    SectionSpec("conditional", "12. Class-conditional generation",
                "Classifier-free guidance (`docs/conditional.md`), label dropout 0.1: a conditional model of 8gaussians "
                "(the mode as label) and, at full scale, a guided digits teacher (w = 2) distilled into a one-step lines student.",
                _conditional_jobs, _conditional_render),
]


def select_sections(names: str | None, table: list[SectionSpec] | None = None) -> list[SectionSpec]:
    """The sections named in ``names`` (comma-separated; None: all), in table order; an unknown name is an error."""
    table = SECTIONS if table is None else table
    if names is None:
        return list(table)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {s.name for s in table}
    bad = [n for n in wanted if n not in known]
    if bad or not wanted:
        what = f"unknown section {bad[0]!r}" if bad else "name at least one section"
        raise StraightflowError(f"report --sections: {what}; use: {', '.join(s.name for s in table)}")
    return [s for s in table if s.name in wanted]


def check_scale(name: str) -> Scale:
    if name not in SCALES:
        raise StraightflowError(f"report: unknown scale {name!r}; use: {', '.join(SCALES)}")
    return SCALES[name]
