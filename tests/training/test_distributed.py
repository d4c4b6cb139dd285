"""DDP under torchrun: 2 CPU processes with gloo produce a valid run, and minibatch OT pairs over their global batch."""

import json
import subprocess
import sys

import torch

from straightflow.checkpoint import latest_checkpoint, load_train_state
from straightflow.evaluate import evaluate
from straightflow.run import Run


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    # monitoring: rank 0 alone checks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "straightflow",
           "train", "--data", "moons", "--steps", "300", "--batch-size", "128", "--width", "64", "--depth", "2",
           "--device", "cpu", "--out", str(out), "--progress", "false", "--log-every", "50", "--ckpt-every", "150",
           "--tensorboard", "true", "--eval-every", "150", "--eval-nfe", "1,8", "--eval-n", "64"]
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
    assert [json.loads(r)["step"] for r in (out / "quality.jsonl").read_text().splitlines()] == [150, 300]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one writer: rank 0
    assert proc.stdout.count("step 300 quality") == 1
    report = evaluate(Run.load(out), [8], n=500)
    assert report["results"][0]["w2"] < 1.0  # it learned something

    # resuming the DDP run on 2 ranks continues from its checkpoint
    more = cmd[:cmd.index("--steps") + 1] + ["400"] + cmd[cmd.index("--steps") + 2:] + ["--resume"]
    proc = subprocess.run(more, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_train_state(latest_checkpoint(out))["step"] == 400
    assert [json.loads(r)["step"] for r in (out / "quality.jsonl").read_text().splitlines()] == [150, 300, 400]


# ------------------------------------------------------------------ minibatch OT over the global batch
# Run on each of 2 gloo ranks by torchrun: the rank's share of a fixed global batch, with its share of
# fixed noise (noise_like replaced), through MinibatchOTCoupling; the pairings are saved for the test.
_OT_RANKS = '''
import sys
import torch
import torch.distributed as dist
from straightflow.couplings import MinibatchOTCoupling
from straightflow.errors import StraightflowError

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
inp = torch.load(sys.argv[1])
x, z, y = inp["x"], inp["z"], inp["y"]
n = x.shape[0] // world
mine = slice(rank * n, (rank + 1) * n)

def coupling(noise, **kw):
    c = MinibatchOTCoupling(**kw)
    c.noise_like = lambda x, generator: noise  # this rank's share of the fixed noise
    return c

def gen():
    return torch.Generator().manual_seed(100 + rank)

out = {
    "exact": coupling(z[mine])(x[mine], gen()).z,
    "labels": coupling(z[mine])(x[mine], gen(), y[mine]).z,
    "sinkhorn": coupling(z[mine], solver="sinkhorn", reg=0.05)(x[mine], gen()).z,
    "sinkhorn_labels": coupling(z[mine], solver="sinkhorn", reg=0.05)(x[mine], gen(), y[mine]).z,
    "local": coupling(z[mine], global_batch=False)(x[mine], gen()).z,
    "local_labels": coupling(z[mine], global_batch=False)(x[mine], gen(), y[mine]).z,
    "eval": coupling(z[mine]).eval()(x[mine], gen()).z,  # eval mode: rank-local, no collective
}
short = n - 1 if rank == 1 else n
try:
    coupling(z[:short])(x[:short], gen())
except StraightflowError as exc:
    out["unequal"] = str(exc)
torch.save(out, sys.argv[2] + f"/rank{rank}.pt")
dist.destroy_process_group()
'''


def _single_process_z(x, z, seed=100, y=None, **kw):
    from straightflow.couplings import MinibatchOTCoupling
    c = MinibatchOTCoupling(**kw)
    c.noise_like = lambda x, generator: z
    return c(x, torch.Generator().manual_seed(seed), y).z


def test_minibatch_ot_pairs_over_the_global_batch_on_two_ranks(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, world = 40, 2
    x = torch.randn(world * n, 3, generator=g) * 0.5 + 1.0
    z = torch.randn(world * n, 3, generator=g)
    y = torch.randint(0, 3, (world * n,), generator=g)
    torch.save({"x": x, "z": z, "y": y}, tmp_path / "inputs.pt")
    (tmp_path / "ot_ranks.py").write_text(_OT_RANKS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
           str(tmp_path / "ot_ranks.py"), str(tmp_path / "inputs.pt"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    def joined(key):  # the ranks' pairings, rank 0's rows first
        return torch.cat([out[key] for out in ranks])

    # one plan over the global batch: each rank's rows of the single-process pairing of the whole batch
    # (the Sinkhorn draw with rank 0's generator, seed 100); with labels, within each class of the global batch
    exact = _single_process_z(x, z)
    assert torch.equal(joined("exact"), exact)
    assert torch.equal(joined("labels"), _single_process_z(x, z, y=y))
    assert torch.equal(joined("sinkhorn"), _single_process_z(x, z, solver="sinkhorn", reg=0.05))
    assert torch.equal(joined("sinkhorn_labels"), _single_process_z(x, z, y=y, solver="sinkhorn", reg=0.05))
    # noise crosses ranks: some of rank 1's data is paired with noise rank 0 drew, so the test is not vacuous
    src = torch.cdist(exact, z).argmin(dim=1)
    assert sorted(src.tolist()) == list(range(world * n)) and bool((src[n:] < n).any())

    # global_batch=False (and eval mode): each rank pairs within its own share, as before
    local = torch.cat([_single_process_z(x[r * n:(r + 1) * n], z[r * n:(r + 1) * n]) for r in range(world)])
    assert torch.equal(joined("local"), local) and torch.equal(joined("eval"), local)
    assert not torch.equal(local, exact)
    local_labels = torch.cat([_single_process_z(x[r * n:(r + 1) * n], z[r * n:(r + 1) * n], y=y[r * n:(r + 1) * n])
                              for r in range(world)])
    assert torch.equal(joined("local_labels"), local_labels)

    # unequal local batches: a one-line error on every rank, not a hang
    for out in ranks:
        assert "same size on every rank" in out["unequal"] and f"[{n}, {n - 1}]" in out["unequal"]
