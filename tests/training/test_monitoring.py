"""Monitoring a run while it trains (docs/monitoring.md): TensorBoard event files, in-training
quality checks of the EMA weights, and ``plot --kind loss`` from stats.jsonl."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from straightflow.checkpoint import latest_checkpoint  # noqa: E402
from straightflow.cli.main import main  # noqa: E402
from straightflow.errors import StraightflowError  # noqa: E402
from straightflow.evaluate import evaluate  # noqa: E402
from straightflow.plots import plot_loss  # noqa: E402
from straightflow.run import Run  # noqa: E402
from straightflow.training import train  # noqa: E402
from straightflow.training.monitor import QualityProbe, image_batch  # noqa: E402

MONITOR = dict(tensorboard=True, eval_every=20, eval_nfe="1,4", eval_n=128)


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def steps(acc: EventAccumulator, tag: str, kind: str = "Scalars") -> list[int]:
    return [e.step for e in getattr(acc, kind)(tag)]


def quality_lines(run_dir) -> list[dict]:
    return [json.loads(r) for r in (run_dir / "quality.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def curvature_runs(tmp_path_factory):
    """The same curvature run (40 steps) trained plain and with --tensorboard --eval-every 20."""
    root = tmp_path_factory.mktemp("monitor")
    quick = dict(data="moons", method="curvature", beta=1.0, steps=40, width=32, depth=2, batch_size=64, log_every=10,
                 ckpt_every=20, progress=False)
    train(out=str(root / "plain"), **quick)
    train(out=str(root / "watched"), **quick, **MONITOR)
    return root / "plain", root / "watched"


def test_tensorboard_holds_the_stats_the_quality_and_the_samples(curvature_runs):
    _, run = curvature_runs
    acc = events(run)
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/steps_per_sec", "train/kl", "train/flow_loss", "train/z_norm"):
        assert steps(acc, tag) == [10, 20, 30, 40], tag
    stats = [json.loads(r) for r in (run / "stats.jsonl").read_text().splitlines()]
    # float32 in the event file
    assert [e.value for e in acc.Scalars("train/kl")] == pytest.approx([s["kl"] for s in stats], rel=1e-6)
    for tag in ("quality/w2_nfe1", "quality/w2_nfe4", "quality/energy_nfe1", "quality/w2_floor"):
        assert steps(acc, tag) == [20, 40], tag
    assert sorted(tags["images"]) == ["samples/nfe1", "samples/nfe4"]
    for tag in tags["images"]:
        assert steps(acc, tag, "Images") == [20, 40]
        image = acc.Images(tag)[-1]
        assert image.width >= 200 and image.height >= 200  # a rendered scatter, not an empty placeholder
    assert [q["step"] for q in quality_lines(run)] == [20, 40]
    assert len(list((run / "tensorboard").iterdir())) == 1


def test_in_training_quality_is_evals_on_the_same_noise_and_reference(curvature_runs):
    _, run = curvature_runs
    last = quality_lines(run)[-1]
    report = evaluate(Run.load(run), [1, 4], n=128)  # the EMA weights of step 40, seed 0
    assert last["n"] == report["n"] == 128 and last["solver"] == "euler"
    for row in report["results"]:
        assert last[f"w2_nfe{row['nfe']}"] == pytest.approx(row["w2"], rel=1e-9)
        assert last[f"energy_nfe{row['nfe']}"] == pytest.approx(row["energy"], rel=1e-9, abs=1e-12)
    assert last["w2_floor"] == pytest.approx(report["w2_floor"], rel=1e-9)
    first = quality_lines(run)[0]
    assert first["w2_nfe4"] != last["w2_nfe4"]  # the checks follow the weights


def test_a_probe_of_several_draws_scores_the_mean_of_evals_at_successive_seeds(curvature_runs):
    _, run_dir = curvature_runs
    run = Run.load(run_dir)
    probe = QualityProbe(run.data, [1, 4], n=128, prior=run.prior, seed=7, draws=3)
    result = probe(run.velocity_fn())
    scores = result.scores
    reports = [evaluate(run, [1, 4], n=128, seed=s) for s in (7, 8, 9)]  # each its own noise and reference
    for k in (1, 4):
        single = [next(r["w2"] for r in rep["results"] if r["nfe"] == k) for rep in reports]
        assert scores[f"w2_nfe{k}"] == pytest.approx(sum(single) / 3, rel=1e-9)
        assert len(set(single)) == 3  # the draws differ, so the mean is not one of them
        assert [d[f"w2_nfe{k}"] for d in result.draws] == pytest.approx(single, rel=1e-9)
    assert scores["w2_floor"] == pytest.approx(sum(rep["w2_floor"] for rep in reports) / 3, rel=1e-9)
    with pytest.raises(StraightflowError, match="at least one draw"):
        QualityProbe(run.data, [1], n=16, draws=0)


def test_a_conditional_runs_checks_sample_the_classes_as_often_as_the_data_holds_them(tmp_path, quick_overrides,
                                                                                      unbalanced_points):
    """Classes 80/20: the checks' samples are 80/20 too (not alternating), and score exactly as `eval` does."""
    path = unbalanced_points
    run_dir = Path(train(data=str(path), label_column="kind", conditional=True, steps=40, eval_every=40, eval_nfe="1,4",
                         eval_n=100, out=str(tmp_path / "run"), **quick_overrides))
    run = Run.load(run_dir)
    probs = run.data.class_probs()
    probe = QualityProbe(run.data, [1], n=100, prior=run.prior, num_classes=2)
    n = probe.n  # the held-out split's size where that is smaller than n
    assert torch.bincount(probe.labels, minlength=2).tolist() == [round(n * float(probs[0])),
                                                                  n - round(n * float(probs[0]))]
    assert 0.7 < float(probs[0]) < 0.9
    last = quality_lines(run_dir)[-1]
    report = evaluate(run, [1, 4], n=100)
    for row in report["results"]:
        assert last[f"w2_nfe{row['nfe']}"] == pytest.approx(row["w2"], rel=1e-9)


def test_monitoring_does_not_change_what_a_run_trains_to(curvature_runs):
    plain, watched = curvature_runs
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(latest_checkpoint(plain) / name)), load_file(str(latest_checkpoint(watched) / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not (plain / "tensorboard").exists() and not (plain / "quality.jsonl").exists()


def test_resume_continues_the_event_files_without_duplicate_steps(tmp_path, quick_overrides):
    run = tmp_path / "r"
    cfg = dict(data="moons", steps=50, **{**quick_overrides, "ckpt_every": 30})
    train(out=str(run), **cfg, **MONITOR)
    before = {e.step: e.value for e in events(run).Scalars("train/loss")}
    shutil.rmtree(latest_checkpoint(run))  # a crash after step 50 was logged but before it was saved: resume at 30
    train(out=str(run), steps=50, resume=True, tensorboard=True, eval_every=20)  # monitoring flags may be given again
    acc = events(run)
    assert len(list((run / "tensorboard").iterdir())) == 2  # a second event file
    assert steps(acc, "train/loss") == [10, 20, 30, 40, 50]  # the first launch's 40 and 50 are purged
    assert {e.step: e.value for e in acc.Scalars("train/loss")} == before  # exact resume
    assert steps(acc, "quality/w2_nfe1") == [20, 40, 50] and steps(acc, "samples/nfe4", "Images") == [20, 40, 50]
    assert [q["step"] for q in quality_lines(run)] == [20, 40, 50]


def test_eval_every_without_tensorboard_writes_quality_lines_only(tmp_path, quick_overrides, capsys):
    run = tmp_path / "r"
    train(out=str(run), data="8gaussians", steps=30, eval_every=15, eval_nfe="2", eval_n=64, **quick_overrides)
    lines = quality_lines(run)
    assert [q["step"] for q in lines] == [15, 30]
    assert set(lines[0]) >= {"w2_nfe2", "energy_nfe2", "w2_floor", "energy_floor", "n", "solver"}
    assert not (run / "tensorboard").exists()
    assert "step 30 quality: w2 nfe2" in capsys.readouterr().out


def test_image_runs_log_sample_grids_and_their_frechet_distance(tmp_path):
    # 8x8 images of one bright row each (an unlabelled array: the random-conv features, nothing to train first)
    images = -torch.ones(300, 1, 8, 8)
    images[torch.arange(300), 0, torch.arange(300) % 8] = 1.0
    np.save(tmp_path / "bars.npy", images.numpy())
    run = tmp_path / "bars"
    train(out=str(run), data=str(tmp_path / "bars.npy"), steps=10, channels=8, batch_size=32, log_every=5,
          ckpt_every=10, progress=False, tensorboard=True, eval_every=10, eval_nfe="1", eval_n=64)
    acc = events(run)
    assert steps(acc, "samples/nfe1", "Images") == [10] and steps(acc, "quality/fd_nfe1") == [10]
    q = quality_lines(run)[-1]
    assert q["features"] == "random-conv-v1" and q["fd_nfe1"] > 10 * q["fd_floor"] > 0  # 10 steps: still noise
    image = acc.Images("samples/nfe1")[0]
    # 60 held-out images -> 60 samples, each upscaled to 32 px and framed by 2 px, tiled 8 wide
    assert q["n"] == 60 and (image.width, image.height) == (8 * 36, 8 * 36)


def test_image_grids_group_a_conditional_runs_samples_by_class():
    images = torch.stack([torch.full((1, 8, 8), float(v)) for v in (-1, 1, -1, 1)])
    batch = image_batch(images, torch.tensor([1, 0, 1, 0]))
    assert batch.shape == (4, 1, 36, 36) and float(batch.min()) == 0.0
    assert [float(b[0, 10, 10]) for b in batch] == [1.0, 1.0, 0.0, 0.0]  # class 0 (white) first
    assert float(batch[0, 0, 0, 0]) == 1.0  # the white frame


def test_missing_tensorboard_is_a_one_line_error_naming_the_extra(tmp_path, quick_overrides, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(StraightflowError, match=r"pip install 'straightflow\[tensorboard\]'"):
        train(out=str(tmp_path / "r"), data="moons", steps=10, tensorboard=True, **quick_overrides)
    assert main(["train", "--data", "moons", "--steps", "10", "--tensorboard", "--progress", "false",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "straightflow[tensorboard]" in err[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("bad, message", [(dict(eval_nfe="1,0"), "eval_nfe must be comma-separated positive integers"),
                                          (dict(eval_nfe="a"), "eval_nfe must be"),
                                          (dict(eval_every=-1), "eval_every must be >= 0"),
                                          (dict(eval_n=1), "eval_n must be >= 2"),
                                          (dict(eval_draws=0), "eval_draws must be >= 1")])
def test_bad_monitoring_settings_are_one_line_errors(tmp_path, bad, message):
    with pytest.raises(StraightflowError, match=message):
        train(out=str(tmp_path / "r"), data="moons", steps=10, **bad)


# ------------------------------------------------------------------ plot --kind loss
def test_plot_loss_draws_every_stat_and_the_quality(curvature_runs, tmp_path, capsys):
    _, run = curvature_runs
    out = tmp_path / "loss.png"
    res = plot_loss(run, out)
    stats = [json.loads(r) for r in (run / "stats.jsonl").read_text().splitlines()]
    assert res.series["loss"] == ([10, 20, 30, 40], [s["loss"] for s in stats])
    assert res.series["kl"][1] == [s["kl"] for s in stats]
    assert {"lr", "steps_per_sec", "z_norm", "flow_loss"} <= set(res.series)
    assert res.series["quality/w2_nfe1"][0] == res.series["quality/w2_floor"][0] == [20, 40]
    assert res.panels[0] == "loss" and res.panels[-2:] == ["energy (EMA, in training)", "w2 (EMA, in training)"]
    assert Image.open(out).size[0] > 500
    # the command line: no checkpoint is loaded, so it works on the run directory alone
    shutil.rmtree(run.parent / "copy", ignore_errors=True)
    shutil.copytree(run, run.parent / "copy", ignore=shutil.ignore_patterns("checkpoints"))
    assert main(["plot", str(run.parent / "copy"), "--kind", "loss", "--out", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 10_000 and "loss plot written" in capsys.readouterr().out


def test_plot_loss_on_one_line_and_on_a_resumed_runs_stats(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "stats.jsonl").write_text(json.dumps({"step": 5, "loss": 1.5, "lr": 1e-3, "steps_per_sec": 9.0}) + "\n")
    res = plot_loss(one, tmp_path / "one.png")
    assert res.series["loss"] == ([5], [1.5]) and res.panels == ["loss", "lr", "steps_per_sec"]
    # a resumed run whose old lines were never truncated (and a half-written last line): each step once,
    # the later line wins
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    rows = ([{"step": s, "loss": float(s), "lr": 0.1} for s in (10, 20, 30)]
            + [{"step": s, "loss": -float(s), "lr": 0.1} for s in (20, 30, 40)])
    (resumed / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 50, "lo')
    res = plot_loss(resumed, tmp_path / "resumed.png")
    assert res.series["loss"] == ([10, 20, 30, 40], [10.0, -20.0, -30.0, -40.0])


def test_plot_loss_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StraightflowError, match="has no training stats"):
        plot_loss(empty, tmp_path / "x.png")
    (empty / "stats.jsonl").write_text("")
    assert main(["plot", str(empty), "--kind", "loss", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", str(tmp_path / "missing"), "--kind", "loss", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", str(empty), "--kind", "loss", "--nfe", "4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (len(err) == 3 and "has no training stats" in err[0] and "is not a run directory" in err[1]
            and "--nfe does not apply" in err[2])
    assert not (tmp_path / "x.png").exists()
