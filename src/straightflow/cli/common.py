"""What every command of the ``straightflow`` command line shares: the parser with one-line errors, the
config flags, absolute paths for what a run records, ``--out`` checks and the class / guidance flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from ..config import TrainConfig
from ..errors import StraightflowError
from ..formatting import parse_int_list


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and no prefix matching (``--step 50`` is not ``--steps``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D401
        raise StraightflowError(message if self.prog == "straightflow" else f"{self.prog.split()[-1]}: {message}")


def _int_list(text: str) -> list[int]:
    """argparse type of ``--nfe``: :func:`~straightflow.formatting.parse_int_list` with argparse's error."""
    try:
        values = parse_int_list(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_config_flags(p, exclude: set[str] = frozenset()) -> None:
    """One ``--field-name`` flag per TrainConfig field (not in ``exclude``); unset flags are absent from the
    namespace."""
    for f in fields(TrainConfig):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, nargs="?", const="true", metavar="BOOL",
                           help=f"{help_text} (default {f.default})")
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=f"{help_text} (default {f.default!r})")


def add_dry_run_flag(p, command: str) -> None:
    """``--dry-run``: check everything the command would check, print what it would do, write nothing."""
    p.add_argument("--dry-run", action="store_true",
                   help=f"check the {command} (options, data, --out, checkpoints) and print what it would do; writes "
                        "nothing, exit 0 (or the error the real run would give, exit 2)")


def _config_values(args) -> dict:
    names = set(TrainConfig.field_names())
    return {k: v for k, v in vars(args).items() if k in names}


#: config fields that name files or folders; the command line records them as absolute paths
PATH_FIELDS = ("data", "pairs", "teacher", "data_root", "lpips_weights")


def absolute_paths(values: dict, config_file: str | None = None, run_dir: str | Path | None = None) -> dict:
    """``values`` with its path fields (given, or else set in ``config_file``) made absolute.

    A run records its config, and ``Run.load`` / eval / sample read the data from it:
    with absolute paths they work from any directory. ``data`` is changed only when it
    names an existing file or folder and is not a built-in dataset name; the other
    fields whenever set. Where ``run_dir`` already holds a run (``--resume``), a path
    naming the same place as the run's saved one is passed as saved, so the original
    command line resumes a run recorded with a relative path.
    """
    from ..config import load_yaml
    from ..data import builtin_names

    from_file = load_yaml(config_file) if config_file else {}
    saved_file = Path(run_dir) / "config.yaml" if run_dir else None
    saved = load_yaml(saved_file) if saved_file is not None and saved_file.is_file() else {}
    resolved = dict(values)
    for name in PATH_FIELDS:
        value = values.get(name, from_file.get(name))
        if not isinstance(value, str) or not value:
            continue
        if name == "data":
            if value in builtin_names() or not Path(value).exists():
                continue
            absolute = os.path.abspath(value)
        else:
            absolute = os.path.abspath(os.path.expanduser(value))
        before = saved.get(name)
        if isinstance(before, str) and before and os.path.abspath(os.path.expanduser(before)) == absolute:
            absolute = before
        if absolute != value or name in values:
            resolved[name] = absolute
    return resolved


def check_out(path: str | Path, want: str, command: str) -> Path:
    """Refuse an ``--out`` that cannot be written, before any work is done.

    ``want`` is ``"file"`` (sample, plot) or ``"folder"`` (train, pairs, sweep, demo):
    an existing path of the other kind, a path below a file, or one whose folder
    (or nearest existing ancestor, for a path still to be created) is not writable
    is a one-line error.
    """
    out = Path(path)
    where = f"{command} --out {out}"
    if want == "file" and out.is_dir():
        raise StraightflowError(f"{where}: is a folder; give a file name")
    if want == "folder" and out.exists() and not out.is_dir():
        raise StraightflowError(f"{where}: is a file; give a folder (a new or an existing one)")
    existing = out
    while not existing.exists():  # the nearest part of the path that exists ('.' and '/' always do)
        existing = existing.parent
    if existing != out and not existing.is_dir():
        raise StraightflowError(f"{where}: cannot be created: {existing} is a file")
    if existing == out and want == "file":  # overwriting a file needs only the file to be writable
        if not os.access(out, os.W_OK):
            raise StraightflowError(f"{where}: the file is not writable; choose another --out")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise StraightflowError(f"{where}: cannot write in {existing} (permission denied); choose another --out")
    return out


# ---------------------------------------------------------------- sample
_MODEL_DIR_HELP = "a run directory or an exported model folder (straightflow export)"


def _add_class_flags(p) -> None:
    p.add_argument("--class", dest="classes", default=None, metavar="C|all",
                   help="conditional runs: a class name or index, or all (sample i gets class i mod K; default all)")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="conditional runs: guidance weight w (0 = unconditional: no labels written, 1 = conditional, "
                        "> 1 guided; costs 2 network "
                        "evaluations per step; default: an export's recommended weight, else 1)")


def _nfe_text(res) -> str:
    """'NFE k', plus the network evaluations when guidance doubles them."""
    if res.guidance is None or res.network_evals == res.nfe:
        return f"NFE {res.nfe}" + (f", guidance {res.guidance:g}" if res.guidance is not None else "")
    return (f"NFE {res.nfe}, guidance {res.guidance:g}: {res.network_evals} network evaluations per sample in "
            f"{res.network_calls} calls of {res.call_rows} rows")
