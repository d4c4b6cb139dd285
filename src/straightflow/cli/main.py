"""``straightflow`` command line: train, sample, eval, plot, demo (and more).

User errors print one line, ``straightflow: error: ...``, and exit with 2;
no traceback. Every TrainConfig field is also a ``train`` flag.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from ..config import TrainConfig
from ..errors import StraightflowError

# Subcommand registry: name -> (add_arguments(parser), run(args) -> int). Other
# modules (sweep, pairs, ...) add entries through register_command.
COMMANDS: dict[str, tuple] = {}


def register_command(name: str, help: str):
    def deco(pair):
        COMMANDS[name] = (help, *pair)
        return pair

    return deco


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message):  # noqa: D401
        raise StraightflowError(message if self.prog == "straightflow" else f"{self.prog.split()[-1]}: {message}")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


# ---------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of config fields")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default
        if f.type == "bool" or isinstance(default, bool):
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, nargs="?", const="true", metavar="BOOL", help=f"{help_text} (default {default})")
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=f"{help_text} (default {default!r})")


def _run_train(args) -> int:
    from ..training import train

    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    out = train(config_file=args.config, resume=args.resume, **overrides)
    if os.environ.get("RANK", "0") == "0":
        print(f"straightflow: run written to {out}")
    return 0


# ---------------------------------------------------------------- sample
def _add_sample(p):
    p.add_argument("rundir")
    p.add_argument("--nfe", type=int, default=1)
    p.add_argument("--solver", default=None, help="euler | heun | rk45 (default: the method's own)")
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--out", required=True, help="FILE.npy (arrays) or FILE.png (image grid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--device", default="auto")


def _run_sample(args) -> int:
    import numpy as np

    from ..run import Run

    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".png"):
        raise StraightflowError(f"--out {out}: use a .npy or .png file name")
    run = Run.load(args.rundir, device=args.device)
    solver = args.solver or run.method.default_solver
    res = run.sample(args.n, nfe=args.nfe, solver=solver, seed=args.seed, batch_size=args.batch_size, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        from ..plots import save_samples_png

        save_samples_png(run, res.samples, out)
    else:
        np.save(out, res.samples.numpy())
    print(f"straightflow: {args.n} samples ({solver}, NFE {res.nfe}) written to {out}")
    return 0


# ---------------------------------------------------------------- eval
def _add_eval(p):
    p.add_argument("rundir")
    p.add_argument("--nfe", type=_int_list, default=[1, 2, 4, 8])
    p.add_argument("--solver", default=None, help="euler | heun | rk45 (default: the method's own)")
    p.add_argument("--reference", help="held-out samples (.npy) to compare against")
    p.add_argument("-n", type=int, default=2000, help="number of generated samples per NFE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--device", default="auto")
    p.add_argument("--inception-weights", default=None, help="FID Inception-v3 weights file: image FD in Inception features (never downloaded)")


def _run_eval(args) -> int:
    from ..evaluate import evaluate, format_table, load_reference
    from ..run import Run

    run = Run.load(args.rundir, device=args.device)
    run.inception_weights = getattr(args, "inception_weights", None)  # read by the image Fréchet metric
    ref = load_reference(args.reference, tuple(run.data.shape)) if args.reference else None
    solver = args.solver or run.method.default_solver
    report = evaluate(run, args.nfe, solver=solver, n=args.n, reference=ref, seed=args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0


# ---------------------------------------------------------------- plot
PLOT_KINDS = ["trajectories"]


def _add_plot(p):
    p.add_argument("rundir")
    p.add_argument("--kind", default="trajectories", help="trajectories | grid | xhat | znorm (what the data supports)")
    p.add_argument("--out", required=True, help="FILE.png")
    p.add_argument("--nfe", type=int, default=None, help="steps of the plotted solve (default: 100 for trajectories)")
    p.add_argument("--solver", default=None)
    p.add_argument("-n", type=int, default=None, help="how many trajectories / images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")


def _run_plot(args) -> int:
    from ..plots import PLOTS
    from ..run import Run

    if args.kind not in PLOTS:
        raise StraightflowError(f"unknown plot kind {args.kind!r}: use one of {', '.join(sorted(PLOTS))}")
    run = Run.load(args.rundir, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    PLOTS[args.kind](run, out, args)
    print(f"straightflow: {args.kind} plot written to {out}")
    return 0


# ---------------------------------------------------------------- demo
def _add_demo(p):
    p.add_argument("--out", default="demo_out", help="folder for the demo's run, plot and table")
    p.add_argument("--data", default="moons")
    p.add_argument("--steps", type=int, default=3000)


def _run_demo(args) -> int:
    from ..demo import run_demo

    run_demo(Path(args.out), data=args.data, steps=args.steps)
    return 0


COMMANDS.update(
    {
        "train": ("train a model (any config field is a flag)", _add_train, _run_train),
        "sample": ("draw samples from a trained run", _add_sample, _run_sample),
        "eval": ("quality per NFE, curvature and flow loss of a run", _add_eval, _run_eval),
        "plot": ("plots of a trained run", _add_plot, _run_plot),
        "demo": ("train the baseline on a 2D set and write a plot and a table", _add_demo, _run_demo),
    }
)


def build_parser() -> argparse.ArgumentParser:
    from .. import extensions  # noqa: F401  (registers optional commands/methods)

    parser = _Parser(prog="straightflow", description="Straight-trajectory ODE generative models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return COMMANDS[args.command][2](args) or 0
    except StraightflowError as exc:
        print(f"straightflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("straightflow: interrupted; the last checkpoint is intact (use --resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: one line unless STRAIGHTFLOW_DEBUG=1
        if os.environ.get("STRAIGHTFLOW_DEBUG"):
            raise
        print(f"straightflow: internal error: {type(exc).__name__}: {exc} (set STRAIGHTFLOW_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
