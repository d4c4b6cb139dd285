"""Beta by KL budget: the KLBudget controller, --kl-target training and resume, --beta auto's rule."""

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from straightflow.checkpoint import latest_checkpoint, load_train_state
from straightflow.cli.main import main
from straightflow.config import TrainConfig, apply_overrides, coerce, resolve_config
from straightflow.couplings import KLBudget
from straightflow.errors import StraightflowError
from straightflow.methods.curvature import encode_sample
from straightflow.run import Run
from straightflow.training import auto_beta, train
from straightflow.training.auto_beta import (
    DEFAULT_PRICE,
    HEDGE,
    IMAGE_DRAWS,
    NEAR_LINE_SE,
    PILOT_BETAS,
    VECTOR_DRAWS,
    choose_target,
    default_draws,
    near_line,
    price_of,
)

SMALL = dict(data="moons", width=32, depth=2, batch_size=128, progress=False, method="curvature")


# ------------------------------------------------------------------ the controller, closed form
def test_budget_rises_above_the_target_falls_below_and_rests_at_it():
    b = KLBudget(0.1, beta=10.0, lr=0.01, ema=0.0)  # ema 0: kl_ema is this step's KL
    assert b.update(0.15) == pytest.approx(10.0 * math.exp(0.01 * 0.5))  # relative error +0.5
    b = KLBudget(0.1, beta=10.0, lr=0.01, ema=0.0)
    assert b.update(0.05) == pytest.approx(10.0 * math.exp(-0.01 * 0.5))  # -0.5
    b = KLBudget(0.1, beta=10.0, lr=0.01, ema=0.0)
    assert b.update(5.0) == pytest.approx(10.0 * math.exp(0.01))  # the error is clipped at +1
    b = KLBudget(0.1, beta=3.0)
    for _ in range(500):
        b.update(0.1)
    assert b.beta == pytest.approx(3.0, rel=1e-12) and b.kl_ema == pytest.approx(0.1)  # the fixed point: K
    # a smoothed sequence: the first KL seeds the EMA, then ema * old + (1 - ema) * new
    b = KLBudget(0.2, beta=1.0, lr=0.1, ema=0.5)
    b.update(0.4)
    b.update(0.0)
    assert b.kl_ema == pytest.approx(0.2) and b.beta == pytest.approx(math.exp(0.1 * 1.0 + 0.1 * 0.0))
    # clamped to [beta_min, beta_max]
    b = KLBudget(0.1, beta=1.0, lr=1.0, ema=0.0, beta_min=0.5, beta_max=2.0)
    assert [b.update(1.0) for _ in range(3)][-1] == pytest.approx(2.0)
    assert [b.update(0.0) for _ in range(5)][-1] == pytest.approx(0.5)


def test_budget_state_dict_continues_identically():
    a = KLBudget(0.05, beta=10.0)
    seq = [0.0, 0.01, 0.2, 0.07, 0.04, 0.06] * 20
    for kl in seq[:50]:
        a.update(kl)
    b = KLBudget(0.05, beta=10.0)
    b.load_state_dict(a.state_dict())
    assert [a.update(kl) for kl in seq[50:]] == [b.update(kl) for kl in seq[50:]]
    with pytest.raises(StraightflowError, match="targets 0.05"):
        KLBudget(0.1).load_state_dict(a.state_dict())


@pytest.mark.parametrize("kw, match", [
    (dict(target=0.0), "finite and > 0"), (dict(target=-1.0), "finite and > 0"),
    (dict(target=math.nan), "finite and > 0"), (dict(target=math.inf), "finite and > 0"),
    (dict(target=0.1, beta=math.inf), "initial beta"),
    (dict(target=0.1, beta=0.0), "initial beta"), (dict(target=0.1, lr=0.0), "kl_target_lr"),
])
def test_budget_rejects_bad_settings(kw, match):
    with pytest.raises(StraightflowError, match=match):
        KLBudget(**kw)


# ------------------------------------------------------------------ config and CLI errors
def test_config_parses_kl_target_and_beta_auto():
    assert (coerce("kl_target", "0.1") == 0.1 and coerce("kl_target", "none") is None
            and coerce("kl_target", None) is None)
    assert coerce("beta", "auto") == "auto" and coerce("beta", "inf") == math.inf and coerce("beta", "3") == 3.0
    assert TrainConfig().kl_target is None and TrainConfig().beta == 10.0
    assert resolve_config(None, {"method": "curvature", "beta": "auto"}).beta == "auto"
    with pytest.raises(StraightflowError, match="'beta' expects a number, inf or auto, got 'often'"):
        apply_overrides(TrainConfig(), {"beta": "often"}, "command line")
    with pytest.raises(StraightflowError, match="'kl_target' expects a number or none"):
        apply_overrides(TrainConfig(), {"kl_target": "lots"}, "command line")


@pytest.mark.parametrize("over, match", [
    ({"kl_target": "0.1"}, "--method rectified has none"),
    ({"beta": "auto", "method": "ot"}, "--method ot has none"),
    ({"method": "curvature", "kl_target": "0"}, "finite and > 0"),
    ({"method": "curvature", "kl_target": "-0.5"}, "finite and > 0"),
    ({"method": "curvature", "kl_target": "nan"}, "finite and > 0"),
    ({"method": "curvature", "kl_target": "0.1", "beta": "inf"}, "initial value"),
    ({"method": "curvature", "beta": "auto", "kl_target": "0.1"}, "drop --kl-target"),
    ({"method": "curvature", "kl_target": "0.1", "kl_target_lr": "0"}, "kl_target_lr"),
    ({"method": "curvature", "beta": "auto", "beta_auto_price": "0.9"}, "beta_auto_price must be finite and >= 1"),
    ({"method": "curvature", "beta": "auto", "beta_auto_price": "nan"}, "beta_auto_price must be finite and >= 1"),
    ({"method": "curvature", "beta": "auto", "beta_auto_draws": "1"},
     "beta_auto_draws must be 0 \\(by the data\\) or >= 2"),
])
def test_misconfigurations_are_one_line_errors(over, match, tmp_path, capsys):
    with pytest.raises(StraightflowError, match=match):
        resolve_config(None, over)
    argv = (["train", "--out", str(tmp_path / "r"), "--steps", "1"]
            + [a for k, v in over.items() for a in ("--" + k.replace("_", "-"), v)])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_sweep_refuses_a_kl_target_for_all_its_betas(tmp_path, capsys):
    argv = ["sweep", "--data", "moons", "--betas", "1,inf", "--steps", "1", "--out", str(tmp_path / "s"),
            "--kl-target", "0.1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "same KL target" in err and err.count("\n") == 1


# ------------------------------------------------------------------ training to a target
def test_kl_target_run_lands_its_heldout_kl_near_the_target(tmp_path):
    run_dir = train(out=str(tmp_path / "k"), steps=700, kl_target=0.15, log_every=50, **SMALL)
    stats = [json.loads(r) for r in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert all({"beta", "kl", "kl_ema", "kl_target"} <= set(r) for r in stats)
    assert stats[0]["beta"] < 10.0 and stats[-1]["beta"] < 3.0  # KL below the budget at beta 10: beta falls
    assert abs(stats[-1]["kl_ema"] - 0.15) < 0.02
    run = Run.load(run_dir, device="cpu")
    _, kl, _ = encode_sample(run, run.data.reference(2000, 0)[0], 0)
    assert abs(float(kl.mean()) - 0.15) / 0.15 < 0.2, float(kl.mean())  # held-out, EMA weights


def test_kl_target_resume_is_bit_identical(tmp_path):
    common = dict(SMALL, width=16, depth=1, kl_target=0.1, log_every=10)
    part = train(out=str(tmp_path / "part"), steps=40, ckpt_every=20, **common)
    budget = load_train_state(latest_checkpoint(part))["kl_budget"]
    assert budget["steps"] == 40 and budget["target"] == 0.1
    train(out=str(part), resume=True, steps=70)
    full = train(out=str(tmp_path / "full"), steps=70, ckpt_every=1000, **common)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(latest_checkpoint(full) / name)), load_file(str(latest_checkpoint(part) / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (load_train_state(latest_checkpoint(full))["kl_budget"]
            == load_train_state(latest_checkpoint(part))["kl_budget"])
    lines = lambda d: [json.loads(r) for r in (d / "stats.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["beta"] for r in lines(full)] == [r["beta"] for r in lines(part)]


def test_kl_target_under_ddp_gives_every_rank_the_same_beta(tmp_path):
    """Two gloo ranks: the checkpoint's guard raises if the ranks' betas ever differ (their batch KLs do)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "straightflow",
           "train", "--data", "moons", "--method", "curvature", "--kl-target", "0.1", "--steps", "40", "--batch-size",
           "64", "--width", "16", "--depth", "1", "--device", "cpu", "--out", str(out), "--progress", "false",
           "--log-every", "20", "--ckpt-every", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_train_state(latest_checkpoint(out))["kl_budget"]["steps"] == 40


# ------------------------------------------------------------------ --beta auto
def _pilots(*rows):
    """(beta, KL, quality at NFE 100, quality at NFE 1) rows."""
    return [{"beta": b, "kl": k, "quality": q, "quality_nfe1": q1} for b, k, q, q1 in rows]


def test_auto_rule_picks_the_best_few_step_pilot_within_the_price():
    assert DEFAULT_PRICE == 1.5 and PILOT_BETAS[0] == math.inf
    # without the hedge, K is the edge pilot's: r 1, 1.05, 1.15, 1.45 (admissible), 1.6 (not), and beta 3
    # has the best NFE 1 quality of the admissible ones
    ladder = ((math.inf, 0.0, 0.2, 2.0), (30.0, 0.002, 0.21, 1.9), (10.0, 0.02, 0.23, 1.6), (3.0, 0.16, 0.29, 0.9),
              (1.0, 0.5, 0.32, 0.4))
    got = choose_target(_pilots(*ladder), hedge=0)
    assert got["kl_target"] == 0.16 and got["beta"] == 3.0 and "1.45x" in got["why"] and got["hedge_fraction"] == 0
    # a stricter price stops the walk earlier: beta 10 (1.15x) is the last admissible pilot
    got = choose_target(_pilots(*ladder), price=1.25, hedge=0)
    assert got["kl_target"] == 0.02 and got["beta"] == 10.0
    # the best NFE 1 quality wins even when it is not the lowest admissible beta (and is never past a measured point)
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (30.0, 0.002, 0.2, 1.9), (10.0, 0.02, 0.22, 1.2),
                                (3.0, 0.16, 0.25, 1.3)),
                        hedge=0)
    assert got["kl_target"] == 0.02 and got["beta"] == 10.0
    # no NFE 1 quality recorded: the largest admissible KL, nothing to hedge by
    got = choose_target([{"beta": math.inf, "kl": 0.0, "quality": 0.2}, {"beta": 30.0, "kl": 0.002, "quality": 0.2},
                         {"beta": 10.0, "kl": 0.02, "quality": 0.25}])
    assert got["kl_target"] == 0.02 and got["hedge_fraction"] == 0
    # already beta = 30 too costly (2x): linear in KL from the baseline point (0, 1) to where the line crosses 1.5
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (30.0, 0.004, 0.4, 1.9)))
    assert got["kl_target"] == pytest.approx(0.5 * 0.004) and got["beta"] == 30.0
    # ... unless the price allows nothing above the baseline (or beta = 30 diverged): a one-line error, not K = 0
    for price, q in ((1.0, 0.4), (1.5, math.inf)):
        with pytest.raises(StraightflowError, match="leaves no KL to spend"):
            choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (30.0, 0.004, q, 1.9)), price=price)
    # every pilot admissible and NFE 1 improving down the ladder: the ladder's last
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (1.0, 0.5, 0.21, 0.5), (0.3, 0.9, 0.24, 0.3)), hedge=0)
    assert got["kl_target"] == 0.9 and got["beta"] == 0.3
    with pytest.raises(StraightflowError, match="baseline"):
        choose_target(_pilots((1.0, 0.5, 0.2, 0.5)))


def test_the_hedge_moves_k_toward_the_safer_pilot_until_it_gives_up_its_share_of_nfe1_quality():
    assert HEDGE == 0.075
    ladder = ((math.inf, 0.0, 0.2, 2.0), (30.0, 0.002, 0.21, 1.9), (10.0, 0.02, 0.23, 1.6), (3.0, 0.16, 0.29, 0.9),
              (1.0, 0.5, 0.32, 0.4))
    got = choose_target(_pilots(*ladder))
    t = got["hedge_fraction"]
    # NFE 1 interpolated between beta 3 (0.9) and beta 10 (1.6) is 1.075 x 0.9 at t
    assert (1 - t) * 0.9 + t * 1.6 == pytest.approx(1.075 * 0.9) and 0 < t < 1
    assert got["kl_target"] == pytest.approx(0.16 ** (1 - t) * 0.02 ** t) and 0.02 < got["kl_target"] < 0.16
    assert got["beta"] == pytest.approx(3.0 ** (1 - t) * 10.0 ** t)
    assert "7.5% of that NFE 1 quality" in got["why"] and "toward" not in got["why"].split(";")[0]
    # a safer pilot already within the hedge of the edge's NFE 1 quality: that pilot itself
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (10.0, 0.02, 0.22, 1.0), (3.0, 0.16, 0.25, 0.95)))
    assert got["hedge_fraction"] == 1 and got["kl_target"] == pytest.approx(0.02) and got["beta"] == pytest.approx(10.0)
    # toward the baseline (no KL to aim at): linear in KL, at most half way, beta raised as KL falls
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (30.0, 0.004, 0.21, 1.95), (10.0, 0.04, 0.5, 1.2)))
    assert (got["hedge_fraction"] == 0.5 and got["kl_target"] == pytest.approx(0.002)
            and got["beta"] == pytest.approx(60.0))
    got = choose_target(_pilots((math.inf, 0.0, 0.2, 2.0), (30.0, 0.004, 0.21, 1.5), (10.0, 0.04, 0.5, 1.2)))
    assert (got["hedge_fraction"] == pytest.approx(0.075 * 1.5 / 0.5)
            and got["kl_target"] == pytest.approx((1 - 0.225) * 0.004))


def test_the_price_carries_the_standard_error_of_its_paired_draws_and_admission_is_on_the_mean():
    base = {"beta": math.inf, "kl": 0.0, "quality": 0.2, "quality_nfe1": 2.0, "quality_draws": [0.1, 0.2, 0.3]}
    edge = {"beta": 3.0, "kl": 0.16, "quality": 0.29, "quality_nfe1": 0.9, "quality_draws": [0.13, 0.28, 0.46]}
    ratio, se = price_of(edge, base)
    per_draw = [1.3, 1.4, 0.46 / 0.3]
    mean = sum(per_draw) / 3
    assert (ratio == pytest.approx(1.45)
            and se == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in per_draw) / 2 / 3)))
    # 1.1x, se 0
    safe = {"beta": 10.0, "kl": 0.02, "quality": 0.22, "quality_nfe1": 1.6, "quality_draws": [0.11, 0.22, 0.33]}
    assert price_of(safe, base) == (pytest.approx(1.1), pytest.approx(0.0, abs=1e-12))
    # 1.45 is within 1.5 (its standard error, about 0.07, is reported, not added): beta 3 is the edge
    got = choose_target([base, safe, edge], hedge=0)
    assert got["beta"] == 3.0 and f"+- {se:.2g}" in got["why"]
    # more than the price on the mean: not admissible, the walk ends at beta 10
    costly = {**edge, "quality": 0.31, "quality_draws": [0.15, 0.3, 0.48]}
    assert choose_target([base, safe, costly], hedge=0)["beta"] == 10.0


def test_a_pilot_within_two_standard_errors_of_the_price_is_flagged_near_the_line():
    assert NEAR_LINE_SE == 2.0
    rows = [{"beta": math.inf, "ratio": 1.0, "se": 0.0},
            {"beta": 10.0, "ratio": 1.1, "se": 0.05},    # 8 se under 1.5: settled
            # 0.44 se under (the 8gaussians edge rung's 20-draw price, docs/kl_target.md)
            {"beta": 3.0, "ratio": 1.47, "se": 0.068},
            {"beta": 1.0, "ratio": 1.59, "se": 0.05},    # 1.8 se over: near
            {"beta": 0.3, "ratio": 1.61, "se": 0.05},    # 2.2 se over: settled
            {"beta": 0.1, "ratio": 1.5, "se": 0.0},      # no standard error (one draw): nothing to judge it by
            {"beta": 0.05, "ratio": math.inf, "se": 0.0}]
    assert [p["beta"] for p in near_line(rows, 1.5)] == [3.0, 1.0]
    assert [p["beta"] for p in near_line(rows, 1.19)] == [10.0]  # 1.1 is 1.8 se under 1.19
    assert near_line(rows, 1.5, k=0.4) == []


def test_pilots_draw_twenty_times_on_vectors_and_five_on_images():
    assert (VECTOR_DRAWS, IMAGE_DRAWS) == (20, 5)
    assert default_draws((2,)) == 20 and default_draws((64,)) == 20
    assert default_draws((1, 8, 8)) == 5 and default_draws((3, 32, 32)) == 5


def test_beta_auto_runs_pilots_and_trains_at_the_rule_s_target(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(auto_beta, "PROBE_N", 400)  # the same rule on a smaller quality probe (seconds of CPU)
    monkeypatch.setattr(auto_beta, "VECTOR_DRAWS", 3)  # the by-data default (--beta-auto-draws 0), made cheap
    run_dir = tmp_path / "auto"
    assert main(["train", "--data", "moons", "--method", "curvature", "--beta", "auto", "--steps", "150", "--width",
                 "16", "--depth", "1", "--batch-size", "128", "--out", str(run_dir), "--progress", "false"]) == 0
    record = json.loads((run_dir / "beta_auto.json").read_text())
    pilots = [{**p, "beta": float(p["beta"])} for p in record["pilots"]]
    assert record["pilot_steps"] == 150 and pilots[0]["beta"] == math.inf and len(pilots) >= 2
    # walked down the ladder, stopped at the first failure
    assert [p["beta"] for p in pilots] == list(PILOT_BETAS[: len(pilots)])
    assert (record["price"] == DEFAULT_PRICE and record["draws"] == 3
            and all(len(p["quality_draws"]) == 3 for p in pilots))
    assert all(p["ratio"] <= DEFAULT_PRICE for p in pilots[:-1])
    assert pilots[-1]["ratio"] > DEFAULT_PRICE or len(pilots) == len(PILOT_BETAS)
    choice = choose_target(pilots, record["price"])
    assert record["near_line"] == [auto_beta.beta_label(p["beta"]) for p in near_line(pilots, record["price"])]
    cfg = Run.load(run_dir, device="cpu").cfg
    assert (cfg.kl_target == pytest.approx(choice["kl_target"]) and cfg.beta == pytest.approx(choice["beta"])
            and cfg.beta != "auto")
    assert (run_dir / "pilots" / "beta-inf" / "config.yaml").is_file()
    out = capsys.readouterr().out
    assert "--beta auto: kl_target" in out
    # the log names what the record lists
    assert ("priced within 2 standard errors" in out) == bool(record["near_line"])
    assert all(f"beta={b} (" in out.split("--beta auto: note:")[1] for b in record["near_line"])
    # the same command with --resume, or --resume alone, continues the finished run instead of failing on beta auto
    command = ["train", "--data", "moons", "--method", "curvature", "--beta", "auto", "--steps", "150", "--width", "16",
               "--depth", "1", "--batch-size", "128", "--out", str(run_dir), "--progress", "false"]
    assert main([*command, "--resume"]) == 0, capsys.readouterr().err
    assert main(["train", "--out", str(run_dir), "--resume", "--steps", "160"]) == 0, capsys.readouterr().err
    assert Run.load(run_dir, device="cpu").step == 160
    # a run stopped during its pilots (no config.yaml yet) resumes with the same command: the finished pilots are reused
    stopped = tmp_path / "stopped"
    shutil.copytree(run_dir / "pilots", stopped / "pilots")
    capsys.readouterr()
    assert main([*command[:-4], "--out", str(stopped), "--progress", "false", "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((stopped / "beta_auto.json").read_text())["kl_target"] == pytest.approx(record["kl_target"])
    assert "training curvature" in capsys.readouterr().out
    # the same pilots priced on another number of draws are refused, not silently mixed
    again = tmp_path / "again"
    shutil.copytree(run_dir / "pilots", again / "pilots")
    assert main(["train", "--data", "moons", "--method", "curvature", "--beta", "auto", "--steps", "150",
                 "--width", "16", "--depth", "1", "--batch-size", "128", "--out", str(again), "--progress", "false",
                 "--beta-auto-draws", "4"]) == 2
    err = capsys.readouterr().err
    assert "priced on 3 draws, not the 4 of --beta-auto-draws" in err and err.count("\n") == 1, err
    assert (again / "pilots" / "beta-inf" / "config.yaml").is_file() and not (again / "beta_auto.json").exists()


# ------------------------------------------------------------------ --beta auto chooses on a validation split
def _rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.flatten(1).tolist()}


@pytest.fixture
def captured_probes(monkeypatch):
    """Every QualityProbe built while the test runs, with the reference rows it scores against."""
    from straightflow.training import monitor

    built = []
    original = monitor.QualityProbe.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(monitor.QualityProbe, "__init__", spy)
    return built


@pytest.mark.parametrize("kind", ["npy", "digits"])
def test_beta_auto_pilots_are_priced_on_rows_that_eval_never_reports_on(kind, tmp_path, monkeypatch, captured_probes):
    """Row-level check: no reference row of any pilot draw is in eval's held-out reference, no pilot trained on a
    row it was priced on, and beta_auto.json names the split."""
    from straightflow.evaluate import ALL_HELDOUT
    from straightflow.training.monitor import QUALITY_FILE, read_records

    monkeypatch.setattr(auto_beta, "PROBE_N", 60)
    monkeypatch.setattr(auto_beta, "PRICE_NFE", 4)
    if kind == "npy":
        rng = torch.Generator().manual_seed(0)
        points = torch.randn(400, 3, generator=rng) * torch.tensor([1.0, 2.0, 0.5]) + 3.0
        data = tmp_path / "points.npy"
        import numpy as np

        np.save(data, points.numpy())
        data = str(data)
    else:
        data = "digits"
    run_dir = tmp_path / "auto"
    train(data=data, method="curvature", beta="auto", steps=6, width=16, depth=1, model="mlp", batch_size=32,
          beta_auto_draws=2, out=str(run_dir), progress=False)
    record = json.loads((run_dir / "beta_auto.json").read_text())
    assert record["priced_on"]["split"] == "validation" and record["priced_on"]["validation_fraction"] == 0.2
    pilots = [p for p in captured_probes if p.split == "validation"]
    assert len(pilots) >= 2 * len(record["pilots"])  # each pilot's probe and its second draw
    run = Run.load(run_dir, device="cpu")
    eval_reference, _ = run.data.reference(ALL_HELDOUT if kind == "digits" else 2000, 0)
    held = _rows(eval_reference)
    priced = set().union(*(_rows(p.reference) for p in pilots))
    assert priced and held and not priced & held
    for beta_dir in (run_dir / "pilots").iterdir():
        assert read_records(beta_dir / QUALITY_FILE)[-1]["split"] == "validation"
        source = Run.load(beta_dir, device="cpu").data.source("the training rows")
        trained_on = _rows(source.denormalize(source.train.cpu())
                           if hasattr(source, "train") else source.train_images())
        assert not trained_on & priced and not trained_on & held
    # the run itself trains on all of its training split, validation rows included
    assert run.cfg.validation_fraction == 0
    full = run.data.source("the training rows")
    # the rows compared are the same floats: the checks can fail
    assert priced <= _rows(full.denormalize(full.train.cpu()))


def test_a_finished_pilot_priced_on_the_heldout_split_is_not_reused(tmp_path):
    last = {"step": 10, "draws": 2, "w2_nfe100_draws": [0.1, 0.2]}
    with pytest.raises(StraightflowError, match="priced on the held-out split that eval reports on"):
        auto_beta._check_finished_pilot(tmp_path, {**last, "split": "heldout"}, 2)
    with pytest.raises(StraightflowError, match="priced on the held-out split"):
        auto_beta._check_finished_pilot(tmp_path, last, 2)  # made before pilots recorded their split
    auto_beta._check_finished_pilot(tmp_path, {**last, "split": "validation"}, 2)
    with pytest.raises(StraightflowError, match="priced on 2 draws, not the 3"):
        auto_beta._check_finished_pilot(tmp_path, {**last, "split": "validation"}, 3)
