"""The command line is safe with the user's files: Ctrl-C says what is left, --out is checked before
any work, the demo removes only its own run, and runs remember where their data is."""

import pytest

from straightflow.cli import main as cli_main
from straightflow.cli.main import main

#: argv that parses for each command (the command itself is replaced in these tests)
ARGV = {
    "train": ["train", "--data", "moons", "--out", "R"],
    "sample": ["sample", "R", "--out", "s.npy"],
    "eval": ["eval", "R"],
    "plot": ["plot", "R", "--out", "p.png"],
    "sweep": ["sweep", "--data", "moons", "--steps", "5", "--out", "S"],
    "pairs": ["pairs", "R", "-n", "10", "--out", "P"],
    "demo": ["demo", "--out", "D"],
}

CTRL_C = {
    "train": "the last checkpoint is intact (use --resume)",
    "pairs": "finished shards are kept; rerun the same command to resume",
    "sweep": "finished runs are kept; rerun the same command to continue",
    "eval": "nothing was written",
    "sample": "nothing was written",
    "plot": "nothing was written",
    "demo": "rerun the demo to start it again",
}


@pytest.mark.parametrize("command", sorted(ARGV))
def test_ctrl_c_says_what_each_command_leaves_behind(command, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    help_text, add, _ = cli_main.COMMANDS[command]
    monkeypatch.setitem(cli_main.COMMANDS, command, (help_text, add, interrupted))
    assert main(ARGV[command]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"straightflow: interrupted; {CTRL_C[command]}"]
    if command != "train":
        assert "--resume" not in err[0]  # only train has --resume
