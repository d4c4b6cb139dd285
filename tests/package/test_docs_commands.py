"""The documentation's command lines run: every ``straightflow ...`` line of the ```bash blocks of README.md and
docs/*.md (also after ``torchrun ... -m`` or ``python -m``), page by page, in a fresh working directory.

- ``train``, ``pairs``, ``sample``, ``eval`` and ``sweep`` run with ``--dry-run``: the real run's checks (flags, config,
  data and its shape, run directory, checkpoints, the teacher tried on two noises), nothing written. A line whose
  input does not exist yet because an earlier line of the page makes it (``--out runs/teacher``, then ``pairs
  runs/teacher``) gets that earlier line run for real at a tiny size (:data:`TINY`), then its dry run again.
- The other commands (``export``, ``plot``, ``score``, ``report``, ``demo``, ``push``) and ``--help`` lines are parsed
  by the command line's own parser: a renamed or misspelt flag fails.
- A user's own files the docs name (``points.npy``, ``my_images/``, ``my_teacher.py``, a diffusers model folder,
  ``RUN``) are stand-ins made by :func:`make_stand_in`. A block after ``<!-- docs-test: skip (REASON) -->`` is only
  parsed, and the test says REASON.

So a misspelt flag, a value the run would refuse or a command that no longer fits what its page made before it fails
here. Cost: about a minute on 2 shared cores, most of it the tiny runs of docs/experiments.md.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from test_docs import PAGES, ROOT, Block, fenced_blocks

from straightflow.cli.main import COMMANDS, build_parser, main
from straightflow.errors import StraightflowError

DRY_RUN = {"train", "pairs", "sample", "eval", "sweep"}
#: what a tiny real run of a line that makes an input adds to it (later flags win)
TINY = {
    "train": ["--steps", "2", "--ckpt-every", "2", "--batch-size", "16", "--progress", "false", "--width", "16",
              "--depth", "1"],
    "pairs": ["-n", "40", "--quiet"],
}
#: the errors that say an input is missing, with the path they name
MISSING = [re.compile(p) for p in (
    r"^(?P<path>.+?) is not a run directory \(no config\.yaml\)",
    r"^pairs folder (?P<path>.+?) does not exist",
    r"^data path (?P<path>.+?) does not exist",
    r"^--teacher-diffusers (?P<path>.+?): ",
    r"^unknown data '(?P<path>.+?)'",
)]
SEPARATORS = {"&&", "||", ";", "|"}


class Command:
    """One ``straightflow`` command line of a page: its arguments and where it is."""

    def __init__(self, block: Block, line: int, argv: list[str]):
        self.block, self.line, self.argv = block, line, argv

    @property
    def where(self) -> str:
        return f"{self.block.page.relative_to(ROOT)}:{self.line}"

    @property
    def name(self) -> str:
        return self.argv[0]

    def out(self) -> str | None:
        return self.argv[self.argv.index("--out") + 1] if "--out" in self.argv[:-1] else None


def split_commands(block: Block) -> list[Command]:
    """The ``straightflow`` commands of a bash block: continuation lines joined, comments, redirections and prompts
    dropped, chains (``&&``, ``;``, ``|``) split."""
    commands: list[Command] = []
    physical = block.code.splitlines()
    i = 0
    while i < len(physical):
        start, text = i, physical[i]
        while text.rstrip().endswith("\\") and i + 1 < len(physical):
            i += 1
            text = text.rstrip()[:-1] + " " + physical[i]
        i += 1
        tokens = shlex.split(re.sub(r"^\s*\$\s+", "", text), comments=True)
        segment: list[str] = []
        for token in [*tokens, ";"]:
            if token not in SEPARATORS:
                segment.append(token)
                continue
            argv = _straightflow_argv(segment)
            if argv:
                commands.append(Command(block, block.line + 1 + start, argv))
            segment = []
    return commands


def _straightflow_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after ``straightflow`` (or ``-m straightflow``), redirections dropped; None for other commands."""
    tokens = [t for t in tokens if not re.match(r"^[A-Z_][A-Z0-9_]*=", t)]  # environment assignments
    if tokens[:1] == ["straightflow"]:
        rest = tokens[1:]
    elif "-m" in tokens and tokens[tokens.index("-m") + 1: tokens.index("-m") + 2] == ["straightflow"]:
        rest = tokens[tokens.index("-m") + 2:]
    else:
        return None
    argv, skip = [], False
    for token in rest:
        if skip:
            skip = False
        elif token in (">", ">>", "2>", "2>>"):
            skip = True
        elif not re.match(r"^\d?>", token):
            argv.append(token)
    return argv if argv and argv[0] in COMMANDS else None


PAGE_COMMANDS = {page: [c for b in fenced_blocks(page, "bash") for c in split_commands(b)] for page in PAGES}
PAGES_WITH_COMMANDS = [page for page, commands in PAGE_COMMANDS.items() if commands]


# --- stand-ins for a user's own files ---------------------------------------------------------------------------------

def make_stand_in(path: Path, command: Command) -> bool:
    """Make the user's file or folder ``path`` that ``command`` reads, when the docs only name it; False when
    this is not a kind of input a stand-in exists for."""
    rng = np.random.default_rng(0)
    if path.suffix == ".npy":
        np.save(path, rng.normal(size=(600, 2)).astype(np.float32))
    elif path.suffix == ".csv":
        points = rng.normal(size=(600, 2))
        rows = [f"{x:.5f},{y:.5f},{'ab'[i % 2]}" for i, (x, y) in enumerate(points)]
        path.write_text("x,y,kind\n" + "\n".join(rows) + "\n")
    elif "images" in path.name or path.name == "DATA":  # an image folder (DATA: data any teacher line can sample)
        from PIL import Image

        for c in ("a", "b"):
            (path / c).mkdir(parents=True, exist_ok=True)
            for i in range(12):
                Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(path / c / f"{i}.png")
    elif "--teacher-diffusers" in command.argv:
        return make_diffusers_stand_in(path, command)
    elif path.name.isupper():  # RUN, TEACHER, ...: any run directory
        assert main(["train", "--data", "moons", "--out", str(path), *TINY["train"]]) == 0
    else:
        return False
    return True


def make_diffusers_stand_in(path: Path, command: Command) -> bool:
    """A tiny untrained diffusers DDPM pipeline folder at ``path`` (or its parent, for ``.../unet``), shaped for the
    digits the docs' commands name."""
    diffusers = pytest.importorskip("diffusers", reason="the diffusers teacher lines need the diffusers extra")
    root = path.parent if path.name in ("unet", "scheduler") else path
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=50)).save_pretrained(root)
    return True


def stand_in_files(commands: list[Command], cwd: Path) -> None:
    """The user's own teacher modules the page names (``my_teacher.py:velocity``): a velocity ``FN(x, t)``, a
    sampler ``FN(z)`` and a factory ``FN(**args)`` returning the velocity, whichever the line asks for."""
    for command in commands:
        for token in command.argv:
            match = re.match(r"^(?P<file>[\w./-]+\.py|[\w.]+):(?P<fn>\w+)$", token)
            if match and not match["file"].endswith(".py"):  # a module path: my_pkg.sample -> my_pkg/sample.py
                parts = match["file"].split(".")
                for k in range(1, len(parts)):
                    (cwd / Path(*parts[:k])).mkdir(exist_ok=True)
                    (cwd / Path(*parts[:k]) / "__init__.py").touch()
                match = {"file": str(Path(*parts).with_suffix(".py")), "fn": match["fn"]}
            if match and not (ROOT / match["file"]).exists():
                file = cwd / match["file"]
                file.parent.mkdir(parents=True, exist_ok=True)
                known = file.read_text() if file.exists() else ""
                if f"def {match['fn']}(" not in known:
                    kind = _value(command.argv, "--teacher-kind") or "velocity"
                    factory = "--teacher-arg" in command.argv
                    body = ("def {fn}(**args):\n    return lambda x, t: -x\n" if factory else
                            "def {fn}(z):\n    return 0.5 * z\n"
                            if kind == "sampler" else "def {fn}(x, t):\n    return -x\n")
                    file.write_text(known + body.format(fn=match["fn"]))


def _value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


# --- running a page ---------------------------------------------------------------------------------------------------

def parse_only(command: Command) -> None:
    """The command line's own parser on ``command`` (``--help`` exits 0)."""
    try:
        build_parser().parse_args(command.argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{command.where}: {shlex.join(command.argv)} exits {exc.code}"
    except StraightflowError as exc:
        raise AssertionError(f"{command.where}: straightflow {shlex.join(command.argv)}: {exc}") from None


def missing_input(error: str) -> str | None:
    for pattern in MISSING:
        match = pattern.search(error.removeprefix("straightflow: error: "))
        if match:
            return match["path"]
    return None


def same_path(a: str, b: str, cwd: Path) -> bool:
    return (cwd / a).resolve() == (cwd / b).resolve()


def attempt(command: Command, argv: list[str], earlier: list[Command], cwd: Path, capsys, made: dict[str, list[str]],
            depth: int = 0) -> None:
    """``argv`` (``command``, or its dry run): exit 0, or its missing input made (by the earlier line of the page that
    makes it, run for real at a tiny size, or a stand-in) and ``argv`` again; any other error fails the test. A line
    that repeats the very line that made its run directory (the experiments pages list a section's teacher again)
    finds it made."""
    assert depth < 6, f"{command.where}: inputs nest too deep"
    for _ in range(4):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        last = err.splitlines()[-1] if err else ""
        if code == 0 or ("already holds a run" in last and made.get(command.out() or "") == command.argv):
            return
        path = missing_input(last)
        assert path is not None and path not in made, f"{command.where}: straightflow {shlex.join(argv)}: {err}"
        producer = next((c for c in reversed(earlier) if c.out() and same_path(c.out(), path, cwd)), None)
        made[path] = producer.argv if producer is not None else []
        if producer is not None:
            run_tiny(producer, earlier[: earlier.index(producer)], cwd, capsys, made, depth + 1)
        else:
            assert make_stand_in(cwd / path, command), (f"{command.where}: {err} (no earlier line of the page "
                                                        f"makes {path})")
    raise AssertionError(f"{command.where}: straightflow {shlex.join(argv)}: its inputs could not be made")


def run_tiny(command: Command, earlier: list[Command], cwd: Path, capsys, made: dict[str, list[str]],
             depth: int) -> None:
    """``command`` for real, at a tiny size (a dry run first, where the command has one, to make its own inputs)."""
    # no pilots
    argv = [("10" if a == "auto" and command.argv[i - 1] == "--beta" else a) for i, a in enumerate(command.argv)]
    argv += TINY.get(command.name, [])
    if command.name in DRY_RUN:
        attempt(command, [*argv, "--dry-run"], earlier, cwd, capsys, made, depth)
    attempt(command, argv, earlier, cwd, capsys, made, depth)


def run_page(commands: list[Command], cwd: Path, capsys) -> list[str]:
    """Every command of a page in order; returns the skip reasons of the blocks marked skip (their lines parsed)."""
    stand_in_files(commands, cwd)
    made: dict[str, list[str]] = {}  # path -> the line that made it ([] for a stand-in)
    skipped = []
    for i, command in enumerate(commands):
        if command.block.marker == "skip":
            parse_only(command)
            skipped.append(f"{command.where}: {command.block.reason}")
        elif command.name in DRY_RUN and "--help" not in command.argv:
            attempt(command, [*command.argv, "--dry-run"], commands[:i], cwd, capsys, made)
        else:
            parse_only(command)
    return skipped


@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=[p.name for p in PAGES_WITH_COMMANDS])
def test_page_commands_run(page: Path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the page's own teacher modules (stand_in_files)
    skipped = run_page(PAGE_COMMANDS[page], tmp_path, capsys)
    if skipped:
        pytest.skip("parsed only: " + "; ".join(sorted(set(skipped))))


def test_the_commands_are_found():
    """The pages that show command lines are read, and every command the command line has appears somewhere."""
    names = {c.name for commands in PAGE_COMMANDS.values() for c in commands}
    assert {"README.md", "getting-started.md", "guide.md", "teachers.md"} <= {p.name for p in PAGES_WITH_COMMANDS}
    assert DRY_RUN <= names


def test_a_broken_flag_fails(tmp_path, monkeypatch, capsys):
    """A misspelt flag in a docs line fails the page, for a dry-run command and a parsed-only one alike; so does a call
    the library no longer has in a docs Python block (the runner of test_docs)."""
    from test_docs import run_block

    monkeypatch.chdir(tmp_path)
    readme = PAGE_COMMANDS[ROOT / "README.md"]
    for name, flag, typo, error in (("train", "--steps", "--stepz", "unrecognized arguments: --stepz"),
                                    ("export", "--out", "--output", "the following arguments are required: --out")):
        good = next(c for c in readme if c.name == name and flag in c.argv)
        run_page([good], tmp_path, capsys)
        bad = Command(good.block, good.line, [typo if a == flag else a for a in good.argv])
        with pytest.raises(AssertionError, match=error):
            run_page([bad], tmp_path, capsys)
    block = Block(ROOT / "README.md", 1, "python", "import straightflow as sf\nsf.trian(data='moons')\n")
    with pytest.raises(AttributeError, match="trian"):
        run_block(block, {})
