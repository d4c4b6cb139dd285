"""Class-conditional generation with classifier-free guidance (``docs/conditional.md``).

One conditional 8gaussians run, trained once per module, backs the behavioural tests:
its null branch is the unconditional model, guidance w = 1 / w = 0 are the plain
conditional / null-class samples, and a guided step costs one network call on 2B rows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import straightflow as sf
from straightflow.checkpoint import latest_checkpoint
from straightflow.cli.main import main
from straightflow.conditioning import GuidedVelocity
from straightflow.couplings import MinibatchOTCoupling
from straightflow.data.pairs import PairData
from straightflow.data.toy2d import CLASS_NAMES
from straightflow.errors import StraightflowError
from straightflow.experiments.pairs import pairs_from_run
from straightflow.metrics import wasserstein2
from straightflow.models.mlp import MLPVelocity
from straightflow.noise import seeded_labels
from straightflow.run import Run
from straightflow.solvers import solve
from straightflow.teachers import SamplerTeacher, generate_pairs

K = 8  #: classes of 8gaussians
_ANGLES = torch.arange(K, dtype=torch.float32) * (2 * math.pi / K)
CENTRES = 2.0 * torch.stack([torch.cos(_ANGLES), torch.sin(_ANGLES)], dim=1)


def nearest_mode(points: torch.Tensor) -> torch.Tensor:
    """Index of the 8gaussians mode centre nearest each point."""
    return torch.cdist(points.float(), CENTRES).argmin(dim=1)


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory) -> Run:
    """A conditional 8gaussians run with label dropout 0.2 (small MLP, 1000 steps of 512)."""
    out = tmp_path_factory.mktemp("cond") / "run"
    sf.train(data="8gaussians", conditional=True, cond_drop=0.2, steps=1000, batch_size=512, width=64, depth=3, lr=3e-3,
             seed=0, out=str(out), progress=False, log_every=500, ckpt_every=1000)
    return Run.load(out)


@pytest.fixture(scope="module")
def tiny_cond_run(tmp_path_factory):
    """A few steps of a small conditional run: a smooth field, cheap for RK45 and the CLI."""
    out = tmp_path_factory.mktemp("tinycond") / "run"
    sf.train(data="8gaussians", conditional=True, steps=20, batch_size=64, width=32, depth=2, out=str(out),
             progress=False, log_every=10, ckpt_every=20)
    return out


@pytest.fixture(scope="module")
def uncond_run(tmp_path_factory):
    """A tiny unconditional run (only its type matters)."""
    out = tmp_path_factory.mktemp("uncond") / "run"
    sf.train(data="8gaussians", steps=20, batch_size=64, width=32, depth=2, out=str(out), progress=False, log_every=10,
             ckpt_every=20)
    return out


# ------------------------------------------------------------------ 1. the null branch
def test_null_branch_is_the_unconditional_model(cond_run):
    ref, _ = cond_run.data.reference(2000, seed=0)
    floor = wasserstein2(cond_run.data.floor_reference(2000, seed=0)[0], ref)
    # w = 0 ignores the requested class: even when every sample asks for class 0, the null
    # branch must reproduce the whole (unconditional) marginal
    out = cond_run.sample(2000, nfe=16, seed=1, classes=0, guidance=0.0)
    w2 = wasserstein2(out.samples, ref)
    assert w2 < 1.6 * floor, (w2, floor)
    share = torch.bincount(nearest_mode(out.samples), minlength=K).double() / out.samples.shape[0]
    assert bool((share > 0.06).all()) and bool((share < 0.20).all()), share.tolist()


def test_plain_conditional_samples_land_in_their_class(cond_run):
    out = cond_run.sample(1600, nfe=16, seed=2, classes="all", guidance=1.0)
    assert torch.equal(out.labels, torch.arange(1600) % K)  # "all": sample i gets class i mod K
    hits = nearest_mode(out.samples) == out.labels
    for c in range(K):
        hit = float(hits[out.labels == c].double().mean())
        assert hit > 0.95, (c, hit)
    # one class, by index or by name
    by_index = cond_run.sample(50, nfe=4, seed=3, classes=6)
    by_name = cond_run.sample(50, nfe=4, seed=3, classes=CLASS_NAMES["8gaussians"][6])
    assert torch.equal(by_index.labels, torch.full((50,), 6)) and torch.equal(by_name.labels, by_index.labels)
    assert torch.equal(by_name.samples, by_index.samples)
    assert float((nearest_mode(by_index.samples) == 6).double().mean()) > 0.95


def test_evaluate_scores_classes_at_the_guidance_asked(cond_run):
    reports = {w: sf.evaluate(cond_run, [8], n=800, guidance=w) for w in (0.0, 1.0)}
    for w, report in reports.items():
        assert report["guidance"] == w and report["results"][0]["network_evals"] == 8
    report = reports[1.0]
    assert report["classes"] == list(CLASS_NAMES["8gaussians"]) and report["knn_accuracy_floor"] > 0.99
    row = report["results"][0]
    assert [r["class"] for r in row["per_class"]] == report["classes"] and sum(r["n"] for r in row["per_class"]) == 800
    floors = {r["class"]: r["w2"] for r in report["per_class_floor"]}
    # w = 1: samples of class c match the held-out points of class c and are classified as c
    assert row["knn_accuracy"] > 0.95
    assert all(r["w2"] < 2.0 * floors[r["class"]] and r["knn_accuracy"] > 0.9 for r in row["per_class"])
    # w = 0: the unconditional marginal overall; its samples have no class, so no per-class block or accuracy
    null = reports[0.0]["results"][0]
    assert null["w2"] < 1.6 * reports[0.0]["w2_floor"]
    assert "per_class" not in null and "knn_accuracy" not in null and "classes" not in reports[0.0]


# ------------------------------------------------------------------ 2. within-class OT
def _separated_classes(n_per=(24, 17, 1), seed=0):
    """Classes centred 30 apart on the first axis (interleaved rows; the last class a singleton)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per)])
    y = y[torch.randperm(y.shape[0], generator=g)]
    x = torch.randn(y.shape[0], 2, generator=g) * 0.5
    x[:, 0] += 30.0 * (y.float() - 1.0)
    return x, y


def _drawn_noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The noise the coupling will draw from ``generator`` (N(0, I), x's shape), without advancing it."""
    clone = torch.Generator().set_state(generator.get_state())
    return torch.randn(x.shape, generator=clone)


def _source_rows(out_z: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """For each output noise row, the index of the drawn row it is (exactly)."""
    eq = (out_z[:, None, :] == drawn[None, :, :]).all(dim=2)
    assert bool((eq.sum(dim=1) == 1).all()), "every output z must be exactly one drawn noise row"
    return eq.float().argmax(dim=1)


def test_within_class_ot_never_crosses_classes():
    x, y = _separated_classes()
    g = torch.Generator().manual_seed(11)
    drawn = _drawn_noise(x, g)
    pair = MinibatchOTCoupling()(x, g, y)
    assert torch.equal(pair.x, x) and torch.equal(pair.y, y)
    src = _source_rows(pair.z, drawn)
    assert torch.equal(y[src], y), "a sample was paired with noise drawn for another class"
    for c in torch.unique(y).tolist():
        rows = torch.nonzero(y == c).squeeze(1)
        assert sorted(src[rows].tolist()) == rows.tolist()  # a permutation of that class's own draws
        if rows.numel() > 1:  # and an OT plan: no costlier than the draws' own order, and not the identity
            cost = (x[rows] - pair.z[rows]).pow(2).sum()
            assert cost <= (x[rows] - drawn[rows]).pow(2).sum() + 1e-6
            assert not torch.equal(src[rows], rows)
    singleton = torch.nonzero(y == 2).squeeze(1)
    assert torch.equal(pair.z[singleton], drawn[singleton])


def test_ot_without_labels_crosses_classes_in_the_same_setup():
    x, y = _separated_classes()
    g = torch.Generator().manual_seed(11)
    drawn = _drawn_noise(x, g)
    pair = MinibatchOTCoupling()(x, g)
    assert pair.y is None
    src = _source_rows(pair.z, drawn)
    assert sorted(src.tolist()) == list(range(x.shape[0]))
    assert int((y[src] != y).sum()) > 5  # one plan over the batch ignores the classes


def test_sinkhorn_within_class_ot_stays_in_class():
    x, y = _separated_classes(n_per=(20, 20, 12))
    g = torch.Generator().manual_seed(5)
    drawn = _drawn_noise(x, g)
    pair = MinibatchOTCoupling(solver="sinkhorn", reg=0.05)(x, g, y)
    src = _source_rows(pair.z, drawn)
    assert torch.equal(y[src], y)
    # without labels the same entropic plan does pair across classes
    g = torch.Generator().manual_seed(5)
    src = _source_rows(MinibatchOTCoupling(solver="sinkhorn", reg=0.05)(x, g).z, drawn)
    assert int((y[src] != y).sum()) > 5


# ------------------------------------------------------------------ 3. labelled pairs
def _pair_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.startswith("shard-")}


def _pairs_arrays(folder, n_shards):
    z = np.concatenate([np.load(folder / f"shard-{i:05d}.z.npy") for i in range(n_shards)])
    x = np.concatenate([np.load(folder / f"shard-{i:05d}.x.npy") for i in range(n_shards)])
    y = np.concatenate([np.load(folder / f"shard-{i:05d}.y.npy") for i in range(n_shards)])
    return z, x, y


def test_pair_labels_depend_only_on_the_pair_index():
    probs = torch.tensor([0.5, 0.3, 0.2])
    full = seeded_labels(3000, probs, 7)
    for start, n in [(0, 1), (1000, 48), (1020, 10), (2047, 900), (2999, 1)]:  # across the 1024-row chunks
        assert torch.equal(seeded_labels(n, probs, 7, start=start), full[start : start + n])
    share = torch.bincount(full, minlength=3).double() / full.shape[0]
    torch.testing.assert_close(share, probs.double(), atol=0.03, rtol=0)
    assert not torch.equal(seeded_labels(3000, probs, 8), full)


def test_generate_pairs_calls_the_teacher_with_each_pairs_label(tmp_path):
    """Non-uniform class_probs, shards across the labels' 1024-row chunks: x* - z encodes the label the teacher got."""
    teacher = SamplerTeacher(lambda z, y: z + 10.0 * y[:, None].float(), nfe=0)
    probs = torch.tensor([0.6, 0.3, 0.1])
    generate_pairs(teacher, 3000, tmp_path / "p", (2,), seed=3, shard_size=700, batch_size=256, progress=False,
                   class_names=("a", "b", "c"), class_probs=probs)
    z, x, y = _pairs_arrays(tmp_path / "p", 5)
    assert np.array_equal(y, seeded_labels(3000, probs, 3).numpy())
    np.testing.assert_allclose(x - z, 10.0 * np.repeat(y[:, None], 2, axis=1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.bincount(y, minlength=3) / 3000, probs.numpy(), rtol=0, atol=0.03)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["classes"] == ["a", "b", "c"] and manifest["class_probs"] == pytest.approx([0.6, 0.3, 0.1])


def test_guided_pairs_store_labels_and_resume_exactly(cond_run, uncond_run, tmp_path):
    n, shards = 600, 5  # shard size 128: 4 full shards and one of 88
    folder = tmp_path / "pairs"
    args = dict(solver="euler", nfe=4, seed=0, shard_size=128, guidance=2.0, device="cpu", progress=False)
    summary = pairs_from_run(cond_run.dir, n, folder, **args)
    assert summary["generated_shards"] == shards
    for i in range(shards):
        assert (folder / f"shard-{i:05d}.y.npy").is_file()
    z, x, y = _pairs_arrays(folder, shards)
    assert y.dtype == np.int64 and y.shape == (n,) and 0 <= y.min() and y.max() < K
    # labels follow class_probs (uniform here): row i of the seeded "labels" stream, and a loose chi-square
    assert np.array_equal(y, seeded_labels(n, torch.full((K,), 1.0 / K), 0, "labels").numpy())
    counts = np.bincount(y, minlength=K)
    assert ((counts - n / K) ** 2 / (n / K)).sum() < 25, counts
    # each x* was generated for its own label: a guided sample lands in its class's mode
    assert float((nearest_mode(torch.from_numpy(x)).numpy() == y).mean()) > 0.9

    settings = json.loads((folder / "settings.json").read_text())
    assert settings["guidance"] == 2.0 and settings["classes"] == list(CLASS_NAMES["8gaussians"])
    assert settings["class_probs"] == pytest.approx([1.0 / K] * K)
    pairs = PairData.open(folder, labels=True)
    assert pairs.has_labels and pairs.manifest["guidance"] == 2.0
    assert np.array_equal(pairs.gather_labels(np.arange(n)).numpy(), y)
    assert np.array_equal(pairs.heldout_labels().numpy(), y[pairs.n_train :])
    (bx, bz), by = pairs.sample_train(64, torch.Generator().manual_seed(0))
    rows = torch.cdist(bz, torch.from_numpy(z)).argmin(dim=1).numpy()  # z rows are distinct: find each drawn pair
    assert (np.array_equal(bz.numpy(), z[rows]) and np.array_equal(bx.numpy(), x[rows])
            and np.array_equal(by.numpy(), y[rows]))
    assert (rows < pairs.n_train).all()

    # resume: a deleted shard and a corrupt label file are regenerated bit for bit
    before = _pair_files(folder)
    for suffix in (".z.npy", ".x.npy", ".y.npy", ".json"):
        (folder / f"shard-00002{suffix}").unlink()
    (folder / "shard-00001.y.npy").write_bytes(b"not an array")
    summary = pairs_from_run(cond_run.dir, n, folder, **args)
    assert (summary["generated_shards"], summary["reused_shards"]) == (2, 3)
    assert _pair_files(folder) == before
    z2, x2, y2 = _pairs_arrays(folder, shards)
    assert np.array_equal(z2, z) and np.array_equal(x2, x) and np.array_equal(y2, y)

    # another batch size: the same noise and labels
    other = tmp_path / "pairs-b100"
    pairs_from_run(cond_run.dir, n, other, **{**args, "batch_size": 100})
    zb, xb, yb = _pairs_arrays(other, shards)
    assert np.array_equal(yb, y) and np.array_equal(zb, z)
    np.testing.assert_allclose(xb, x, rtol=0, atol=1e-4)

    # pairs of an unconditional teacher hold no labels
    plain = tmp_path / "plain"
    pairs_from_run(uncond_run, 40, plain, nfe=2, device="cpu", progress=False)
    assert not list(plain.glob("*.y.npy")) and not PairData.open(plain).has_labels
    with pytest.raises(StraightflowError, match="no class labels"):
        PairData.open(plain, labels=True)
    with pytest.raises(StraightflowError, match="no class labels"):
        sf.train(method="reflow", pairs=str(plain), conditional=True, steps=2, out=str(tmp_path / "bad"),
                 progress=False)

    # a conditional student (lines) trained on the labelled pairs inherits the labels
    student = sf.train(method="lines", pairs=str(folder), steps=6, batch_size=64, out=str(tmp_path / "student"),
                       progress=False, log_every=3, ckpt_every=6)
    srun = Run.load(student)
    assert srun.cfg.conditional and srun.conditional and srun.class_names == CLASS_NAMES["8gaussians"]
    out = srun.sample(64, nfe=2, seed=0, classes="mode3", guidance=2.0)
    assert out.solver == "lines" and torch.equal(out.labels, torch.full((64,), 3))
    assert bool(torch.isfinite(out.samples).all()) and out.network_evals == 4
    assert float((nearest_mode(out.samples) == 3).double().mean()) > 0.8
    report = sf.evaluate(srun, [1, 2], n=200)  # held-out pair errors use the pairs' labels
    assert report["heldout_pairs"] == 60 and all(math.isfinite(r["pair_mse"]) for r in report["pair_results"])
    teacher = report["teacher"]  # the labelled x* of the pairs, scored overall and per class like the student's rows
    assert teacher["guidance"] == 2.0 and teacher["n"] == 200 and 0.9 < teacher["knn_accuracy"] <= 1.0
    assert [c["class"] for c in teacher["per_class"]] == list(CLASS_NAMES["8gaussians"])
    assert "teacher (pairs' x*, euler NFE 4, guidance 2): w2" in sf.format_table(report)


# ------------------------------------------------------------------ 4. w = 1 and w = 0
def _euler_two_branch(net, z, y, null, w, nfe):
    """Euler on v_null + w (v_cond - v_null), the two branches evaluated separately."""
    grid = [1.0 - i / nfe for i in range(nfe + 1)]
    for t, t_next in zip(grid[:-1], grid[1:]):
        tt = torch.full((z.shape[0],), t)
        v_cond, v_null = net(z, tt, y), net(z, tt, null)
        z = z + (t_next - t) * (v_null + w * (v_cond - v_null))
    return z


@torch.no_grad()
def test_guidance_one_is_the_plain_conditional_sample_and_zero_the_null_class(cond_run):
    n, nfe, c = 300, 6, 2
    net, z = cond_run.velocity, cond_run.noise(n, seed=4)
    y = torch.full((n,), c)
    null = torch.full((n,), cond_run.module.null_label)
    assert cond_run.module.null_label == K

    w1 = cond_run.sample(n, nfe=nfe, seed=4, classes=c, guidance=1.0)
    assert torch.equal(w1.samples, solve(lambda x, t: net(x, t, y), z, "euler", nfe).samples)
    assert torch.equal(w1.samples, cond_run.sample(n, nfe=nfe, seed=4, classes=c).samples)  # the default w is 1
    torch.testing.assert_close(w1.samples, _euler_two_branch(net, z, y, null, 1.0, nfe), rtol=0, atol=1e-5)

    w0 = cond_run.sample(n, nfe=nfe, seed=4, classes=c, guidance=0.0)
    assert torch.equal(w0.samples, solve(lambda x, t: net(x, t, null), z, "euler", nfe).samples)
    assert torch.equal(w0.samples, solve(lambda x, t: net(x, t), z, "euler", nfe).samples)  # y None = the null class
    assert torch.equal(w0.samples, cond_run.sample(n, nfe=nfe, seed=4, classes=5, guidance=0.0).samples)
    assert not torch.allclose(w0.samples, w1.samples, atol=1e-2)  # the two branches differ

    w25 = cond_run.sample(n, nfe=nfe, seed=4, classes=c, guidance=2.5)
    torch.testing.assert_close(w25.samples, _euler_two_branch(net, z, y, null, 2.5, nfe), rtol=0, atol=1e-4)
    assert not torch.allclose(w25.samples, w1.samples, atol=1e-2)


# ------------------------------------------------------------------ 5. honest NFE
class CountingNet(nn.Module):
    """Counts the forward calls of a conditional net and the rows (and labels) of each."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.rows: list[int] = []
        self.labels: list[torch.Tensor] = []

    @property
    def calls(self) -> int:
        return len(self.rows)

    def forward(self, x, t, y=None):
        self.rows.append(int(x.shape[0]))
        self.labels.append(None if y is None else y.clone())
        return self.net(x, t, y)


@pytest.mark.parametrize("solver", ["euler", "heun", "lines"])
@pytest.mark.parametrize("nfe", [1, 3, 4])
@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
@torch.no_grad()
def test_guided_velocity_counts_network_calls(solver, nfe, w):
    torch.manual_seed(0)
    net = CountingNet(MLPVelocity(2, width=16, depth=2, num_classes=3))
    b = 10
    labels = torch.arange(b) % 3
    velocity = GuidedVelocity(net, labels, w, null_label=3)
    res = solve(velocity, torch.randn(b, 2), solver, nfe)
    guided = w not in (0.0, 1.0)
    assert res.nfe == nfe and net.calls == nfe and velocity.calls == nfe
    assert net.rows == [2 * b if guided else b] * nfe and velocity.rows == (2 * b if guided else b)
    assert velocity.branches == (2 if guided else 1)
    expected = torch.cat([labels, torch.full((b,), 3)]) if guided else (labels if w == 1.0 else torch.full((b,), 3))
    assert all(torch.equal(y, expected) for y in net.labels)


@pytest.mark.parametrize("solver,nfe", [("euler", 1), ("euler", 4), ("heun", 3), ("heun", 4), ("lines", 2)])
@pytest.mark.parametrize("w", [None, 0.0, 1.0, 2.5])
def test_run_sample_reports_network_evaluations(tiny_cond_run, solver, nfe, w):
    run = Run.load(tiny_cond_run)
    counter = CountingNet(run.module.velocity)
    run.module.velocity = counter
    guided = w not in (None, 0.0, 1.0)
    out = run.sample(50, nfe=nfe, solver=solver, seed=0, classes="all", guidance=w)
    assert counter.calls == nfe and out.nfe == nfe
    assert out.network_calls == nfe and out.network_evals == (2 * nfe if guided else nfe)
    assert out.call_rows == (100 if guided else 50) and max(counter.rows) == out.call_rows
    assert out.guidance == (1.0 if w is None else w)
    # several sampling batches: calls per batch, rows of the largest call
    counter.rows.clear()
    out = run.sample(50, nfe=nfe, solver=solver, seed=0, guidance=w, batch_size=20)
    assert counter.calls == 3 * nfe and out.network_calls == nfe
    assert out.call_rows == (40 if guided else 20) and out.network_evals == (2 * nfe if guided else nfe)


@pytest.mark.parametrize("w", [1.0, 2.5])
def test_rk45_reports_the_solvers_own_count(tiny_cond_run, w):
    run = Run.load(tiny_cond_run)
    counter = CountingNet(run.module.velocity)
    run.module.velocity = counter
    out = run.sample(40, solver="rk45", seed=0, classes=1, guidance=w)
    assert out.nfe > 6 and counter.calls == out.nfe and out.network_calls == out.nfe
    assert out.network_evals == (2 if w == 2.5 else 1) * out.nfe
    assert out.call_rows == (80 if w == 2.5 else 40)


# ------------------------------------------------------------------ 6. exact resume
@pytest.mark.parametrize("method", ["rectified", "ot"])
def test_conditional_resume_is_exact(tmp_path, quick_overrides, method):
    common = dict(data="8gaussians", method=method, conditional=True, cond_drop=0.3, **quick_overrides)
    full, part = tmp_path / "full", tmp_path / "part"
    sf.train(steps=20, out=str(full), **common)
    sf.train(steps=10, out=str(part), **common)
    assert latest_checkpoint(part).name == "step-000010"
    sf.train(out=str(part), steps=20, resume=True)
    assert latest_checkpoint(part).name == latest_checkpoint(full).name == "step-000020"
    for name in ("ema.safetensors", "model.safetensors"):
        a, b = load_file(str(latest_checkpoint(full) / name)), load_file(str(latest_checkpoint(part) / name))
        assert a.keys() == b.keys() and any("label_embed" in k for k in a)
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    losses = [[json.loads(r)["loss"] for r in (d / "stats.jsonl").read_text().splitlines()] for d in (full, part)]
    assert losses[0] == losses[1]


# ------------------------------------------------------------------ 7. one-line errors
def _one_line_error(capsys, err: str | None = None) -> str:
    err = [line for line in (capsys.readouterr().err if err is None else err).strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("straightflow: error: ") and "Traceback" not in err[0]
    return err[0]


def test_cli_sample_a_class_with_guidance(tiny_cond_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    capsys.readouterr()
    assert main(["sample", str(tiny_cond_run), "-n", "20", "--nfe", "2", "--class", "mode3", "--guidance", "2",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "guidance 2: 4 network evaluations per sample in 2 calls of 40 rows" in text, text
    assert np.load(out).shape == (20, 2)
    assert np.array_equal(np.load(tmp_path / "s.labels.npy"), np.full(20, 3))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--class", "99"], "unknown class '99'"),
        (["--class", "nosuch"], "unknown class 'nosuch'"),
        (["--class", "-1"], "unknown class '-1'"),
        (["--guidance", "nan"], "must be a finite number"),
    ],
)
def test_cli_bad_class_or_guidance_on_a_conditional_run(tiny_cond_run, tmp_path, capsys, extra, message):
    out = tmp_path / "s.npy"
    capsys.readouterr()
    assert main(["sample", str(tiny_cond_run), "-n", "10", "--out", str(out), *extra]) == 2
    line = _one_line_error(capsys)
    assert message in line
    if "class" in message:
        assert "mode0" in line and "mode7" in line  # the run's classes are listed
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--guidance", "2"], ["--class", "0"], ["--class", "all"]])
def test_cli_class_or_guidance_on_an_unconditional_run(uncond_run, tmp_path, capsys, extra):
    out = tmp_path / "s.npy"
    capsys.readouterr()
    assert main(["sample", str(uncond_run), "-n", "10", "--out", str(out), *extra]) == 2
    assert "is not class-conditional" in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "{run}", "--nfe", "1", "-n", "20", "--guidance", "2"],
        ["plot", "{run}", "--out", "{tmp}/t.png", "--class", "0"],
        ["plot", "{run}", "--out", "{tmp}/t.png", "--guidance", "0"],
    ],
)
def test_cli_eval_and_plot_refuse_classes_on_an_unconditional_run(uncond_run, tmp_path, capsys, argv):
    capsys.readouterr()
    assert main([a.format(run=uncond_run, tmp=tmp_path) for a in argv]) == 2
    assert "is not class-conditional" in _one_line_error(capsys)
    assert not (tmp_path / "t.png").exists()


def test_cli_train_conditional_on_unlabelled_points(tmp_path, capsys):
    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(100, 2)))
    capsys.readouterr()
    code = main(["train", "--data", str(pts), "--conditional", "--steps", "5", "--out", str(tmp_path / "r"),
                 "--progress", "false"])
    assert code == 2
    assert "has no class labels" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_cli_pairs_guidance_needs_a_conditional_teacher(uncond_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["pairs", str(uncond_run), "-n", "10", "--out", str(tmp_path / "p"), "--guidance", "2", "--quiet"]) == 2
    assert "--guidance needs a conditional teacher" in _one_line_error(capsys)
    assert not (tmp_path / "p").exists()


def test_cli_eval_reference_file_on_a_conditional_run(tiny_cond_run, tmp_path, capsys):
    ref = tmp_path / "ref.npy"
    np.save(ref, np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    capsys.readouterr()
    assert main(["eval", str(tiny_cond_run), "--nfe", "1", "-n", "50", "--reference", str(ref), "--json"]) == 2
    captured = capsys.readouterr()
    assert "--reference holds no labels" in _one_line_error(capsys, captured.err)
    assert captured.out == ""


# ------------------------------------------------------------------ API defaults
@torch.no_grad()
def test_velocity_fn_of_a_conditional_run_needs_labels(tiny_cond_run):
    """``Run.velocity_fn()`` of a conditional run is a one-line user error; with labels it is a velocity."""
    run = Run.load(tiny_cond_run)
    with pytest.raises(StraightflowError, match="is class-conditional: its velocity needs labels"):
        run.velocity_fn()
    v = run.velocity_fn(run.labels(5))(torch.zeros(5, 2), torch.full((5,), 0.5))
    assert v.shape == (5, 2) and bool(torch.isfinite(v).all())


# ------------------------------------------------------------------ guidance reaches every number eval prints
@pytest.fixture(scope="module")
def cond_curvature_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("condcurv") / "run"
    sf.train(data="8gaussians", method="curvature", beta=1.0, conditional=True, steps=30, batch_size=64, width=32,
             depth=2, out=str(out), progress=False, log_every=10, ckpt_every=30)
    return out


def test_eval_guidance_reaches_the_reconstruction_rows(cond_curvature_run):
    run = Run.load(cond_curvature_run)
    plain = sf.evaluate(run, [2], n=200)
    guided = sf.evaluate(run, [2], n=200, guidance=3.0)
    assert plain["guidance"] == 1.0 and guided["guidance"] == 3.0
    assert guided["results"][0]["w2"] != plain["results"][0]["w2"]
    assert guided["recon_w2"] != plain["recon_w2"] and guided["recon_mse"] != plain["recon_mse"]
    again = sf.evaluate(run, [2], n=200, guidance=1.0)
    assert again["recon_w2"] == plain["recon_w2"]  # w = 1 is the default, not another number
    assert "guidance 3" in sf.format_table(guided).splitlines()[0]


def test_eval_guidance_reaches_a_students_pair_results(tiny_cond_run, tmp_path):
    pairs = tmp_path / "pairs"
    pairs_from_run(tiny_cond_run, 300, pairs, nfe=2, guidance=2.0, device="cpu", progress=False)
    student = sf.train(method="lines", pairs=str(pairs), conditional=True, steps=4, batch_size=32,
                       out=str(tmp_path / "s"), progress=False, ckpt_every=4)
    run = Run.load(student)
    plain, guided = sf.evaluate(run, [1], n=100), sf.evaluate(run, [1], n=100, guidance=3.0)
    assert guided["distill_error"] != plain["distill_error"]
    assert guided["pair_results"][0]["pair_mse"] != plain["pair_results"][0]["pair_mse"]


def test_export_records_the_guidance_of_its_recommendation(cond_curvature_run, tmp_path, capsys):
    from straightflow.export import export

    capsys.readouterr()
    assert main(["eval", str(cond_curvature_run), "--nfe", "1,2", "-n", "100", "--guidance", "3", "--json"]) == 0
    (cond_curvature_run / "eval.json").write_text(capsys.readouterr().out)
    try:
        result = export(cond_curvature_run, tmp_path / "model")
    finally:
        (cond_curvature_run / "eval.json").unlink()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert result.recommended["guidance"] == 3.0 and config["recommended"]["guidance"] == 3.0
    card = (tmp_path / "model" / "README.md").read_text()
    assert ("--class all --guidance 3" in card and "guidance=3" in card
            and f"NFE {config['recommended']['nfe']}, guidance 3" in card)
    assert main(["sample", str(tmp_path / "model"), "-n", "8", "--out", str(tmp_path / "s.npy")]) == 0
    assert "guidance 3" in capsys.readouterr().out  # the CLI samples at the recommended weight unless told otherwise
    export(cond_curvature_run, tmp_path / "plain")  # nothing measured: guidance 1
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["recommended"]["guidance"] == 1.0


def test_guidance_zero_samples_carry_no_labels(tiny_cond_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert main(["sample", str(tiny_cond_run), "-n", "12", "--nfe", "2", "--guidance", "0", "--out", str(out)]) == 0
    assert np.load(out).shape == (12, 2) and not (tmp_path / "s.labels.npy").exists()
    assert "labels in" not in capsys.readouterr().out
    run = Run.load(tiny_cond_run)
    assert run.sample(6, nfe=1, guidance=0.0).labels is None and run.sample(6, nfe=1).labels is not None
    report = sf.evaluate(run, [1], n=100, guidance=0.0)
    assert "per_class" not in report["results"][0] and "per_class_floor" not in report
    assert (not any(k.endswith("accuracy") for k in report["results"][0])
            and "unconditionally" in report["per_class_note"])
    assert "per class" not in sf.format_table(report)


def test_rk45_trajectories_cover_every_sample_over_several_batches(tiny_cond_run):
    run = Run.load(tiny_cond_run)
    z = run.noise(10, seed=1)
    out = run.solve_from(z, 1, "rk45", batch_size=4, return_trajectory=True, labels=run.labels(10))
    assert out.trajectory.shape[1] == 10 and out.times.shape[0] == out.trajectory.shape[0]
    torch.testing.assert_close(out.trajectory[-1], out.samples)
    torch.testing.assert_close(out.trajectory[0], run.data.denormalize(z))


# ------------------------------------------------------------------ the conditional critic sees the labels
def test_the_conditional_critic_is_a_projection_on_the_labels():
    from straightflow.objectives import AdversarialTerm, build_discriminator
    from straightflow.objectives.adversarial import ProjectionCritic

    torch.manual_seed(0)
    disc = build_discriminator((2,), "vector", width=16, num_classes=3)
    assert isinstance(disc, ProjectionCritic)
    x = torch.randn(5, 2)
    disc.eval()  # spectral norm's power iteration runs in training mode only: fixed weights for the closed form
    h = disc.features(x)
    for c in range(4):  # classes 0..2 and the null class 3: head(phi(x)) + <e_c, phi(x)>
        y = torch.full((5,), c)
        torch.testing.assert_close(disc(x, y), disc.head(h) + (disc.embed(y) * h).sum(1, keepdim=True))
    assert not torch.allclose(disc(x, torch.zeros(5, dtype=torch.long)), disc(x, torch.ones(5, dtype=torch.long)))
    drawn = []

    def real(n, generator):
        drawn.append(n)
        return torch.randn(n, 2, generator=generator), torch.randint(0, 3, (n,), generator=generator)

    disc.train()
    term = AdversarialTerm(disc, real, lr=1e-3, num_classes=3, cond_drop=0.5)
    g = torch.Generator().manual_seed(0)
    disc.eval()
    loss = term.generator_loss(x, torch.tensor([0, 1, 2, 3, 0]))
    torch.testing.assert_close(loss, -disc(x, torch.tensor([0, 1, 2, 3, 0])).mean())
    disc.train()
    stats = term.step(g)
    assert drawn == [5] and torch.isfinite(stats["adv_d_loss"])
    with pytest.raises(RuntimeError, match="labels it was predicted for"):
        term.generator_loss(x)


def test_a_conditional_lines_student_trains_with_the_projection_critic(tiny_cond_run, tmp_path):
    pairs = tmp_path / "pairs"
    pairs_from_run(tiny_cond_run, 300, pairs, nfe=2, device="cpu", progress=False)
    student = sf.train(method="lines", pairs=str(pairs), conditional=True, adv=0.1, steps=4, batch_size=32,
                       out=str(tmp_path / "s"), progress=False, ckpt_every=2)
    state = load_file(latest_checkpoint(student) / "model.safetensors")
    assert state  # trained and checkpointed
    from straightflow.checkpoint import load_train_state

    aux = load_train_state(latest_checkpoint(student))["aux"]["disc"]
    assert any(k.startswith("embed.") for k in aux)  # the critic has class embeddings
    assert sf.train(out=str(student), resume=True, steps=6) == student
