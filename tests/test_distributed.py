"""DDP under torchrun: 2 CPU processes with gloo produce a valid run."""

import json
import subprocess
import sys

import torch

from straightflow.checkpoint import latest_checkpoint, load_train_state
from straightflow.evaluate import evaluate
from straightflow.run import Run


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "straightflow", "train",
           "--data", "moons", "--steps", "300", "--batch-size", "128", "--width", "64", "--depth", "2", "--device", "cpu",
           "--out", str(out), "--progress", "false", "--log-every", "50", "--ckpt-every", "150"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run written to") == 1  # only rank 0 reports and writes
    state = load_train_state(latest_checkpoint(out))
    assert state["step"] == 300
    gens = state["generators"]
    assert len(gens) == 2 and not torch.equal(gens[0], gens[1])  # per-rank streams differ
    stats = [json.loads(row) for row in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [50, 100, 150, 200, 250, 300]
    assert stats[-1]["loss"] < stats[0]["loss"]
    report = evaluate(Run.load(out), [8], n=500)
    assert report["results"][0]["w2"] < 1.0  # it learned something

    # resuming the DDP run on 2 ranks continues from its checkpoint
    more = cmd[:cmd.index("--steps") + 1] + ["400"] + cmd[cmd.index("--steps") + 2:] + ["--resume"]
    proc = subprocess.run(more, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_train_state(latest_checkpoint(out))["step"] == 400
