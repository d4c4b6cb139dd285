"""Streaming training data: the epoch sampler, DataLoader training with exact resume,
DDP sharding, latents of any range, a user's own Dataset, and one-line errors (docs/data.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import straightflow as sf
from straightflow.checkpoint import latest_checkpoint, load_checkpoint_weights, load_train_state
from straightflow.cli.main import main
from straightflow.data import ImageSource, ItemSource, load_data
from straightflow.data import stream as stream_module
from straightflow.data.base import split_rows
from straightflow.data.stream import BatchStream, EpochSampler, TensorRows, TrainItems, resolve_loader
from straightflow.errors import StraightflowError

QUICK = dict(model="mlp", width=32, depth=2, progress=False, log_every=2, warmup_steps=1)


def write_folder(path, n=40, size=8, classes=("a", "b"), seed=0):
    """n small RGB PNGs, split over class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = path / classes[i % len(classes)] if classes else path
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"img_{i:03d}.png")
    return path


def weights(run_dir, name="model.safetensors"):
    return load_checkpoint_weights(latest_checkpoint(run_dir), name)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------ sampler
@pytest.mark.parametrize("n", [12, 13])
def test_epoch_sampler_deals_each_epoch_out_across_ranks(n):
    ranks = [EpochSampler(n, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    shards = [s.shard(0) for s in ranks]
    assert all(len(sh) == 7 if n == 13 else len(sh) == 6 for sh in shards)
    assert set(shards[0]) | set(shards[1]) == set(range(n))  # every row in the epoch
    if n == 12:
        assert not set(shards[0]) & set(shards[1])  # disjoint: no row on two ranks
    else:  # padded by wrapping, as DistributedSampler: exactly one row twice
        assert len(shards[0]) + len(shards[1]) - len(set(shards[0]) | set(shards[1])) == 1
    assert not np.array_equal(ranks[0].shard(0), ranks[0].shard(1))  # a new permutation per epoch
    # batches run across the epoch boundary; the state moves only when a batch is taken
    it = iter(ranks[0])
    first = [next(it) for _ in range(4)]
    flat, size = np.concatenate(first), len(shards[0])
    assert np.array_equal(flat[:size], shards[0]) and np.array_equal(flat[size:], ranks[0].shard(1)[: 12 - size])
    assert ranks[0].state_dict()["position"] == 0
    for _ in range(3):
        ranks[0].advance()
    again = EpochSampler(n, 3, seed=5, rank=0, world_size=2)
    assert again.load_state_dict(ranks[0].state_dict()) is None
    assert next(iter(again)) == first[3]  # a restored sampler continues where the consumed batches stopped
    grown = EpochSampler(n + 1, 3, seed=5)
    assert "changed" in grown.load_state_dict(ranks[0].state_dict())


def test_batch_stream_with_workers_matches_the_sampler_order_and_counts_only_taken_batches():
    x = torch.arange(20, dtype=torch.float32)[:, None]
    items = TrainItems(TensorRows(x, torch.arange(20) % 2), np.arange(20), labels=True)
    sampler = EpochSampler(20, 4, seed=1)
    expected = iter(EpochSampler(20, 4, seed=1))
    stream = BatchStream(items, sampler, workers=2, device=torch.device("cpu"))
    try:
        for k in range(7):  # crosses an epoch (5 batches each)
            xb, yb = stream.next()
            rows = next(expected)
            assert xb[:, 0].long().tolist() == rows and yb.tolist() == [r % 2 for r in rows]
            assert stream.state_dict()["epoch"] * 20 + stream.state_dict()["position"] == 4 * (k + 1)
    finally:
        stream.close()


def test_auto_loader_rule(tmp_path, monkeypatch):
    assert resolve_loader("auto", stream_module.STREAM_AUTO_BYTES, "x") == "memory"
    assert resolve_loader("auto", stream_module.STREAM_AUTO_BYTES + 1, "x") == "stream"
    assert resolve_loader("memory", 10**12, "x") == "memory"
    folder = write_folder(tmp_path / "f", n=20)
    assert isinstance(load_data(str(folder)), ImageSource)  # tiny: in memory, as before
    monkeypatch.setattr(stream_module, "STREAM_AUTO_BYTES", 1000)
    assert isinstance(load_data(str(folder)), ItemSource)  # above the threshold: streamed, nothing decoded up front


def test_auto_workers_reads_rows_in_memory_in_the_training_process(monkeypatch):
    """--workers -1: none for a tensor in memory (a gather), CPUs - 1 (at most 4) for rows that decode or read disk."""
    monkeypatch.setattr(stream_module.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    in_memory = TensorRows(torch.zeros(10, 2))
    assert stream_module.auto_workers(1, in_memory) == 0
    assert stream_module.auto_workers(1, stream_module.ConcatRows(in_memory, in_memory)) == 0

    class DiskRows:  # no in_memory attribute: like a folder of images or a memory-mapped file
        def __len__(self):
            return 10

        def read(self, indices):
            return torch.zeros(len(indices), 2), None

    assert stream_module.auto_workers(1, DiskRows()) == 4
    assert stream_module.auto_workers(4, DiskRows()) == 1
    assert stream_module.auto_workers(1, stream_module.ConcatRows(in_memory, DiskRows())) == 4


def test_streamed_folder_reads_what_the_in_memory_one_holds(tmp_path):
    folder = write_folder(tmp_path / "f", n=30)
    mem = load_data(str(folder), {"loader": "memory"}, require_labels=True)
    st = load_data(str(folder), {"loader": "stream"}, require_labels=True)
    assert isinstance(st, ItemSource) and st.shape == mem.shape == (3, 8, 8)
    for a, b in ((mem.reference(100), st.reference(100)), (mem.floor_reference(7, 2), st.floor_reference(7, 2)),
                 (mem.reference(5, 1), st.reference(5, 1))):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(mem.train_images(), st.train_images()) and torch.equal(mem.labels, st.labels)
    x, y = st.train_dataset(labels=True).batch([0, 1, 2])
    assert (x.shape == (3, 3, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1
            and y.tolist() == mem.labels[:3].tolist())


# ------------------------------------------------------------------ training through the DataLoader
def test_stream_resume_is_exact_whatever_the_workers(tmp_path):
    """8 steps straight (1 worker) == 4 steps + --resume to 8 (0 workers, then 2): the sampler state,
    the flips and the noise continue exactly; 32 training rows / 16 per batch: the epochs turn over."""
    folder = write_folder(tmp_path / "f", n=40)
    kw = dict(QUICK, data=str(folder), loader="stream", hflip=True, batch_size=16, ckpt_every=4, conditional=True)
    sf.train(out=str(tmp_path / "a"), steps=8, workers=1, **kw)
    sf.train(out=str(tmp_path / "b"), steps=4, workers=0, **kw)
    sf.train(out=str(tmp_path / "b"), resume=True, steps=8, workers=2)
    assert same_weights(tmp_path / "a", tmp_path / "b")
    state = load_train_state(latest_checkpoint(tmp_path / "b"))
    assert state["sampler"]["epoch"] == 4 and state["sampler"]["position"] == 0  # 8 x 16 rows = 4 epochs of 32
    # the in-memory path of the same folder draws other batches: the stream really was used
    sf.train(out=str(tmp_path / "m"), steps=8, workers=0, **{**kw, "loader": "memory"})
    assert not same_weights(tmp_path / "a", tmp_path / "m")
    assert "sampler" not in load_train_state(latest_checkpoint(tmp_path / "m"))


def test_auto_resume_keeps_the_loader_the_run_started_with(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "f", n=20, classes=())
    monkeypatch.setattr(stream_module, "STREAM_AUTO_BYTES", 1000)  # auto streams this folder
    sf.train(out=str(tmp_path / "r"), data=str(folder), steps=2, batch_size=8, ckpt_every=2, **QUICK)
    monkeypatch.setattr(stream_module, "STREAM_AUTO_BYTES", 10**12)  # auto would now keep it in memory
    sf.train(out=str(tmp_path / "r"), resume=True, steps=4)
    # still streamed: 16 rows, 8 a batch
    assert load_train_state(latest_checkpoint(tmp_path / "r"))["sampler"]["epoch"] == 2


_DDP_SCRIPT = '''
import json, os, sys
import torch
import straightflow as sf

class Rows(torch.utils.data.Dataset):
    """Row i is a 1 x 2 x 2 image filled with i / 100; every read is recorded."""
    def __init__(self):
        self.seen = []
    def __len__(self):
        return 100
    def __getitem__(self, i):
        self.seen.append(int(i))
        return torch.full((1, 2, 2), i / 100.0)

ds = Rows()
sf.train(dataset=ds, out=sys.argv[1], steps=int(sys.argv[2]), batch_size=16, loader="stream", workers=0, device="cpu",
         model="mlp", width=16, depth=1, progress=False, log_every=1, ckpt_every=100)
with open(sys.argv[1] + f"/seen-{os.environ['RANK']}.json", "w") as fh:
    json.dump(ds.seen[1:], fh)  # item 0 is read once to learn the shape
'''


def test_two_gloo_ranks_read_disjoint_shares_of_each_epoch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(out), "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads((out / f"seen-{r}.json").read_text()) for r in range(2)]
    # 100 rows, 20 held out: 80 training rows, 40 per rank per epoch = 5 steps of 8 rows each
    assert len(seen[0]) == len(seen[1]) == 40
    assert not set(seen[0]) & set(seen[1])
    train_rows = set(seen[0]) | set(seen[1])
    assert len(train_rows) == 80
    held = load_data("custom", {}, dataset=type("D", (torch.utils.data.Dataset,), {
        "__len__": lambda self: 100, "__getitem__": lambda self, i: torch.full((1, 2, 2), i / 100.0)})())
    assert train_rows == set(held.train_index.tolist())  # exactly the training split, never a held-out row
    assert load_train_state(latest_checkpoint(out))["sampler"] == {"epoch": 1, "position": 0, "n": 80, "batch_size": 8,
                                                                   "seed": 0, "world_size": 2}


# ------------------------------------------------------------------ latents
def latents(n=400, seed=0):
    """N x 4 x 4 x 4 latents in [-40, 40]: channel means -20, 0, 10, 25, stds 10, 5, 2, 1."""
    rng = np.random.default_rng(seed)
    mean, std = np.array([-20.0, 0, 10, 25]), np.array([10.0, 5, 2, 1])
    x = rng.normal(size=(n, 4, 4, 4)) * std[None, :, None, None] + mean[None, :, None, None]
    return np.clip(x, -40, 40).astype(np.float32), mean, std


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_latents_of_any_range_train_and_sample_in_data_units(tmp_path, loader):
    x, mean, std = latents()
    np.save(tmp_path / "lat.npy", x)
    with pytest.raises(StraightflowError, match="data-kind latent"):
        load_data(str(tmp_path / "lat.npy"))  # as images: 4 channels, and far outside [-1, 1]
    data = load_data(str(tmp_path / "lat.npy"), {"data_kind": "latent", "loader": loader})
    state = data.normalization_state()
    assert np.allclose(state["shift"], mean, atol=1.0) and np.allclose(state["scale"], std, rtol=0.15)
    assert data.sampling_state()["kind"] == "latent" and data.sampling_state()["normalization"] == state
    run_dir = sf.train(data=str(tmp_path / "lat.npy"), data_kind="latent", loader=loader, workers=1,
                       out=str(tmp_path / "r"), steps=60, batch_size=64, lr=3e-3, **{**QUICK, "width": 64})
    run = sf.Run.load(run_dir)
    samples = run.sample(400, nfe=4).samples
    assert samples.shape == (400, 4, 4, 4)
    got_mean, got_std = samples.mean(dim=(0, 2, 3)).numpy(), samples.std(dim=(0, 2, 3)).numpy()
    assert np.all(np.abs(got_mean - mean) < 0.5 * std), got_mean  # data units: per-channel means come back
    assert np.all((got_std > 0.4 * std) & (got_std < 2.5 * std)), got_std
    ref, _ = run.data.reference(50)
    assert float(ref.min()) < -30 and float(ref.max()) > 20  # references stay in data units
    if loader == "stream":
        report = sf.evaluate(run, [4], n=50)
        assert report["quality_metric"] == "w2" and np.isfinite(report["results"][0]["w2"])


def test_bad_latents_are_one_line_errors(tmp_path, capsys):
    x = latents(40)[0]
    bad = x.copy()
    bad[7, 1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "three.npy", x[:, 0])
    np.save(tmp_path / "ints.npy", (x * 0).astype(np.int32))
    np.savetxt(tmp_path / "lat.csv", x.reshape(40, -1), delimiter=",")
    cases = [("nan.npy", "non-finite values (NaN or inf): 1 in rows 0..39, first in row 7"),
             ("three.npy", "N x C x H x W or N x D"), ("ints.npy", "latents must be floats"),
             ("lat.csv", "data_kind latent reads a .npy")]
    for name, message in cases:
        code = main(["train", "--data", str(tmp_path / name), "--data-kind", "latent", "--out", str(tmp_path / "r"),
                     "--steps", "1"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    code = main(["train", "--data", "moons", "--loader", "stream", "--out", str(tmp_path / "r"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nothing to stream" in err


# ------------------------------------------------------------------ a user's Dataset
class Blobs(torch.utils.data.Dataset):
    """Class c: 2D points around (4c, -2c); items (x, y); item ``broken`` (if any) has another shape."""

    classes = ["left", "right"]

    def __init__(self, n=120, broken=None):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 2, generator=g) * 0.3 + torch.stack([4.0 * self.y, -2.0 * self.y], 1)
        self.broken = broken

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if i == self.broken:
            return torch.zeros(3), 0
        return self.x[i], int(self.y[i])


def test_a_users_dataset_trains_conditionally_resumes_and_loads(tmp_path):
    ds = Blobs()
    kw = dict(QUICK, steps=40, batch_size=32, lr=3e-3, conditional=True, ckpt_every=20, workers=1)
    run_dir = sf.train(dataset=ds, out=str(tmp_path / "r"), **kw)
    assert sf.Run.load(run_dir, dataset=ds).cfg.data == "custom"
    bare = sf.Run.load(run_dir)  # portable: sampling needs no data (docs/portable.md) ...
    assert bare.sample(4, nfe=2, classes="left").samples.shape == (4, 2)
    with pytest.raises(StraightflowError, match="pass it again as dataset="):
        bare.heldout(10)  # ... but held-out data does
    with pytest.raises(StraightflowError, match="pass dataset= to train"):
        sf.train(out=str(tmp_path / "r"), resume=True, steps=60)
    sf.train(out=str(tmp_path / "r"), resume=True, steps=60, dataset=ds)
    run = sf.Run.load(run_dir, dataset=ds)
    assert run.step == 60 and run.class_names == ("left", "right")
    out = run.sample(200, nfe=8, classes="right")
    assert float(out.samples[:, 0].mean()) > 2.0  # class "right" sits at x = 4; "left" at 0: guidance by label works
    assert run.data.normalization_state() is not None  # vectors: standardised with a subset's mean and std
    with pytest.raises(StraightflowError, match="both data="):
        sf.train(dataset=ds, data="moons", out=str(tmp_path / "x"), **kw)


def test_bad_dataset_items_are_one_line_errors(tmp_path):
    row = int(split_rows(120, 0.2, 0, "x")[0][3])  # a training row
    with pytest.raises(StraightflowError, match=rf"dataset item {row} has shape \(3,\) but item 0 has \(2,\)"):
        sf.train(dataset=Blobs(broken=row), out=str(tmp_path / "r"), steps=30, batch_size=64, loader="stream",
                 workers=1, **QUICK)

    class NoClasses(Blobs):
        classes = None

    with pytest.raises(StraightflowError, match="no 'classes' attribute"):
        load_data("custom", {}, require_labels=True, dataset=NoClasses())
    with pytest.raises(StraightflowError, match="must lie in"):
        load_data("custom", {"data_kind": "image"}, dataset=[torch.full((1, 2, 2), 3.0)] * 20)


def test_a_corrupt_image_in_a_streamed_folder_stops_training_with_one_line(tmp_path, capsys):
    folder = write_folder(tmp_path / "f", n=30, classes=())
    (folder / "img_005.png").write_bytes(b"not a png")
    code = main(["train", "--data", str(folder), "--loader", "stream", "--workers", "1", "--model", "mlp",
                 "--width", "16", "--depth", "1", "--batch-size", "24", "--steps", "4", "--progress", "false",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "could not read image" in err and "img_005.png" in err, err


def test_pairs_cannot_stream(tmp_path):
    with pytest.raises(StraightflowError, match="--loader stream does not apply to --pairs"):
        sf.train(pairs=str(tmp_path / "p"), loader="stream", out=str(tmp_path / "r"), data="moons", teacher="t",
                 method="reflow", steps=1)


def test_the_user_guide_example_runs(tmp_path):
    """docs/data.md's Dataset example, as written there (its run directory moved under tmp_path)."""
    text = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    code = text.split("## Your own Dataset", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert 'out="runs/rings"' in code
    exec(compile(code.replace('"runs/rings"', repr(str(tmp_path / "rings"))), "docs/data.md", "exec"), {})
    assert (tmp_path / "rings" / "config.yaml").exists()
