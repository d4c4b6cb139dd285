"""Reliability: one writer per run directory and pair folder, safe checkpoint loading, strict flags."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from straightflow.checkpoint import latest_checkpoint
from straightflow.cli.main import main
from straightflow.errors import StraightflowError
from straightflow.locks import FolderLock
from straightflow.run import Run
from straightflow.training import train


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "straightflow", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_writer_of_a_run_gets_a_one_line_error_and_the_stats_stay_ordered(tmp_path):
    run = tmp_path / "R"
    train(data="moons", width=64, depth=2, steps=100, out=str(run), seed=3, log_every=100, ckpt_every=100,
          progress=False)
    argv = ["train", "--data", "moons", "--width", "64", "--depth", "2", "--out", run, "--seed", "3", "--resume",
            "--steps", "30000", "--ckpt-every", "1000", "--log-every", "100", "--progress", "false"]
    first = _cli(*argv)
    try:
        deadline = time.time() + 120
        while not (run / ".lock").exists() or not (run / ".lock").read_text().strip():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first writer never took the lock"
            time.sleep(0.2)
        second = _cli(*argv)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        lines = [e for e in err.strip().splitlines() if e.strip()]
        assert len(lines) == 1 and "being written by pid" in lines[0] and str(first.pid) in lines[0]
    finally:
        first.kill()
        first.communicate()
    steps = [json.loads(row)["step"] for row in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), steps  # strictly increasing: one writer only


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, capsys):
    (tmp_path / ".lock").write_text("pid 999999 on elsewhere since 2026-01-01 00:00:00")
    with FolderLock(tmp_path, "run directory"):
        assert str(os.getpid()) in (tmp_path / ".lock").read_text()
        with pytest.raises(StraightflowError, match="being written by pid"):
            FolderLock(tmp_path, "run directory").acquire()  # a second lock in this process is refused too
    assert "taking over the lock of pid 999999" in capsys.readouterr().err
    assert (tmp_path / ".lock").read_text() == ""  # released: emptied


def test_a_checkpoint_that_would_run_code_on_load_is_refused(tmp_path, capsys):
    run = tmp_path / "r"
    train(data="moons", width=16, depth=1, steps=4, out=str(run), log_every=2, ckpt_every=4, progress=False)
    state = latest_checkpoint(run) / "state.pt"
    evil = {"step": 4, "payload": subprocess.Popen}  # any non-tensor object needs arbitrary unpickling
    torch.save(evil, state)
    with pytest.raises(StraightflowError, match="refusing to load"):
        train(out=str(run), steps=8, resume=True)
    assert main(["train", "--out", str(run), "--steps", "8", "--resume"]) == 2
    assert "refusing to load" in capsys.readouterr().err
    Run.load(run)  # sampling needs only the safetensors weights


def test_flags_are_not_matched_by_prefix(tmp_path, capsys):
    assert main(["train", "--data", "moons", "--step", "5", "--out", str(tmp_path / "r")]) == 2
    assert "--step" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_diverged_run_stops_at_once_and_never_scores(tmp_path):
    """The reproduction: lr 1e15 used to checkpoint NaN weights, prune the good ones and score W2 = 0.0 with bare NaN in
    --json."""
    run = tmp_path / "R"
    proc = subprocess.run([sys.executable, "-m", "straightflow", "train", "--data", "moons", "--lr", "1e15", "--steps",
                           "200", "--width", "32", "--depth", "2", "--ckpt-every", "10", "--keep-checkpoints", "3",
                           "--out", str(run), "--progress", "false"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "training diverged at step" in proc.stderr, proc.stderr
    for ckpt in (run / "checkpoints").glob("step-*"):  # whatever was kept is finite
        from safetensors.torch import load_file

        assert all(torch.isfinite(v).all() for v in load_file(str(ckpt / "ema.safetensors")).values())
    ev = subprocess.run([sys.executable, "-m", "straightflow", "eval", str(run), "-n", "200", "--nfe", "1", "--json"],
                        capture_output=True, text=True)
    assert ev.returncode == 2 and ev.stdout == "" and len(ev.stderr.strip().splitlines()) == 1, (ev.stdout, ev.stderr)


class _NaNAfter(torch.nn.Module):
    """A velocity net whose output turns NaN after ``n`` training-mode calls."""

    def __init__(self, n: int):
        super().__init__()
        self.lin, self.n, self.calls = torch.nn.Linear(3, 2), n, 0

    def forward(self, x, t):
        out = self.lin(torch.cat([x, t[:, None]], dim=1))
        if self.training:
            self.calls += 1
            if self.calls > self.n:
                out = out * float("nan")
        return out


def test_divergence_keeps_the_last_finite_checkpoint(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(StraightflowError, match=r"diverged at step 26: the loss is nan.*step-000020\) is intact"):
        train(data="moons", steps=40, out=str(run), velocity_net=_NaNAfter(25), batch_size=32, ckpt_every=10,
              keep_checkpoints=1, log_every=5, progress=False)
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-000020"]
    loaded = Run.load(run, velocity_net=_NaNAfter(10**9))
    assert torch.isfinite(loaded.sample(100, nfe=2).samples).all()
    steps = [json.loads(row)["step"] for row in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 25]


def test_non_finite_weights_or_samples_are_errors_not_scores(tmp_path):
    from safetensors.torch import load_file, save_file

    from straightflow.evaluate import evaluate

    run = tmp_path / "r"
    train(data="moons", width=16, depth=1, steps=4, out=str(run), log_every=2, ckpt_every=4, progress=False)
    path = latest_checkpoint(run) / "ema.safetensors"
    state = load_file(str(path))
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("inf"))
    save_file(state, str(path))
    meta = json.loads((path.parent / "meta.json").read_text())
    del meta["sha256"]  # as written before checksums were recorded, when diverged weights could be checkpointed
    (path.parent / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StraightflowError, match="non-finite weights"):
        Run.load(run)
    ok = tmp_path / "ok"
    train(data="moons", width=16, depth=1, steps=4, out=str(ok), log_every=2, ckpt_every=4, progress=False)
    loaded = Run.load(ok)
    loaded.module.velocity.out.bias.data.fill_(float("inf"))  # finite checkpoint, overflowing model
    with pytest.raises(StraightflowError, match="not finite"):
        evaluate(loaded, [1], n=50)


@pytest.mark.parametrize("argv,message", [
    (["eval", "{run}", "-n", "0"], "-n must be >= 2"),
    (["eval", "{run}", "-n", "1"], "-n must be >= 2"),
    (["eval", "{run}", "--reference", "{one_row}", "-n", "10"], "needs at least 2"),
    (["train", "--data", "moons", "--weight-decay", "-1", "--out", "{new}"], "weight_decay must be >= 0"),
    (["train", "--data", "moons", "--method", "ot", "--sinkhorn-reg", "0", "--out", "{new}"],
     "sinkhorn_reg must be > 0"),
    (["train", "--data", "moons", "--dropout", "1.5", "--out", "{new}"], "dropout must be in [0, 1)"),
    (["plot", "{run}", "--out", "{txt}"], "use a .png file name"),
    (["train", "--data", "{csv}", "--out", "{new}"], "row 3 column 1 holds text 'x'"),
])
def test_bad_values_are_one_line_errors_not_internal_errors(argv, message, tmp_path, capsys):
    import numpy as np

    run = tmp_path / "R"
    train(data="moons", width=16, depth=1, steps=4, out=str(run), log_every=2, ckpt_every=4, progress=False)
    np.save(tmp_path / "one.npy", np.zeros((1, 2), dtype=np.float32))
    (tmp_path / "t.csv").write_text("a,b\n1,2\nx,3\n" + "".join(f"{i},{i}\n" for i in range(20)))
    names = {"run": run, "one_row": tmp_path / "one.npy", "new": tmp_path / "new", "txt": tmp_path / "p.txt",
             "csv": tmp_path / "t.csv"}
    capsys.readouterr()
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("straightflow: error:") and message in err[0], err
    assert not (tmp_path / "new").exists() and not (tmp_path / "p.txt").exists()


# ------------------------------------------------------------------ issue "Reliability": eval
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "r"
    train(data="moons", width=16, depth=1, steps=4, out=str(run), log_every=2, ckpt_every=4, progress=False)
    return run


def test_eval_with_a_reference_has_a_floor_and_says_where_it_came_from(tiny_run):
    from straightflow.evaluate import evaluate, format_table
    from straightflow.metrics import energy_distance, wasserstein2

    run = Run.load(tiny_run)
    ref = 0.5 * torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    report = evaluate(run, [1], n=100, reference=ref)
    assert report["floor_source"] == "run data vs --reference" and report["n_floor"] == 100
    # n points of the run's data, scored against the reference as the samples are
    own, _ = run.data.floor_reference(100, 0)
    assert report["w2_floor"] == pytest.approx(wasserstein2(own, ref), rel=1e-12)
    assert report["energy_floor"] == pytest.approx(energy_distance(own, ref), rel=1e-12)
    assert "two-sample floor (run data vs --reference): w2 " in format_table(report)
    plain = evaluate(run, [1], n=100)
    assert plain["floor_source"].startswith("run data: held-out") and "w2_floor" in plain


def _expected_flow_loss(run, x, z, y=None, seed=0):
    from straightflow.noise import stream_seed
    from straightflow.objectives import VelocityObjective

    g = torch.Generator().manual_seed(stream_seed("heldout-loss", seed))
    objective = VelocityObjective(run.cfg.t_min)
    loss, _ = objective(run.velocity, x, z, g) if y is None else objective(run.velocity, x, z, g, y=y)
    return float(loss)


def test_pair_runs_report_the_flow_loss_of_their_own_heldout_pairs(tmp_path, monkeypatch):
    import shutil

    import straightflow.data as data_mod
    import straightflow.run as run_mod
    from straightflow.data.pairs import write_pair_folder
    from straightflow.evaluate import evaluate, format_table, heldout_flow_loss

    g = torch.Generator().manual_seed(0)
    z = torch.randn(600, 2, generator=g)
    x = z @ torch.tensor([[1.2, 0.5], [-0.3, 0.7]]).T + torch.tensor([0.4, -0.6])  # a known map, not moons
    folder = write_pair_folder(tmp_path / "p", z, x, teacher_config={"data": "moons"}, heldout=100)
    run_dir = train(method="reflow", pairs=str(folder), steps=4, width=16, depth=1, out=str(tmp_path / "r"),
                    log_every=2, ckpt_every=4, progress=False)
    loads = []
    for mod in (data_mod, run_mod):  # every way a command loads a data source
        monkeypatch.setattr(mod, "load_data", lambda *a, _real=mod.load_data, **k: loads.append(a[0]) or _real(*a, **k))
    run = Run.load(run_dir)
    report = evaluate(run, [1], n=80)
    assert loads == ["moons"]  # one eval, one load of its data (the pairs, the teacher block and the scores share it)
    assert report["flow_loss_source"] == "held-out teacher pairs" and "flow_loss_note" not in report
    # the loss the run trains on (pairs (x*, z), never independent noise), on the first 80 held-out pairs
    assert report["flow_loss_heldout"] == pytest.approx(_expected_flow_loss(run, x[500:580], z[500:580]), rel=1e-6)
    assert "(on held-out teacher pairs)" in format_table(report)
    shutil.rmtree(folder)  # pairs gone: held-out data with independent noise, said so
    report = evaluate(run, [1], n=80)
    assert "held-out pairs unavailable" in report["flow_loss_note"]
    assert report["flow_loss_heldout"] == pytest.approx(heldout_flow_loss(run, run.data.reference(80, 0)[0]), rel=1e-12)
    assert "note: held-out pairs unavailable" in format_table(report)


def test_conditional_pair_runs_use_the_labels_of_their_heldout_pairs(tmp_path):
    from straightflow.data import load_data
    from straightflow.data.pairs import PairData
    from straightflow.evaluate import evaluate
    from straightflow.teachers import SamplerTeacher, generate_pairs

    data = load_data("moons")
    folder = tmp_path / "p"
    generate_pairs(SamplerTeacher(lambda z, y: z + 3.0 * y[:, None].float()), 400, folder, (2,), heldout=60,
                   progress=False, manifest={"teacher_config": {"data": "moons"}}, class_names=data.class_names)
    run_dir = train(method="reflow", pairs=str(folder), conditional=True, steps=4, width=16, depth=1,
                    out=str(tmp_path / "r"), log_every=2, ckpt_every=4, progress=False)
    run = Run.load(run_dir)
    report = evaluate(run, [1], n=50)
    pairs = PairData.open(folder)
    hx, hz = pairs.heldout_pairs(max_n=50)
    expected = _expected_flow_loss(run, hx, hz, pairs.heldout_labels(max_n=50))
    assert report["flow_loss_source"] == "held-out teacher pairs"
    assert report["flow_loss_heldout"] == pytest.approx(expected, rel=1e-6)


def test_heun_rows_at_even_nfe_are_labelled_in_every_table(tiny_run):
    from straightflow.evaluate import evaluate, format_table
    from straightflow.experiments.sweep import format_sweep_table
    from straightflow.solvers import HEUN_EVEN_NOTE

    run = Run.load(tiny_run)
    assert (run.sample(10, nfe=4, solver="heun").note == HEUN_EVEN_NOTE
            and run.sample(10, nfe=3, solver="heun").note is None)
    report = evaluate(run, [1, 2, 4, 8], solver="heun", n=50)  # eval's default NFE list keeps working
    assert [r.get("note") for r in report["results"]] == [None, HEUN_EVEN_NOTE, HEUN_EVEN_NOTE, HEUN_EVEN_NOTE]
    table = format_table(report).splitlines()
    rows = [line for line in table if line.strip().startswith("heun")]
    assert [line.endswith("*") for line in rows] == [False, True, True, True]
    assert f"* {HEUN_EVEN_NOTE}" in table
    sweep = {"quality_metric": "w2", "nfe": [1, 2, 4, 8], "data": "moons", "steps": 4, "batch_size": 64,
             "solver": "heun", "n": 50, "runs": [{"beta": 1.0, "method": "curvature", "report": report}]}
    md = format_sweep_table(sweep)
    assert "| w2 NFE 1 | w2 NFE 2 * |" in md and md.endswith(f"* {HEUN_EVEN_NOTE}")


def test_eval_reports_w2_notes_in_its_rows_and_tables(tiny_run, monkeypatch):
    from straightflow.evaluate import evaluate, format_table
    from straightflow.metrics import distances

    monkeypatch.setattr(distances, "W2_MAX_ENTRIES", 30 * 30)
    report = evaluate(Run.load(tiny_run), [1, 2], n=60)
    note = "w2 on a seeded subsample of 30 of 60 x 30 of 60 points (exact W2 is limited to 900 cost entries)"
    assert [r["w2_note"] for r in report["results"]] == [note, note] and report["w2_floor_note"] == note
    table = format_table(report)
    assert "w2_note" not in table.splitlines()[2]  # a footnote, not a column
    assert (all(line.endswith("*") for line in table.splitlines()[3:5]) and f"* {note}" in table
            and f"note: {note}" in table)


def _tiny_state(value: float):
    w = {"w": torch.full((3,), value)}
    return w, {"w": torch.full((3,), -value)}, {"step": 10, "value": torch.tensor(value)}


def _loadable_step(run):
    """The latest checkpoint, loaded completely: (step, value) or None."""
    from straightflow.checkpoint import load_checkpoint_weights, load_train_state, read_meta

    ckpt = latest_checkpoint(run)
    if ckpt is None:
        return None
    model, ema = load_checkpoint_weights(ckpt, "model.safetensors"), load_checkpoint_weights(ckpt, "ema.safetensors")
    state = load_train_state(ckpt)
    value = float(model["w"][0])
    assert float(ema["w"][0]) == -value and float(state["value"]) == value
    return read_meta(ckpt)["step"], value


def test_resaving_a_step_keeps_a_complete_checkpoint_of_it_whatever_call_crashes(tmp_path, monkeypatch):
    """Crash at each rename / delete of a re-save at an existing step: that step stays loadable, old or new."""
    import shutil

    from straightflow.checkpoint import save_checkpoint

    real = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree}
    k = 0
    while True:
        k += 1
        run = tmp_path / f"r{k}"
        save_checkpoint(run, 5, *_tiny_state(5.0), {}, keep=2)
        save_checkpoint(run, 10, *_tiny_state(1.0), {}, keep=2)
        calls = []

        def crashing(kind):
            def call(*args, **kwargs):
                calls.append(kind)
                if len(calls) == k:
                    raise OSError(f"simulated crash at call {k} ({kind})")
                return real[kind](*args, **kwargs)
            return call

        monkeypatch.setattr(os, "rename", crashing("rename"))
        monkeypatch.setattr(os, "replace", crashing("replace"))
        monkeypatch.setattr(shutil, "rmtree", crashing("rmtree"))
        try:
            save_checkpoint(run, 10, *_tiny_state(2.0), {}, keep=1)
            crashed = False
        except OSError:
            crashed = True
        finally:
            monkeypatch.setattr(os, "rename", real["rename"])
            monkeypatch.setattr(os, "replace", real["replace"])
            monkeypatch.setattr(shutil, "rmtree", real["rmtree"])
        step, value = _loadable_step(run)
        assert step == 10 and value in (1.0, 2.0), (k, calls)
        if crashed:  # the next save recovers: the step under its final name, nothing half done
            save_checkpoint(run, 10, *_tiny_state(3.0), {}, keep=1)
            assert _loadable_step(run) == (10, 3.0)
        assert [p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")] == ["step-000010"], k
        if not crashed:
            assert value == 2.0 and k > 3
            break


def _overwrite_tail(path, tail: bytes) -> None:
    """Same-size corruption: the last bytes (tensor data) replaced, the header intact."""
    data = path.read_bytes()
    path.write_bytes(data[: -len(tail)] + tail)
    assert len(path.read_bytes()) == len(data)


def test_weights_overwritten_with_the_same_size_are_a_one_line_error_not_nan_samples(tmp_path, capsys):
    run = tmp_path / "r"
    train(data="moons", width=16, depth=1, steps=4, out=str(run), log_every=2, ckpt_every=4, progress=False)
    ckpt = latest_checkpoint(run)
    assert set(json.loads((ckpt / "meta.json").read_text())["sha256"]) == {"model.safetensors", "ema.safetensors"}
    pristine = {name: (ckpt / name).read_bytes() for name in ("model.safetensors", "ema.safetensors")}
    _overwrite_tail(ckpt / "ema.safetensors", b"\xff\xff\xc0\x7f" * 2)  # two float32 NaNs
    with pytest.raises(StraightflowError, match=r"ema.safetensors is corrupt: its sha256 differs"):
        Run.load(run)
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "10", "--out", str(tmp_path / "s.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ema.safetensors is corrupt" in err[0], err
    assert not (tmp_path / "s.npy").exists()
    (ckpt / "ema.safetensors").write_bytes(pristine["ema.safetensors"])
    _overwrite_tail(ckpt / "model.safetensors", b"\x00\x00\x80\x3f")  # a plausible 1.0
    with pytest.raises(StraightflowError, match=r"model.safetensors is corrupt: its sha256 differs"):
        train(out=str(run), steps=8, resume=True)
    (ckpt / "model.safetensors").write_bytes(pristine["model.safetensors"])
    meta = json.loads((ckpt / "meta.json").read_text())
    del meta["sha256"]  # a checkpoint from before checksums were recorded still loads
    (ckpt / "meta.json").write_text(json.dumps(meta))
    assert torch.isfinite(Run.load(run).sample(20, nfe=1).samples).all()
    train(out=str(run), steps=8, resume=True)
    assert json.loads((latest_checkpoint(run) / "meta.json").read_text())["step"] == 8


def _labelled_pairs(folder, n=300, shard_size=128):
    """A pairs folder of 3 shards with x, z and y files, as a conditional teacher writes them."""
    import numpy as np

    from straightflow.data import pairs as pairs_mod

    rng = np.random.default_rng(0)
    z, x = rng.normal(size=(n, 2)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    settings = {"format": pairs_mod.FORMAT_VERSION, "teacher": "", "solver": "", "nfe": 0, "seed": 0, "shape": [2],
                "classes": ["upper", "lower"]}
    folder.mkdir()
    shards = [pairs_mod.write_shard(folder, i, s, z[s : s + shard_size], x[s : s + shard_size], settings, 0,
                                    y[s : s + shard_size])
              for i, s in enumerate(range(0, n, shard_size))]
    pairs_mod.atomic_write(folder / pairs_mod.SETTINGS, json.dumps(settings).encode())
    pairs_mod.write_manifest(folder, settings, shards, 20, shard_size, {"teacher_config": {"data": "moons"}})
    return folder


@pytest.mark.parametrize("victim", ["shard-00001.x.npy", "shard-00002.z.npy", "shard-00000.y.npy"])
def test_a_pairs_shard_overwritten_with_the_same_size_is_refused_before_training(victim, tmp_path, capsys, monkeypatch):
    import numpy as np

    from straightflow.data import pairs as pairs_mod
    from straightflow.data.pairs import PairData

    folder = _labelled_pairs(tmp_path / "p")
    hashed = []
    real_sha = pairs_mod.sha256_file
    monkeypatch.setattr(pairs_mod, "sha256_file", lambda p: hashed.append(p.name) or real_sha(p))
    data = PairData.open(folder, labels=True)
    for _ in range(3):
        data.sample_train(64, torch.Generator().manual_seed(0))
    assert sorted(hashed) == sorted(p.name for p in folder.glob("shard-*.npy"))  # each file once, when first opened
    path = folder / victim
    arr = np.load(path)
    arr.flat[-1] = arr.flat[-1] + 1 if arr.dtype == np.int64 else arr.flat[-1] * 0.5  # a plausible value, same size
    size = path.stat().st_size
    np.save(path, arr)
    assert path.stat().st_size == size
    with pytest.raises(StraightflowError,
                       match=rf"pairs shard {path} is corrupt .*rerun the same `straightflow pairs` command"):
        PairData.open(folder, labels=True)
    capsys.readouterr()
    run = tmp_path / "student"
    assert main(["train", "--method", "reflow", "--pairs", str(folder), "--conditional", "true", "--steps", "5",
                 "--width", "16", "--depth", "1", "--out", str(run), "--progress", "false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and victim in err[0] and "rerun the same `straightflow pairs` command" in err[0], err
    assert latest_checkpoint(run) is None


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path, capsys):
    full, run = tmp_path / "full", tmp_path / "r"
    kw = dict(data="moons", width=16, depth=1, steps=20, log_every=10, ckpt_every=20, progress=False)
    train(out=str(full), **kw)
    train(out=str(run), **kw)
    import shutil

    shutil.rmtree(run / "checkpoints")  # as if stopped after logging step 10, before the first checkpoint
    stats = (run / "stats.jsonl").read_text().splitlines()
    (run / "stats.jsonl").write_text(stats[0] + "\n")
    with pytest.raises(StraightflowError, match="already holds a run; pass --resume"):
        train(out=str(run), **kw)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{run} has no checkpoint yet; training it from step 0 with its saved config" in err, err
    for name in ("model.safetensors", "ema.safetensors"):
        assert (latest_checkpoint(run) / name).read_bytes() == (latest_checkpoint(full) / name).read_bytes()
    assert [json.loads(r)["step"] for r in (run / "stats.jsonl").read_text().splitlines()] == [10, 20]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StraightflowError, match="holds no run"):
        train(out=str(tmp_path / "empty"), resume=True)


class _Ranks:
    """A DistContext stand-in: rank ``rank`` of ``world`` on ``device``; a gather takes the other ranks' objects from
    ``others``."""

    def __init__(self, device, rank=0, world=1, others=()):
        self.device, self.rank, self.world_size, self.others = torch.device(device), rank, world, iter(others)

    def gather_objects(self, obj):
        return [obj if i == self.rank else next(self.others) for i in range(self.world_size)]


def test_checkpoints_hold_and_restore_each_ranks_cuda_rng_state(tmp_path, monkeypatch):
    """No GPU here: torch.cuda's RNG functions are stand-ins; the trainer's save/restore logic is real."""
    from straightflow.training.resume import restore_rng_states, rng_states

    device_states = {0: torch.arange(16, dtype=torch.uint8), 1: torch.arange(16, 32, dtype=torch.uint8)}
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device="cuda": device_states[torch.device(device).index].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device="cuda": restored.append((torch.device(device), state.clone())))
    gen = torch.Generator().manual_seed(5)
    # rank 1 of 2 on cuda:1; rank 0's generator, CPU and CUDA states arrive through the gathers
    ctx = _Ranks("cuda:1", rank=1, world=2, others=[gen.get_state(), torch.get_rng_state(), device_states[0]])
    states = rng_states(ctx, gen)
    assert [torch.equal(s, device_states[i]) for i, s in enumerate(states["cuda_rng"])] == [True, True]
    torch.save({"step": 3, **states}, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)  # plain tensors and lists only
    assert restore_rng_states(loaded, ctx, torch.Generator()) is None
    assert (len(restored) == 1 and restored[0][0] == torch.device("cuda:1")
            and torch.equal(restored[0][1], device_states[1]))
    # a checkpoint without CUDA state (written on the CPU, or by an older version) resumes with a warning
    del loaded["cuda_rng"]
    assert "no CUDA random state" in restore_rng_states(loaded, ctx, torch.Generator())
    # on the CPU nothing of CUDA is touched
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a, **k: pytest.fail("CUDA RNG read on the CPU"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a, **k: pytest.fail("CUDA RNG set on the CPU"))
    cpu = rng_states(_Ranks("cpu"), gen)
    assert "cuda_rng" not in cpu and restore_rng_states(cpu, _Ranks("cpu"), torch.Generator()) is None


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_checkpoints_the_step_reached_and_resume_continues_exactly(sig, status, tmp_path):
    import re
    import signal

    from safetensors.torch import load_file

    from straightflow.checkpoint import list_checkpoints, load_train_state

    run = tmp_path / "R"
    tiny = ["--data", "moons", "--width", "16", "--depth", "1", "--log-every", "10", "--progress", "false"]
    proc = _cli("train", *tiny, "--steps", "100000", "--ckpt-every", "100000", "--out", run)
    try:
        deadline = time.time() + 120
        while not (run / "stats.jsonl").exists() or "\n" not in (run / "stats.jsonl").read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no stats line within 120 s"
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, err
    assert "Traceback" not in err and latest_checkpoint(run) is not None, err
    line = err.strip().splitlines()[-1]
    match = re.fullmatch(r"straightflow: interrupted at step (\d+); checkpoint (step-\d{6}) written; continue with: "
                         r"straightflow train --out (\S+) --resume", line)
    assert match and match.group(3) == str(run), line
    n = int(match.group(1))
    assert match.group(2) == f"step-{n:06d}" and [p.name for p in list_checkpoints(run)] == [match.group(2)]
    assert load_train_state(latest_checkpoint(run))["step"] == n
    resumed = subprocess.run([sys.executable, "-m", "straightflow", "train", "--out", str(run), "--resume",
                              "--steps", str(n + 20), "--progress", "false"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in list_checkpoints(run)] == [f"step-{n:06d}", f"step-{n + 20:06d}"]
    steps = [json.loads(row)["step"] for row in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == n + 20 and [s for s in steps if s > n][0] <= n + 10
    full = tmp_path / "full"  # the same run, never interrupted: bit-identical weights
    train(data="moons", width=16, depth=1, log_every=10, steps=n + 20, ckpt_every=100000, out=str(full), progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(latest_checkpoint(full) / name)), load_file(str(latest_checkpoint(run) / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


class _SignalAt(torch.nn.Module):
    """A velocity net that sends this process ``sig`` during its ``n``-th training forward."""

    def __init__(self, n: int, sig: int):
        super().__init__()
        self.lin, self.n, self.sig, self.calls = torch.nn.Linear(3, 2), n, sig, 0

    def forward(self, x, t):
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                os.kill(os.getpid(), self.sig)
        return self.lin(torch.cat([x, t[:, None]], dim=1))


def test_train_raises_training_interrupted_and_restores_the_signal_handlers(tmp_path):
    import signal
    import threading

    from straightflow import TrainingInterrupted

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    run = tmp_path / "r"
    with pytest.raises(TrainingInterrupted) as info:
        train(data="moons", steps=50, out=str(run), velocity_net=_SignalAt(7, signal.SIGTERM), batch_size=16,
              ckpt_every=20, progress=False)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.exit_status == 143 and info.value.step == 7
    assert info.value.checkpoint == latest_checkpoint(run) and latest_checkpoint(run).name == "step-000007"
    assert {s: signal.getsignal(s) for s in before} == before
    # outside the main thread no handler is installed (Python allows none there), and training still works
    errors = []
    worker = threading.Thread(target=lambda: _catch(errors, lambda: train(data="moons", steps=4,
                                                                          out=str(tmp_path / "t"), width=16, depth=1,
                                                                          ckpt_every=4, log_every=2, progress=False)))
    worker.start()
    worker.join()
    assert errors == [] and latest_checkpoint(tmp_path / "t").name == "step-000004"
    assert {s: signal.getsignal(s) for s in before} == before


def _catch(errors, fn):
    try:
        fn()
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)
