"""Images: datasets, UNet, Fréchet distance, grids, CLI end to end."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from image_helpers import TINY_UNET, write_folder  # noqa: I001  (tests/ is on the path: conftest's folder)
from straightflow.cli.main import main
from straightflow.config import TrainConfig
from straightflow.data import load_data
from straightflow.errors import StraightflowError
from straightflow.metrics.frechet import FrechetDistance, random_features
from straightflow.models.unet import build_unet, unet_settings


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- data
def test_digits_shape_range_split():
    d = load_data("digits", TrainConfig())
    assert d.kind == "image" and d.shape == (1, 8, 8)
    assert d.train.shape[0] + d.heldout.shape[0] == 1797
    assert d.heldout.shape[0] == round(0.2 * 1797)
    assert float(d.train.min()) == -1.0 and float(d.train.max()) == 1.0
    assert len(d.labels) == d.train.shape[0]
    d2 = load_data("digits", TrainConfig())
    assert torch.equal(d.heldout, d2.heldout)  # fixed split
    g = torch.Generator().manual_seed(0)
    b, y = d.sample_train(16, g)
    assert b.shape == (16, 1, 8, 8) and b.dtype == torch.float32 and y.shape == (16,) and y.dtype == torch.int64
    # held-out and training images are disjoint sets
    tr = {tuple(x.flatten().tolist()) for x in d.train}
    assert sum(tuple(x.flatten().tolist()) in tr for x in d.heldout) < 0.1 * d.heldout.shape[0]


def test_hflip_uses_generator():
    d = load_data("digits", TrainConfig(hflip=True))
    (a, ya), (b, yb) = (d.sample_train(32, torch.Generator().manual_seed(3)),
                        d.sample_train(32, torch.Generator().manual_seed(3)))
    assert torch.equal(a, b) and torch.equal(ya, yb)


def test_folder_rgb_resize_and_npy(tmp_path):
    write_folder(tmp_path / "rgb", n=12, size=10, mode="RGB")
    d = load_data(str(tmp_path / "rgb"), TrainConfig(image_size=8))
    assert d.shape == (3, 8, 8) and d.kind == "image"
    arr = (np.random.default_rng(0).random((20, 6, 6)) * 255).astype(np.uint8)
    np.save(tmp_path / "imgs.npy", arr)
    d = load_data(str(tmp_path / "imgs.npy"), TrainConfig())
    assert d.shape == (1, 6, 6) and d.kind == "image"
    assert -1.0 <= float(d.train.min()) and float(d.train.max()) <= 1.0
    np.save(tmp_path / "points.npy", np.random.default_rng(0).normal(size=(50, 3)))
    assert load_data(str(tmp_path / "points.npy"), TrainConfig()).kind == "vector"


# ---------------------------------------------------------------- bad input: one line, exit 2
def test_mixed_sizes_error(tmp_path, capsys):
    write_folder(tmp_path / "mix", n=12, size=8)
    write_folder(tmp_path / "mix" / "sub", n=1, size=12)
    code, _, err = run_cli(["train", "--data", tmp_path / "mix", "--out", tmp_path / "r", "--steps", 1], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "differ in size" in err and "img_000.png" in err and "--image-size" in err
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_unreadable_file_error(tmp_path, capsys):
    write_folder(tmp_path / "bad", n=12)
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png at all")
    code, _, err = run_cli(["train", "--data", tmp_path / "bad", "--out", tmp_path / "r", "--steps", 1], capsys)
    assert code == 2 and err.count("\n") == 1 and "broken.png" in err


def test_empty_folder_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    code, _, err = run_cli(["train", "--data", tmp_path / "empty", "--out", tmp_path / "r", "--steps", 1], capsys)
    assert code == 2 and err.count("\n") == 1 and "empty" in err


def test_torchvision_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # the extra not installed
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    code, _, err = run_cli(["train", "--data", "mnist", "--out", tmp_path / "r", "--steps", 1], capsys)
    assert code == 2 and err.count("\n") == 1 and "torchvision" in err


def test_torchvision_files_absent(tmp_path, capsys, monkeypatch):
    """Without --download, absent files give a one-line error (torchvision faked if missing)."""
    import types

    class Missing:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=Missing, CIFAR10=Missing)
    try:
        import torchvision  # noqa: F401  (real one: files really are absent under tmp_path)
    except ImportError:
        monkeypatch.setitem(sys.modules, "torchvision", fake)
        monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    code, _, err = run_cli(["train", "--data", "cifar10", "--data-root", tmp_path / "none", "--out", tmp_path / "r",
                            "--steps", 1], capsys)
    assert code == 2 and err.count("\n") == 1 and "--download" in err and "cifar10" in err


# ---------------------------------------------------------------- model
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (1, 28, 28), (3, 32, 32)])
def test_unet_shapes(shape):
    cfg = TrainConfig(preset="none", channels=8, channel_mult="1,2,2", num_res_blocks=1, attn_resolutions="16,7")
    x, t = torch.randn(2, *shape), torch.rand(2)
    assert build_unet(cfg, shape)(x, t).shape == x.shape
    enc = build_unet(cfg, shape, out_mult=2, size="small")
    assert enc(x, t).shape == (2, 2 * shape[0], *shape[1:])
    assert isinstance(enc.out, torch.nn.Conv2d)


def test_presets():
    assert unet_settings(TrainConfig(), (1, 8, 8))["preset"] == "digits-cpu"
    s = unet_settings(TrainConfig(preset="cifar10", channels=64), (3, 32, 32))
    assert s["channels"] == 64 and s["num_res_blocks"] == 4 and s["dropout"] == 0.13  # explicit field wins
    with pytest.raises(StraightflowError):
        unet_settings(TrainConfig(preset="nope"), (1, 8, 8))


# ---------------------------------------------------------------- Fréchet distance
def test_frechet_self_zero_and_shift_positive():
    x = torch.rand(300, 1, 8, 8) * 2 - 1
    net, name = random_features((1, 8, 8))
    fd = FrechetDistance(net, name)
    assert abs(fd.distance(x, x)) < 1e-6
    assert fd.distance(x, (x + 0.5).clamp(-1, 1)) > 1e-3
    assert fd.distance(x, x.flip(0)) < fd.distance(x, (x + 0.5).clamp(-1, 1))


# ---------------------------------------------------------------- CLI on a folder of our own making
def test_folder_train_sample_eval_plot(tmp_path, capsys):
    data = write_folder(tmp_path / "imgs", n=30)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--data", data, "--out", run, "--steps", 6, "--batch-size", 8,
                              "--progress", "false", *TINY_UNET], capsys)
    assert code == 0, err
    assert "parameters" in out
    code, _, err = run_cli(["sample", run, "--nfe", 2, "-n", 9, "--out", tmp_path / "s.png"], capsys)
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0, err
    code, _, err = run_cli(["sample", run, "--nfe", 2, "-n", 9, "--out", tmp_path / "s.npy"], capsys)
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (9, 1, 8, 8), err
    code, out, err = run_cli(["eval", run, "--nfe", "1,2", "-n", 20, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["features"] == "random-conv-v1" and "fd_floor" in report
    assert [r["nfe"] for r in report["results"]] == [1, 2]
    assert all(r["features"] == "random-conv-v1" and np.isfinite(r["fd"]) for r in report["results"])
    for kind in ("grid", "xhat"):
        code, _, err = run_cli(["plot", run, "--kind", kind, "--nfe", 4, "-n", 3, "--out", tmp_path / f"{kind}.png"],
                               capsys)
        assert code == 0 and (tmp_path / f"{kind}.png").exists(), err


# ---------------------------------------------------------------- done when: baseline on digits
def test_digits_baseline_end_to_end(tmp_path, capsys):
    """Trains the baseline briefly on digits: FD at NFE 100 far below FD at NFE 1; grids written."""
    import straightflow as sf

    out = sf.train(
        data="digits", method="rectified", steps=200, batch_size=64, lr=2e-3, out=str(tmp_path / "run"), seed=0,
        preset="none", channels=16, channel_mult="1,2", num_res_blocks=1, progress=False, log_every=50, ckpt_every=200,
    )
    run = sf.Run.load(out)
    report = sf.evaluate(run, [1, 100], n=256, curvature_n=32)
    fd = {r["nfe"]: r["fd"] for r in report["results"]}
    assert report["features"] == "digits-classifier-v1" and report["fd_floor"] > 0
    assert fd[100] < 0.5 * fd[1], fd
    code, _, err = run_cli(["plot", out, "--kind", "grid", "--nfe", 20, "-n", 16, "--out", tmp_path / "grid.png"],
                           capsys)
    assert code == 0 and (tmp_path / "grid.png").stat().st_size > 0, err


def test_eval_json_stays_parseable_while_the_feature_net_is_trained(tmp_path, capsys, monkeypatch):
    """The first eval on digits trains the cached feature net: its notice goes to stderr, not into --json."""
    monkeypatch.setenv("STRAIGHTFLOW_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", "digits", "--out", run, "--steps", 4, "--batch-size", 8,
                            "--progress", "false", *TINY_UNET], capsys)
    assert code == 0, err
    code, out, err = run_cli(["eval", run, "--nfe", "1", "-n", 50, "--json"], capsys)
    assert code == 0 and "feature network" in err, err
    assert json.loads(out)["features"] == "digits-classifier-v1"
