"""``straightflow`` command line: train, sample, eval, score, plot, export, push, sweep, pairs, demo, report.

The top layer: it parses arguments and calls the library; the library never
imports it. User errors print one line, ``straightflow: error: ...``, and exit
with 2; no traceback. Every TrainConfig field is also a ``train`` flag.
Each command checks its ``--out`` before any work (:func:`check_out`) and records
path fields absolute (:func:`absolute_paths`); Ctrl-C exits with 130 and says what
the command leaves behind (:data:`INTERRUPTED`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from ..config import TrainConfig
from ..errors import StraightflowError, TrainingInterrupted
from .common import (
    _MODEL_DIR_HELP,
    _add_class_flags,
    _config_values,
    _int_list,
    _nfe_text,
    _Parser,
    absolute_paths,
    add_config_flags,
    add_dry_run_flag,
    check_out,
)
from .fit_prior import _add_fit_prior, _run_fit_prior
from .pairs import _add_pairs, _run_pairs


# ---------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of config fields")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (from step 0 with its saved config if it "
                        "has none yet)")
    add_dry_run_flag(p, "train")
    add_config_flags(p)


def _run_train(args) -> int:
    from ..config import load_yaml
    from ..training import train

    values = _config_values(args)
    out_value = values.get("out") or (load_yaml(args.config).get("out") if args.config else None)
    if out_value:  # none: train() says so
        check_out(str(out_value), "folder", "train")
    values = absolute_paths(values, args.config, str(out_value) if out_value else None)
    out = train(config_file=args.config, resume=args.resume, dry_run=args.dry_run, **values)
    if os.environ.get("RANK", "0") == "0" and not args.dry_run:
        print(f"straightflow: run written to {out}")
    return 0


def _add_sample(p):
    p.add_argument("rundir", help=_MODEL_DIR_HELP)
    p.add_argument("--nfe", type=int, default=None,
                   help="network evaluations (default: an export's recommended NFE; 1 for a run directory)")
    p.add_argument("--solver", default=None, help="euler | heun | rk45 | lines (default: the method's own)")
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--out", required=True, help="FILE.npy (arrays) or FILE.png (image grid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--device", default="auto")
    p.add_argument("--raw", action="store_true",
                   help="image data: write the samples as the ODE ends, unclamped (default: clamped to the data "
                        "range [-1, 1])")
    _add_class_flags(p)
    add_dry_run_flag(p, "sampling")


def _run_sample(args) -> int:
    import numpy as np

    from ..run import Run, clamp_samples

    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".png"):
        raise StraightflowError(f"--out {out}: use a .npy or .png file name")
    check_out(out, "file", "sample")
    run = Run.load(args.rundir, device=args.device)
    # an export's recommendation, else NFE 1 (as Run.sample)
    nfe, guidance = run.sampling_defaults(args.nfe, args.guidance)
    if args.dry_run:
        nfe, solver, guidance, labels = run.sampling_plan(args.n, nfe, args.solver, args.classes, guidance)
        weight = (1.0 if guidance is None else guidance) if run.conditional else None
        conditional = f", guidance {weight:g}" if weight is not None else ""
        labelled = labels is not None and weight != 0 and out.suffix.lower() == ".npy"  # w = 0: no labels (as sample)
        print(f"straightflow: dry run: would draw {args.n} samples from {run.dir} (step {run.step}) with {solver} "
              f"at NFE {nfe}{conditional}, seed {args.seed}, and write {out}"
              + (" and its .labels.npy" if labelled else "") + "; nothing written")
        return 0
    res = run.sample(args.n, nfe=nfe, solver=args.solver, seed=args.seed, batch_size=args.batch_size, progress=True,
                     classes=args.classes, guidance=guidance)
    # images: the data range; vectors, latents: never clamped
    samples = clamp_samples(run.data, res.samples, clamp=not args.raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        from ..plots import save_samples_png

        save_samples_png(run, samples, out, labels=res.labels)  # None at guidance 0: unconditional samples
    else:
        np.save(out, samples.numpy())
        if res.labels is not None:
            np.save(out.with_name(out.stem + ".labels.npy"), res.labels.numpy())
    labelled = (f"; labels in {out.with_name(out.stem + '.labels.npy')}"
                if res.labels is not None and out.suffix.lower() == ".npy" else "")
    note = f" (note: {res.note})" if res.note else ""
    print(f"straightflow: {args.n} samples ({res.solver}, {_nfe_text(res)}) written to {out}{labelled}{note}")
    return 0


# ---------------------------------------------------------------- eval
def _add_eval(p):
    p.add_argument("rundir", help=_MODEL_DIR_HELP + "; eval also needs the training data")
    p.add_argument("--nfe", type=_int_list, default=[1, 2, 4, 8])
    p.add_argument("--solver", default=None, help="euler | heun | rk45 | lines (default: the method's own)")
    p.add_argument("--reference",
                   help="held-out samples (.npy) to compare against; the floor is then n points of the run's data "
                        "against it")
    p.add_argument("-n", type=int, default=None,
                   help="generated samples per NFE (default 2000 for vectors, against as many held-out points; 5000 "
                        "for images, against the whole held-out set)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (the first of --seeds)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="sample every NFE with K noise seeds (--seed .. --seed + K - 1): mean and sd of every number "
                        "(default 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples solved together (default 4096 on CUDA, 1024 elsewhere)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--device", default="auto")
    p.add_argument("--inception-weights", default=None,
                   help="FID Inception-v3 weights file: image FD in Inception features (never downloaded)")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="conditional runs: guidance weight (default 1); quality is reported per class and overall")
    p.add_argument("--raw", action="store_true",
                   help="image data: score the samples unclamped (default: clamped to the data range [-1, 1], as "
                        "sample writes them)")
    add_dry_run_flag(p, "evaluation")


def _run_eval(args) -> int:
    from ..evaluate import evaluate, evaluation_plan, load_reference
    from ..run import Run

    run = Run.load(args.rundir, device=args.device)
    run.inception_weights = getattr(args, "inception_weights", None)  # read by the image Fréchet metric
    ref = load_reference(args.reference, tuple(run.data.shape)) if args.reference else None
    if args.dry_run:
        if run.data.kind == "image" and args.inception_weights and not os.path.exists(args.inception_weights):
            # as the metric says
            raise StraightflowError(f"Inception weights file {args.inception_weights} does not exist")
        plan = evaluation_plan(run, args.nfe, solver=args.solver, n=args.n, guidance=args.guidance, seeds=args.seeds,
                               seed=args.seed, batch_size=args.batch_size, reference=ref)
        print(f"straightflow: dry run: {plan}; nothing computed")
        return 0
    report = evaluate(run, args.nfe, solver=args.solver, n=args.n, reference=ref, seed=args.seed,
                      progress=not args.json, guidance=args.guidance, seeds=args.seeds, batch_size=args.batch_size,
                      clamp=not args.raw)
    _print_report(report, args.json)
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    from ..evaluate import format_table

    if as_json:
        try:
            print(json.dumps(report, allow_nan=False))  # strict JSON: NaN / inf are not numbers there
        except ValueError:
            raise StraightflowError("the evaluation produced non-finite numbers; refusing to print them "
                                    "as JSON") from None
    else:
        print(format_table(report))


# ---------------------------------------------------------------- score
def _add_score(p):
    p.add_argument("samples", metavar="SAMPLES",
                   help="a .npy of samples (N x the data's shape, data units), or a pairs folder (its x*: the "
                        "teacher's quality)")
    p.add_argument("--data", default=None,
                   help="the data to score against (its held-out set and floor; default for a pairs folder: the "
                        "manifest's)")
    p.add_argument("--labels", default=None, metavar="FILE.npy",
                   help="class index of each sample (labelled data): class accuracy and per-class scores too")
    p.add_argument("-n", type=int, default=None,
                   help="score the first n samples (default: all; a pairs folder: 2000 for vectors, 5000 for images)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out reference and floor draws (eval's --seed)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--device", default="auto")
    p.add_argument("--inception-weights", default=None,
                   help="FID Inception-v3 weights file: image FD in Inception features (never downloaded)")
    p.add_argument("--raw", action="store_true",
                   help="image data: score the samples unclamped (default: clamped to [-1, 1], as eval does)")
    group = p.add_argument_group("data options (as the run was trained with)")
    for name in ("heldout_fraction", "split_seed", "image_size", "data_kind", "label_column", "data_root"):
        f = next(f for f in fields(TrainConfig) if f.name == name)
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=type(f.default), default=None,
                           help=f"{f.metadata.get('help', '')} (default {f.default!r})")


def _run_score(args) -> int:
    from ..evaluate import score

    options = {k: getattr(args, k)
               for k in ("heldout_fraction", "split_seed", "image_size", "data_kind", "label_column", "data_root")}
    data = absolute_paths({"data": args.data})["data"] if args.data else None
    report = score(args.samples, data, labels=args.labels, n=args.n, seed=args.seed, clamp=not args.raw,
                   inception_weights=args.inception_weights, device=args.device, data_options=options)
    _print_report(report, args.json)
    return 0


# ---------------------------------------------------------------- plot
def _add_plot(p):
    p.add_argument("rundir", help=_MODEL_DIR_HELP)
    p.add_argument("--kind", default="trajectories",
                   help="trajectories | grid | xhat | znorm (what the data supports) | loss (any run: the "
                        "logged stats)")
    p.add_argument("--out", required=True, help="FILE.png")
    p.add_argument("--nfe", type=int, default=None, help="steps of the plotted solve (default: 100 for trajectories)")
    p.add_argument("--solver", default=None)
    p.add_argument("-n", type=int, default=None, help="how many trajectories / images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    _add_class_flags(p)


def _run_plot(args) -> int:
    from ..plots import PLOTS, RUN_DIR_PLOTS
    from ..run import Run

    if args.kind not in PLOTS:
        raise StraightflowError(f"unknown plot kind {args.kind!r}: use one of {', '.join(sorted(PLOTS))}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise StraightflowError(f"plot --out {out}: use a .png file name")
    check_out(out, "file", "plot")
    run = Path(args.rundir) if args.kind in RUN_DIR_PLOTS else Run.load(args.rundir, device=args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    PLOTS[args.kind](run, out, n=args.n, nfe=args.nfe, solver=args.solver, seed=args.seed, classes=args.classes,
                     guidance=args.guidance)
    print(f"straightflow: {args.kind} plot written to {out}")
    return 0


# ---------------------------------------------------------------- export, push
def _add_export(p):
    p.add_argument("rundir", help="the run directory to export")
    p.add_argument("--out", required=True, help="the export folder (new, or an earlier export to replace)")
    p.add_argument("--checkpoint", default=None, metavar="STEP|NAME|PATH",
                   help="the checkpoint to export (default: the latest)")
    p.add_argument("--nfe", type=int, default=None,
                   help="the NFE to recommend (default: measured from RUN/eval.json, else the method's)")


def _run_export(args) -> int:
    from ..export import export

    check_out(args.out, "folder", "export")
    res = export(args.rundir, args.out, checkpoint=args.checkpoint, nfe=args.nfe)
    table = ("with the quality table of eval.json"
             if res.quality_table else "without a quality table (no eval.json in the run)")
    print(f"straightflow: step {res.step} exported to {res.folder} ({', '.join(res.files)}; {table}); "
          f"recommended: {res.recommended['solver']} at NFE {res.recommended['nfe']}")
    return 0


def _add_push(p):
    p.add_argument("export_dir", help="an exported model folder (straightflow export)")
    p.add_argument("repo_id",
                   help="the Hugging Face Hub repo, owner/name (created if missing; log in with `hf auth login` or "
                        "set HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", default="Upload straightflow model", help="commit message")


def _run_push(args) -> int:
    from ..hub import push_to_hub

    url = push_to_hub(args.export_dir, args.repo_id, private=True if args.private else None,
                      commit_message=args.message)
    print(f"straightflow: {args.export_dir} pushed to {args.repo_id} ({url})")
    return 0


# ---------------------------------------------------------------- demo
def _add_demo(p):
    p.add_argument("--out", default="demo_out",
                   help="folder for the demo's figures and tables; its runs and pairs go in OUT/runs, recreated on "
                        "every rerun (an OUT/runs the demo did not make is an error)")
    p.add_argument("--data", default="moons", help="a 2D data set: a built-in name or a file (default moons)")
    p.add_argument("--steps", type=int, default=3000,
                   help="training steps of the baseline and of the curvature method (default 3000)")
    p.add_argument("--student-steps", type=int, default=1000, help="training steps of the lines student (default 1000)")
    p.add_argument("--n-pairs", type=int, default=20000,
                   help="teacher pairs drawn from the baseline for the student (default 20000)")
    p.add_argument("--beta", type=float, default=10.0, help="the curvature method's KL weight (default 10)")


def _run_demo(args) -> int:
    from ..experiments.demo import run_demo

    check_out(args.out, "folder", "demo")
    run_demo(Path(args.out), data=absolute_paths({"data": args.data})["data"], steps=args.steps,
             student_steps=args.student_steps, n_pairs=args.n_pairs, beta=args.beta)
    return 0


# ---------------------------------------------------------------- sweep
def _add_sweep(p: argparse.ArgumentParser) -> None:
    from ..experiments.sweep import SWEEP_FIELDS, parse_betas

    p.add_argument("--data", required=True, help="dataset name or path (as for train)")
    p.add_argument("--betas", type=parse_betas, default="0.3,1,3,10,30,inf",
                   help="comma-separated betas; inf = the independent baseline (default 0.3,1,3,10,30,inf)")
    p.add_argument("--steps", type=int, required=True, help="training steps per beta")
    p.add_argument("--out", required=True, help="sweep folder (one run per beta inside)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--nfe", type=_int_list, default=[1, 2, 4, 8, 100], help="NFEs to evaluate (default 1,2,4,8,100)")
    p.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    p.add_argument("--solver", default=None, help="euler | heun | rk45 (default: the method's own, euler)")
    p.add_argument("-n", type=int, default=None,
                   help="samples per evaluation (default: eval's, 2000 for vectors, 5000 for images)")
    p.add_argument("--config", help="YAML file of train config fields for every run")
    p.add_argument("--no-trajectories", action="store_true", help="skip the 2D forward/reverse trajectory grid")
    p.add_argument("--jobs", type=int, default=None,
                   help="betas trained at once, as separate processes (default: one per CUDA device when there are "
                        "several, else 1)")
    add_dry_run_flag(p, "sweep")
    add_config_flags(p.add_argument_group("train options passed to every run"), exclude=SWEEP_FIELDS)


def _run_sweep(args) -> int:
    from ..experiments.sweep import SWEEP_FIELDS, run_sweep

    check_out(args.out, "folder", "sweep")
    passthrough = {k: v for k, v in _config_values(args).items() if k not in SWEEP_FIELDS}
    passthrough = absolute_paths({"data": args.data, **passthrough}, args.config)
    data = passthrough.pop("data")
    run_sweep(args.out, data, args.betas, args.steps, batch_size=args.batch_size, nfes=args.nfe, seed=args.seed,
              solver=args.solver, n=args.n, config_file=args.config, trajectories=not args.no_trajectories,
              jobs=args.jobs, dry_run=args.dry_run, **passthrough)
    return 0


# ---------------------------------------------------------------- report
def _add_report(p) -> None:
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="reduced budgets, aimed at under 20 minutes on 2 CPU cores (the default)")
    scale.add_argument("--full", dest="scale", action="store_const", const="full",
                       help="the budgets of the full-scale record, docs/experiments-full.md (hours on 2 CPU cores)")
    scale.add_argument("--smoke", dest="scale", action="store_const", const="smoke",
                       help="a tiny network for a few steps: checks that every command runs (numbers mean nothing)")
    p.set_defaults(scale="quick")
    p.add_argument("--out", required=True,
                   help="report folder: report.md, report.html, figures/, runs/, logs/ (rerun the same command "
                        "to resume)")
    p.add_argument("--sections", default=None, help="comma-separated section names (default all; see docs/report.md)")
    p.add_argument("--jobs", type=int, default=None, help="jobs run at once (default: one per CPU core, at most 8)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each job (default: cores / jobs)")
    p.add_argument("--page", default=None, metavar="FILE.md",
                   help="also write the Markdown to FILE.md with a generated header, its figures copied to "
                   "figures/report/ beside it, once every job finished (make experiments-page: docs/experiments.md)")
    p.add_argument("--bench", default=None, metavar="DIR",
                   help="the repository's bench/ folder, for the sections that run its scripts "
                   "(default: bench/ in the current directory; without it those parts say they were not run)")


def _run_report(args) -> int:
    import shlex

    from ..report import run_report
    from ..report.builder import check_page

    check_out(args.out, "folder", "report")
    if args.page is not None:
        check_page(args.page)
    command = ["straightflow", "report", f"--{args.scale}", "--out", args.out]
    command += (["--sections", args.sections] if args.sections else []) + (["--page", args.page] if args.page else [])
    command += ["--bench", args.bench] if args.bench else []
    res = run_report(args.out, args.scale, sections=args.sections, n_jobs=args.jobs, threads=args.threads,
                     page=args.page, command=shlex.join(command),
                     bench=args.bench)
    print(f"straightflow: report written to {res.html} and {res.markdown} ({len(res.jobs.executed)} jobs run, "
          f"{sum(1 for r in res.jobs.results.values() if r.status == 'skipped')} reused, "
          f"{res.jobs.wall_s / 60:.1f} min)"
          + (f"; page written to {res.page}" if res.page else ""))
    return 0


#: name -> (help, add_arguments(parser), run(args) -> exit status)
COMMANDS: dict[str, tuple] = {
    "train": ("train a model (any config field is a flag)", _add_train, _run_train),
    "sample": ("draw samples from a trained run", _add_sample, _run_sample),
    "eval": ("quality per NFE, curvature and flow loss of a run", _add_eval, _run_eval),
    "score": ("quality of any samples (.npy, or a pairs folder's x*) against the data's held-out set, as eval scores",
              _add_score, _run_score),
    "plot": ("plots of a trained run", _add_plot, _run_plot),
    "export": ("write a run as a self-contained model folder (weights, config.json, model card)", _add_export,
               _run_export),
    "fit-prior": ("fit a Gaussian mixture to a curvature run's aggregate posterior and sample from it", _add_fit_prior,
                  _run_fit_prior),
    "push": ("upload an exported model folder to the Hugging Face Hub (straightflow[hub])", _add_push, _run_push),
    "sweep": ("train and evaluate one curvature run per beta; table and plots (Fig. 5, 7, 8)", _add_sweep, _run_sweep),
    "pairs": ("generate (noise, teacher sample) pairs for reflow, distill and lines", _add_pairs, _run_pairs),
    "demo": ("the story on a 2D set: baseline, curvature method, lines student; a figure and a table", _add_demo,
             _run_demo),
    "report": ("rerun the papers' CPU-scale experiments; one HTML page and its Markdown twin", _add_report,
               _run_report),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="straightflow", description="Straight-trajectory ODE generative models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


#: what an interrupted (Ctrl-C) command leaves behind, said on exit 130
INTERRUPTED = {
    "train": "the last checkpoint is intact (use --resume)",
    "pairs": "finished shards are kept; rerun the same command to resume",
    "sweep": "finished runs are kept; rerun the same command to continue",
    "eval": "nothing was written",
    "score": "nothing was written",
    "sample": "nothing was written",
    "plot": "nothing was written",
    "export": "rerun the export; files already in --out are whole (each is written under a temporary name first)",
    "push": "nothing is committed until the upload finishes; rerun the push",
    "fit-prior": "nothing was written",
    "demo": "rerun the demo to start it again",
    "report": "finished jobs are kept; rerun the same command to continue",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        return COMMANDS[command][2](args) or 0
    except StraightflowError as exc:
        print(f"straightflow: error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:  # SIGINT / SIGTERM in train: a checkpoint of the step it reached is written
        if os.environ.get("RANK", "0") == "0":
            print(f"straightflow: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("straightflow: interrupted" + (f"; {INTERRUPTED[command]}" if command in INTERRUPTED else ""),
              file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: one line unless STRAIGHTFLOW_DEBUG=1
        if os.environ.get("STRAIGHTFLOW_DEBUG"):
            raise
        print(f"straightflow: internal error: {type(exc).__name__}: {exc} (set STRAIGHTFLOW_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
