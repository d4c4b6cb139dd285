"""``straightflow export``: a trained run as a small, self-contained model folder (``docs/portable.md``).

The folder holds ``model.safetensors`` (the EMA weights of the velocity net, and of
the learned coupling where there is one), ``config.json`` (the resolved train config,
the sampling state, the format and straightflow versions, the method, its default
solver and a recommended NFE) and ``README.md`` (a model card with YAML front matter
for the Hugging Face Hub, and the run's quality table when it has an ``eval.json``).
:meth:`straightflow.Run.load` / ``sf.load`` read it without the training data; the
layout is one the Hub takes as is (``straightflow.hub.push_to_hub``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save as save_safetensors

from .checkpoint import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    EXPORT_WEIGHTS,
    is_export,
    latest_checkpoint,
    list_checkpoints,
)
from .config import load_run_config
from .data.pairs import read_manifest, teacher_info
from .errors import StraightflowError
from .files import atomic_write
from .formatting import significant_or_str
from .methods import Method, resolve_method
from .models import count_parameters
from .priors import make_prior
from .run import Run
from .version import __version__

#: the files of an export; ``README.md`` is the model card
EXPORT_FILES = (EXPORT_WEIGHTS, EXPORT_CONFIG, "README.md")

#: a measured recommendation: the smallest NFE whose quality is within this fraction of the table's best
NFE_TOLERANCE = 0.1


@dataclass
class ExportResult:
    folder: Path  #: the export folder
    step: int  #: the training step of the exported weights
    recommended: dict  #: {"solver", "nfe", "source"}
    quality_table: bool  #: whether the model card holds a measured quality table
    files: tuple[str, ...] = EXPORT_FILES


def resolve_checkpoint(run_dir: Path, spec: str | int | Path | None) -> Path:
    """The checkpoint folder ``spec`` names: None (the latest), a step number, a folder name in
    ``RUN/checkpoints`` or a path; a one-line error when there is none."""
    run_dir = Path(run_dir)
    if spec is None or spec == "":
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise StraightflowError(f"{run_dir} has no checkpoint yet: nothing to export (train it first)")
        return ckpt
    text = str(spec).strip()
    if text.isdigit():
        found = [c for c in list_checkpoints(run_dir) if int(c.name.split("-")[1].split(".")[0]) == int(text)]
        if not found:
            steps = ", ".join(c.name for c in list_checkpoints(run_dir)) or "none"
            raise StraightflowError(f"{run_dir} has no checkpoint of step {int(text)} (checkpoints: {steps})")
        return found[0]
    path = Path(text)
    if not path.is_dir() and (run_dir / "checkpoints" / text).is_dir():
        path = run_dir / "checkpoints" / text
    if not (path / "meta.json").is_file():
        raise StraightflowError(f"--checkpoint {spec}: not a checkpoint folder (no meta.json)")
    return path


def read_eval_report(run_dir: Path) -> tuple[dict | None, str | None]:
    """The run's ``eval.json`` (written by ``eval --json > RUN/eval.json`` or by ``sweep``) and a note when it cannot be
    used."""
    path = Path(run_dir) / "eval.json"
    if not path.is_file():
        return None, None
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path.name} could not be read ({str(exc).splitlines()[0]})"
    # sweep's cache: {"key": ..., "report": ...}
    if isinstance(report, dict) and isinstance(report.get("report"), dict):
        report = report["report"]
    if not isinstance(report, dict) or not isinstance(report.get("results"), list) or not report["results"] \
            or not all(isinstance(r, dict) and "nfe" in r and "solver" in r for r in report["results"]):
        return None, f"{path.name} is not an eval report (no results rows)"
    return report, None


def recommend(run: Run, report: dict | None, nfe: int | None = None) -> dict:
    """``{"solver", "nfe", "source"}`` (and ``"guidance"`` for a conditional run): ``nfe`` when given; else
    the smallest NFE whose measured quality (``report``, at the exported step, fixed-step rows without
    caveats) is within ``NFE_TOLERANCE`` of the table's best; else the method's default. The guidance is
    the weight the chosen row was measured at (``report["guidance"]``), else 1."""
    rec = _recommend_nfe(run, report, nfe)
    if run.conditional:
        rec.setdefault("guidance", 1.0)
    return rec


def _recommend_nfe(run: Run, report: dict | None, nfe: int | None) -> dict:
    solver = run.method.default_solver
    if nfe is not None:
        if nfe < 1:
            raise StraightflowError(f"--nfe must be >= 1, got {nfe}")
        return {"solver": solver, "nfe": int(nfe), "source": "given at export"}
    metric = (report or {}).get("quality_metric")
    if report is not None and report.get("step") == run.step and isinstance(metric, str):
        rows = [r for r in report["results"] if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])
                and r.get("solver") != "rk45" and not any(k == "note" or k.endswith("_note") for k in r)]
        if rows:
            best = min(r[metric] for r in rows)
            good = [r for r in rows if r[metric] <= best + NFE_TOLERANCE * abs(best)]
            pick = min(good, key=lambda r: (int(r["nfe"]), r["solver"] != solver))
            rec = {"solver": str(pick["solver"]), "nfe": int(pick["nfe"]),
                   "source": f"eval.json: the smallest NFE whose {metric} is within {NFE_TOLERANCE:.0%} of the "
                             "best measured"}
            if isinstance(report.get("guidance"), (int, float)):  # the weight the chosen row was measured at
                rec["guidance"] = float(report["guidance"])
            return rec
    return {"solver": solver, "nfe": int(run.method.default_nfe(run.cfg)),
            "source": f"the {run.method.name or run.cfg.method} method's default; no quality measured at this step"}


def _jsonable(value):
    """JSON without NaN / inf (strict readers reject them): non-finite floats as text, which the config reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, data, "files already in the export folder are whole: rerun the export")


def _check_out(out: Path, run_dir: Path) -> None:
    if out.exists() and not out.is_dir():
        raise StraightflowError(f"export --out {out}: is a file; give a folder")
    if out.resolve() == run_dir.resolve() or (out / "config.yaml").exists():
        raise StraightflowError(f"export --out {out}: is a run directory; give a new folder (or an earlier export "
                                "to replace)")
    if (out / EXPORT_CONFIG).exists():
        try:
            fmt = json.loads((out / EXPORT_CONFIG).read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != EXPORT_FORMAT:
            raise StraightflowError(f"export --out {out}: holds a config.json that is not a straightflow export; give "
                                    "another folder")


def export(run_dir: str | Path, out: str | Path, checkpoint: str | int | Path | None = None, nfe: int | None = None,
           method: Method | None = None) -> ExportResult:
    """Write the run's EMA weights, ``config.json`` and a model card to ``out`` (``docs/portable.md``).

    ``checkpoint``: a step, a checkpoint folder (name or path), or None for the latest;
    ``nfe``: the recommended NFE (default: measured from ``RUN/eval.json``, else the method's).
    A run trained with a user's own network module (``model: custom``) cannot be exported; one trained with
    a user's own method (``method: custom``) can, given the method again as ``method=`` (and so must its loader).
    An existing ``out`` may be an earlier export (its files are replaced); other files in it are left alone.
    """
    run_dir, out = Path(run_dir), Path(out)
    if is_export(run_dir):
        raise StraightflowError(f"{run_dir} is already an exported model; export takes a run directory")
    if not (run_dir / "config.yaml").is_file():
        raise StraightflowError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_run_config(run_dir / "config.yaml")
    if cfg.model == "custom" or resolve_method(cfg, method).uses_custom_encoder(cfg):
        which = "velocity module (model: custom)" if cfg.model == "custom" else "encoder module (encoder: custom)"
        raise StraightflowError(f"{run_dir} was trained with a user's own {which}: an export holds built-in "
                                "networks only, which load from config.json alone; save your module's weights yourself "
                                "(Run.load(..., velocity_net=...))")
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    _check_out(out, run_dir)
    run = Run.load(run_dir, device="cpu", checkpoint=ckpt, method=method)  # checks the weights (sha256, finite, shapes)
    if run.fitted_prior:
        raise StraightflowError(f"{run.checkpoint} holds a fitted prior (prior_fit.safetensors), which an export does "
                                "not carry yet: the exported model would sample from N(0, I); delete that file to "
                                "export the model as trained")
    report, eval_note = read_eval_report(run_dir)
    rec = recommend(run, report, nfe)
    weights = save_safetensors({k: v.detach().contiguous().cpu() for k, v in run.module.state_dict().items()},
                               metadata={"format": "pt"})
    config = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "library_name": "straightflow",
        "straightflow_version": __version__,
        "method": cfg.method,
        "model": run.meta.get("model", cfg.model),
        "default_solver": run.method.default_solver,
        "recommended": rec,
        "step": run.step,
        "conditional": run.conditional,
        "velocity_parameters": count_parameters(run.velocity),
        "parameters": count_parameters(run.module),
        "weights": {"file": EXPORT_WEIGHTS, "sha256": hashlib.sha256(weights).hexdigest(),
                    "contents": "EMA weights: velocity.* (the velocity net), coupling.* (a learned coupling, if any)"},
        "sampling": run.sampling_state(),
        **({"teacher": teacher} if (teacher := student_teacher(run, report)) is not None else {}),
        # where the data lives and whether to download it are the evaluating machine's choice, not the trainer's
        "train_config": {**cfg.to_dict(), "data_root": "", "download": False},
    }
    card = model_card(run, config, report, eval_note)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StraightflowError(f"export --out {out}: cannot be created ({exc.strerror or exc})") from None
    _write_atomic(out / EXPORT_WEIGHTS, weights)
    _write_atomic(out / "README.md", card.encode())
    # last: marks a complete export
    _write_atomic(out / EXPORT_CONFIG, (json.dumps(_jsonable(config), indent=1, allow_nan=False) + "\n").encode())
    return ExportResult(out, run.step, rec, report is not None)


# ---------------------------------------------------------------- model card
def student_teacher(run: Run, report: dict | None) -> dict | None:
    """A pair-trained student's teacher (``kind``, ``source``, ``solver``, ``nfe``, ``guidance``; the
    diffusers scheduler's settings where there are some): from its pairs' manifest, else from the
    ``teacher`` block of its ``eval.json``, else what its config recorded; None for other methods."""
    if not run.method.trains_on_pairs:
        return None
    if run.cfg.pairs:
        try:
            manifest = read_manifest(run.cfg.pairs)
        except StraightflowError:
            manifest = None
        if manifest is not None:
            info = teacher_info(manifest, run.cfg.pairs)
            sampler = manifest.get("diffusers") or {}
            info.update({k: sampler[k] for k in ("scheduler", "steps", "clip_sample") if k in sampler})
            info["n_pairs"] = int(manifest.get("n", 0))
            return info
    block = (report or {}).get("teacher")
    if isinstance(block, dict) and "kind" in block:
        return {k: block[k] for k in ("kind", "source", "pairs", "solver", "nfe", "guidance") if k in block}
    return {"kind": "run" if run.cfg.teacher else "unknown", "source": run.cfg.teacher or "",
            "pairs": run.cfg.pairs or "", "note": "the pairs folder is gone: solver and NFE unknown"}


def _teacher_row(info: dict) -> str:
    """The model card's teacher row: what kind, where from, how it sampled."""
    what = {"run": "a straightflow run", "callable": "a callable", "diffusers": "a diffusers model",
            "edm": "an EDM denoiser"}.get(info["kind"], info["kind"])
    how = [f"`{info['solver']}` at NFE {info['nfe']}"] if "solver" in info else [info.get("note", "")]
    if isinstance(info.get("guidance"), (int, float)):
        how.append(f"guidance {info['guidance']:g}")
    if "clip_sample" in info:
        how.append(f"clip_sample {str(info['clip_sample']).lower()}")
    if info.get("n_pairs"):
        how.append(f"{info['n_pairs']:,} pairs")
    source = f" `{info['source']}`" if info.get("source") else ""
    return f"| teacher | {what}{source} ({', '.join(h for h in how if h)}) |"


def _teacher_quality(report: dict) -> list[str]:
    """The card's line on the teacher's quality: its pairs' x* scored as the student's rows (``eval``'s ``teacher``
    block)."""
    block = report.get("teacher")
    metric = report.get("quality_metric")
    if not isinstance(block, dict) or not isinstance(block.get(metric), (int, float)):
        return []
    keys = [k for k in ("w2", "energy", "fd", "kid", "precision", "recall") if isinstance(block.get(k), (int, float))]
    return ["", f"Teacher ({block.get('samples', 'pairs')}, {block.get('solver')} NFE {block.get('nfe')}, n = "
                f"{block.get('n')}, against the same held-out reference): "
                + ", ".join(f"{k} {significant_or_str(block[k])}" for k in keys) + "  "]


def _data_label(name: str) -> str:
    return Path(name).name if ("/" in name or "\\" in name) else name


def quality_table(report: dict) -> list[str]:
    """The eval report's quality per NFE as a Markdown table (rows with caveats marked), floors and extras below."""
    skip = {"nfe", "nfe_requested", "solver", "sample_seconds", "per_class", "network_evals"}
    keys = [k for k in report["results"][0]
            if k not in skip and not (k == "note" or k.endswith("_note"))
            and isinstance(report["results"][0][k], (int, float))]
    notes: dict[str, str] = {}
    lines = ["| solver | NFE | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in report["results"]:
        marks = ""
        for k, v in r.items():
            if (k == "note" or k.endswith("_note")) and isinstance(v, str) and v:
                notes.setdefault(v, "*" * (len(notes) + 1))
                marks += notes[v]
        lines.append(f"| {r['solver']} | {r['nfe']}{marks} | "
                     + " | ".join(significant_or_str(r.get(k, "-")) for k in keys) + " |")
    lines.append("")
    for note, mark in notes.items():
        lines.append(f"{mark} {note}  ")
    floors = {k: v for k, v in report.items() if k.endswith("_floor") and isinstance(v, float)}
    if floors:
        lines.append(f"Two-sample floor ({report.get('floor_source', 'held-out data vs a second sample')}): "
                     + ", ".join(f"{k[:-6]} {significant_or_str(v)}" for k, v in floors.items()) + "  ")
    extras = [f"{k} {significant_or_str(report[k])}" for k in ("curvature", "prediction_drift", "flow_loss_heldout")
              if isinstance(report.get(k), float)]
    if extras:
        lines.append("Curvature and held-out loss: " + ", ".join(extras) + "  ")
    lines.append(f"n = {report.get('n')} samples per NFE against {report.get('n_reference')} held-out points, step "
                 f"{report.get('step')}.")
    return lines


def _guidance_text(rec: dict) -> str:
    """``, guidance w`` for a conditional model's recommendation (classifier-free guidance weight)."""
    return f", guidance {rec['guidance']:g}" if isinstance(rec.get("guidance"), (int, float)) else ""


def model_card(run: Run, config: dict, report: dict | None, eval_note: str | None) -> str:
    """README.md of an export: YAML front matter (library_name, tags) and the card."""
    cfg, state, rec = run.cfg, config["sampling"], config["recommended"]
    data = _data_label(state["name"])
    tags = ["straightflow", "flow-matching", "straight-trajectories", cfg.method,
            "image-generation" if state["kind"] == "image" else "point-cloud"]
    if run.conditional:
        tags.append("class-conditional")
    prior = make_prior(cfg.prior, tuple(state["shape"])).describe()
    coupling = config["parameters"] - config["velocity_parameters"]
    classes = ", ".join(state["class_names"][:20]) + (", ..." if len(state["class_names"]) > 20 else "")
    shape = " x ".join(map(str, state["shape"]))
    lines = ["---", "library_name: straightflow", "tags:", *[f"- {t}" for t in dict.fromkeys(tags)], "---", "",
             f"# {cfg.method} on {data}", "",
             f"A straight-trajectory ODE generative model trained with straightflow "
             f"{__version__}: {run.method.description or run.method.name or cfg.method}. It maps noise z ~ {prior} to "
             "samples in a few network evaluations (NFE) by integrating dz/dt = v(z, t) from t = 1 (noise) to t = "
             "0 (data).", "",
             "| | |", "|---|---|",
             f"| method | `{cfg.method}`{run.method.card_note(cfg)} |",
             f"| data | {data}: {state['kind']}, shape {shape}"
             + (f", normalised per {'feature' if state['kind'] == 'vector' else 'channel'} (undone on sampling)"
                if state.get("normalization") else "") + " |",
             (f"| classes | {classes} (class-conditional, classifier-free guidance) |" if run.conditional
              else "| classes | unconditional |"),
             f"| network | `{config['model']}`, {config['velocity_parameters']:,} parameters"
             + (f" (+{coupling:,} in the learned coupling)" if coupling else "") + " |",
             f"| training | step {config['step']:,} of {cfg.steps:,}, batch size {cfg.batch_size}, lr "
             f"{significant_or_str(cfg.lr)}, EMA {significant_or_str(cfg.ema_decay)}, seed {cfg.seed} |",
             *([_teacher_row(config["teacher"])] if isinstance(config.get("teacher"), dict) else []),
             f"| recommended sampling | `{rec['solver']}` at NFE {rec['nfe']}{_guidance_text(rec)} ({rec['source']}) |",
             "",
             "## Usage", "",
             "```bash",
             "pip install straightflow",
             f"straightflow sample MODEL_DIR --nfe {rec['nfe']} --solver {rec['solver']} -n 1000 --out "
             "samples.npy --seed 0"
             + (f" --class all --guidance {rec['guidance']:g}" if run.conditional else ""),
             "```", "",
             "```python",
             "import straightflow as sf",
             "run = sf.load(\"MODEL_DIR\")          # this folder; or sf.hub.from_pretrained(\"user/repo\") with "
             "straightflow[hub]",
             f"out = run.sample(1000, nfe={rec['nfe']}, solver=\"{rec['solver']}\", seed=0"
             + (f", classes={state['class_names'][0]!r}, guidance={rec['guidance']:g}" if run.conditional else "")
             + ")   # out.samples: data units",
             "```", "",
             "Sampling needs only this folder. `straightflow eval` also needs the training data "
             f"(`train_config.data` in config.json: {data}).", "",
             "## Quality", ""]
    if report is not None:
        if report.get("step") != config["step"]:
            lines += [f"Measured at step {report.get('step')}, not at the exported step {config['step']}: re-run "
                      "`eval` to update it.", ""]
        lines += [f"`straightflow eval` of the run ({report.get('quality_metric', 'quality')} per NFE; lower "
                  "is better):", "", *quality_table(report),
                  *_teacher_quality(report)]
    else:
        why = f" ({eval_note})" if eval_note else ""
        lines += [f"No quality table: the run directory held no usable `eval.json`{why}. Produce one and export again:",
                  "", "```bash", "straightflow eval RUN --nfe 1,2,4,8 -n 2000 --json > RUN/eval.json",
                  "straightflow export RUN --out MODEL_DIR", "```"]
    lines += ["", "## Files", "",
              f"- `{EXPORT_WEIGHTS}`: EMA weights (`velocity.*`: the velocity "
              f"net{'; `coupling.*`: the learned coupling' if coupling else ''})",
              f"- `{EXPORT_CONFIG}`: format `{EXPORT_FORMAT}` version {EXPORT_VERSION}, the train config, the "
              "sampling state (shape, class names, normalisation, prior) and the recommendation",
              "- `README.md`: this card", ""]
    return "\n".join(lines)
