"""Portable models (docs/portable.md): runs sample without their training data, `export` writes a
self-contained folder that `sf.load` and `straightflow sample` read, broken exports are one-line errors."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import straightflow as sf
from straightflow.checkpoint import latest_checkpoint
from straightflow.cli.main import main
from straightflow.data import PointCloud, StoredSource, load_data
from straightflow.errors import StraightflowError
from straightflow.export import export, read_eval_report

QUICK = dict(width=32, depth=2, batch_size=64, log_every=10, ckpt_every=30, progress=False, steps=30)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def fresh_python(code: str, *args) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter that imports this tree's straightflow."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)


def one_line_error(capsys, argv, message):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("straightflow: error: ") and message in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A rectified run on a 3D point cloud whose features have very different offsets and scales."""
    root = tmp_path_factory.mktemp("portable")
    x = np.random.default_rng(0).normal(size=(300, 3)) * [1.0, 5.0, 0.1] + [3.0, 0.0, -2.0]
    np.save(root / "points.npy", x)
    run_dir = sf.train(data=str(root / "points.npy"), out=str(root / "run"), seed=1, **QUICK)
    return root, Path(run_dir)


# ---------------------------------------------------------------- the sampling state
def test_every_checkpoint_records_the_sampling_state(points_run):
    root, run_dir = points_run
    meta = json.loads((latest_checkpoint(run_dir) / "meta.json").read_text())
    data = PointCloud(root / "points.npy")
    assert meta["sampling"] == {**data.sampling_state(), "prior": "standard"}
    assert meta["sampling"]["normalization"]["shift"] == data.mean.tolist()


def test_a_student_on_teacher_pairs_records_its_base_datas_normalisation(points_run, tmp_path):
    from straightflow.data.pairs import PairData, write_pair_folder

    root, _ = points_run
    z = np.random.default_rng(1).normal(size=(40, 3))
    write_pair_folder(tmp_path / "pairs", z, z * 0.5, teacher_config={"data": str(root / "points.npy")}, heldout=4)
    base = PointCloud(root / "points.npy")
    pairs = PairData.open(tmp_path / "pairs", base=base)
    assert pairs.sampling_state() == base.sampling_state() and pairs.sampling_state()["normalization"] is not None


def test_stored_source_broadcasts_per_channel_and_per_feature():
    per_channel = StoredSource({"name": "lat", "kind": "image", "shape": [2, 3, 3],
                                "normalization": {"shift": [1.0, -2.0], "scale": [2.0, 0.5]}})
    x = torch.randn(4, 2, 3, 3)
    z = per_channel.normalize(x)
    torch.testing.assert_close(z[:, 0], (x[:, 0] - 1.0) / 2.0)
    torch.testing.assert_close(z[:, 1], (x[:, 1] + 2.0) / 0.5)
    torch.testing.assert_close(per_channel.denormalize(z), x)
    per_feature = StoredSource({"name": "v", "kind": "vector", "shape": [2],
                                "normalization": {"shift": [1.0, 2.0], "scale": [3.0, 4.0]}})
    assert torch.equal(per_feature.denormalize(torch.zeros(1, 2)), torch.tensor([[1.0, 2.0]]))
    identity = StoredSource({"name": "digits", "kind": "image", "shape": [1, 8, 8], "class_names": ["0", "1"],
                             "normalization": None})
    assert (identity.normalize(x[:, :1, :, :]) is not None and identity.class_names == ("0", "1")
            and identity.shape == (1, 8, 8))
    with pytest.raises(StraightflowError,
                       match=r"has 3 entries; data of shape \(2, 3, 3\) needs 2 \(per channel\) or 18"):
        StoredSource({"name": "lat", "kind": "image", "shape": [2, 3, 3],
                      "normalization": {"shift": [0, 0, 0], "scale": [1, 1, 1]}})
    with pytest.raises(StraightflowError,
                       match="this model was loaded without its training data: lat could not be loaded .*held-out "
                             "references"):
        per_channel.reference(5)
    with pytest.raises(StraightflowError, match="needed for training batches"):
        per_channel.sample_train(5, torch.Generator())


def test_a_run_loads_and_samples_without_reading_its_data(points_run, monkeypatch):
    root, run_dir = points_run

    def refuse(*args, **kwargs):
        raise AssertionError("the data was read to sample")

    monkeypatch.setattr(PointCloud, "__init__", refuse)
    run = sf.load(run_dir, device="cpu")
    assert isinstance(run.data, StoredSource) and not run.data.loaded
    assert run.sample(50, nfe=2, seed=0).samples.shape == (50, 3)
    assert not run.data.loaded and not run.exported and run.recommended is None


def test_image_folders_are_not_decoded_to_sample(tmp_path, monkeypatch):
    from PIL import Image

    import straightflow.data.images as images

    (tmp_path / "imgs").mkdir()
    for i in range(12):
        Image.fromarray(np.full((6, 6), 20 * i, np.uint8)).save(tmp_path / "imgs" / f"{i:02d}.png")
    run_dir = sf.train(data=str(tmp_path / "imgs"), model="mlp", out=str(tmp_path / "run"), **{**QUICK, "steps": 10})
    reads = []
    original = images._read_image
    monkeypatch.setattr(images, "_read_image", lambda path: reads.append(path) or original(path))
    run = sf.load(run_dir, device="cpu")
    out = run.sample(4, nfe=2, seed=0)
    assert out.samples.shape == (4, 1, 6, 6) and reads == []
    # held-out images: the folder, read once, on demand
    assert run.data.reference(2)[0].shape == (2, 1, 6, 6) and len(reads) == 12


# ---------------------------------------------------------------- export, the data deleted, a fresh process
SAMPLE_CODE = """
import sys, numpy as np, straightflow as sf
run = sf.load(sys.argv[1], device="cpu")
np.save(sys.argv[2], run.sample(256, nfe=4, seed=7).samples.numpy())
print(type(run.data).__name__, run.data.loaded)
"""


def test_export_samples_the_same_numbers_in_a_fresh_process_after_the_data_is_deleted(points_run, tmp_path, capsys):
    root, run_dir = points_run
    before = sf.load(run_dir, device="cpu").sample(256, nfe=4, seed=7).samples
    # samples come back in the file's units (the saved normalisation is applied)
    assert abs(float(before[:, 0].mean()) - 3.0) < 1.5 and abs(float(before[:, 2].mean()) + 2.0) < 0.5
    result = export(run_dir, tmp_path / "model")
    assert (result.step == 30
            and sorted(p.name for p in (tmp_path / "model").iterdir())
            == ["README.md", "config.json", "model.safetensors"])
    # a run saved before the sampling state was recorded still loads its data, as before
    legacy = tmp_path / "legacy"
    shutil.copytree(run_dir, legacy)
    meta_path = latest_checkpoint(legacy) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["sampling"]
    meta_path.write_text(json.dumps(meta))
    legacy_run = sf.load(legacy, device="cpu")
    assert isinstance(legacy_run.data, PointCloud) and torch.equal(legacy_run.sample(256, nfe=4, seed=7).samples,
                                                                   before)

    data_file = root / "points.npy"
    saved = data_file.read_bytes()
    data_file.unlink()
    try:
        proc = fresh_python(SAMPLE_CODE, tmp_path / "model", tmp_path / "after.npy")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["StoredSource", "False"]
        assert torch.equal(torch.from_numpy(np.load(tmp_path / "after.npy")), before)
        # the run directory samples without its data too, the command line from the export
        assert torch.equal(sf.load(run_dir, device="cpu").sample(256, nfe=4, seed=7).samples, before)
        assert main(["sample", str(tmp_path / "model"), "-n", "256", "--seed", "7",
                     "--out", str(tmp_path / "cli.npy")]) == 0
        assert "(euler, NFE 4)" in capsys.readouterr().out  # the export's recommended NFE is sample's default
        assert np.array_equal(np.load(tmp_path / "cli.npy"), before.numpy())
        # what needs the data says so, in one line
        one_line_error(capsys, ["eval", tmp_path / "model", "-n", "50"],
                       f"this model was loaded without its training data: {data_file} could not be loaded")
        one_line_error(capsys, ["eval", run_dir, "-n", "50"], "held-out references; sampling works without it")
        with pytest.raises(StraightflowError, match="does not exist"):
            sf.load(legacy)
    finally:
        data_file.write_bytes(saved)


def test_export_config_and_model_card(points_run, tmp_path):
    root, run_dir = points_run
    export(run_dir, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (config["format"] == "straightflow-export" and config["format_version"] == 1
            and config["straightflow_version"] == sf.__version__)
    assert config["method"] == "rectified" and config["default_solver"] == "euler" and config["step"] == 30
    assert config["recommended"] == {"solver": "euler", "nfe": 4,
                                     "source": "the rectified method's default; no quality measured at this step"}
    assert config["sampling"]["normalization"] == PointCloud(root / "points.npy").normalization_state()
    assert config["train_config"]["width"] == 32 and config["velocity_parameters"] == config["parameters"] > 0
    card = (tmp_path / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: straightflow\ntags:\n- straightflow\n")
    assert "# rectified on points.npy" in card and f"{config['velocity_parameters']:,} parameters" in card
    assert "No quality table" in card and "straightflow eval RUN --nfe 1,2,4,8" in card
    # a second export replaces the first in place
    assert export(run_dir, tmp_path / "model", nfe=2).recommended["nfe"] == 2
    assert json.loads((tmp_path / "model" / "config.json").read_text())["recommended"]["source"] == "given at export"


def test_eval_json_gives_the_card_its_quality_table_and_the_recommended_nfe(points_run, tmp_path):
    root, run_dir = points_run
    report = sf.evaluate(sf.load(run_dir, device="cpu"), [1, 2, 8], n=200)
    (run_dir / "eval.json").write_text(json.dumps(report))
    try:
        config = json.loads((export(run_dir, tmp_path / "model").folder / "config.json").read_text())
        card = (tmp_path / "model" / "README.md").read_text()
    finally:
        (run_dir / "eval.json").unlink()
    w2 = {r["nfe"]: r["w2"] for r in report["results"]}
    best = min(w2.values())
    expected = min(k for k, v in w2.items() if v <= best + 0.1 * best)
    assert config["recommended"]["nfe"] == expected and config["recommended"]["source"].startswith("eval.json")
    assert ("| solver | NFE | w2 | energy |" in card and f"| euler | 8 | {w2[8]:.4g} |" in card
            and "Two-sample floor" in card)
    # sweep's cache format is read too; a file that is no report is said so
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "eval.json").write_text(json.dumps({"key": {}, "report": report}))
    assert read_eval_report(tmp_path / "r")[0] == report
    (tmp_path / "r" / "eval.json").write_text("[1, 2]")
    assert read_eval_report(tmp_path / "r") == (None, "eval.json is not an eval report (no results rows)")


# ---------------------------------------------------------------- class-conditional
def test_a_conditional_export_keeps_its_class_names_and_samples_a_named_class(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = np.array(["alpha", "beta", "gamma"])
    y = rng.integers(0, 3, 240)
    x = rng.normal(size=(240, 2)) * 0.3 + np.stack([y * 4.0, -y * 2.0], 1)
    path = tmp_path / "pts.csv"
    path.write_text("x,y,species\n" + "".join(f"{a:.5f},{b:.5f},{names[c]}\n" for (a, b), c in zip(x, y)))
    run_dir = sf.train(data=str(path), label_column="species", conditional=True, out=str(tmp_path / "run"), **QUICK)
    export(run_dir, tmp_path / "model")
    before = sf.load(run_dir, device="cpu").sample(64, nfe=2, seed=3, classes="beta")
    path.rename(tmp_path / "away.csv")
    run = sf.load(tmp_path / "model", device="cpu")
    assert run.class_names == ("alpha", "beta", "gamma") and run.conditional
    out = run.sample(64, nfe=2, seed=3, classes="beta")
    assert torch.equal(out.labels, torch.ones(64, dtype=torch.long)) and torch.equal(out.samples, before.samples)
    assert main(["sample", str(tmp_path / "model"), "--class", "gamma", "-n", "10",
                 "--out", str(tmp_path / "g.npy")]) == 0
    assert np.load(tmp_path / "g.labels.npy").tolist() == [2] * 10
    with pytest.raises(StraightflowError, match="unknown class 'delta': this run's classes are alpha, beta, gamma"):
        run.sample(4, classes="delta")
    # the data back with other classes: sampling keeps the saved names, whatever needs the data refuses it
    path.write_text((tmp_path / "away.csv").read_text().replace("gamma", "delta"))
    run = sf.load(tmp_path / "model", device="cpu")
    assert run.sample(4, nfe=1, classes="gamma").labels.tolist() == [2] * 4
    with pytest.raises(StraightflowError,
                       match=r"was trained on classes \['alpha', 'beta', 'gamma'\] but .* now has \['alpha', "
                             r"'beta', 'delta'\]"):
        sf.evaluate(run, [1], n=50)


def test_an_export_is_a_teacher_its_class_frequencies_and_weights_travel_with_it(tmp_path, capsys, unbalanced_points):
    """Pairs from an export whose data is gone draw classes 80/20 as the data did; a student starts from the export's
    weights."""
    from safetensors.torch import load_file

    path = unbalanced_points
    run_dir = sf.train(data=str(path), label_column="kind", conditional=True, out=str(tmp_path / "run"),
                       **{**QUICK, "steps": 60})
    frequencies = load_data(str(path), {"label_column": "kind"}).class_probs()
    model = tmp_path / "model"
    export(run_dir, model)
    path.rename(tmp_path / "away.csv")
    stored = sf.load(model, device="cpu").data
    torch.testing.assert_close(stored.class_probs().float(), frequencies.float())
    assert not stored.loaded  # read from config.json, not from the data
    assert main(["pairs", str(model), "-n", "400", "--out", str(tmp_path / "pairs"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["class_probs"] == pytest.approx(frequencies.tolist(), abs=1e-6)
    assert 0.1 < float(np.load(tmp_path / "pairs" / "shard-00000.y.npy").mean()) < 0.3  # 80/20, not 50/50
    # the student (distill, lr ~ 0) starts from the export's weights
    (tmp_path / "away.csv").rename(path)
    student = sf.train(method="distill", pairs=str(tmp_path / "pairs"), steps=2, lr=1e-12, out=str(tmp_path / "d"),
                       batch_size=64, progress=False)
    exported = load_file(str(model / "model.safetensors"))
    s_ema = load_file(str(latest_checkpoint(student) / "ema.safetensors"))
    assert all(torch.equal(s_ema[k], v) for k, v in exported.items() if k.startswith("velocity."))
    # another step exported into the teacher's folder since the pairs were made: refused, nothing trained
    export(run_dir, model, checkpoint=30)
    one_line_error(capsys,
                   ["train", "--method", "distill", "--pairs", tmp_path / "pairs", "--steps", "2",
                    "--out", tmp_path / "d2"],
                   "now holds step 30, but the pairs were made from its step 60")
    assert not (tmp_path / "d2" / "checkpoints").exists()
    # a corrupt class_probs in config.json is a one-line error
    config = json.loads((model / "config.json").read_text())
    config["sampling"]["class_probs"] = [0.5]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(StraightflowError, match="class_probs must hold 2 non-negative weights"):
        sf.load(model, device="cpu")
    # a run saved before the frequencies were recorded still exports with its data gone, without them
    path.rename(tmp_path / "away.csv")
    for meta_path in (Path(run_dir) / "checkpoints").glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        del meta["sampling"]["class_probs"]
        meta_path.write_text(json.dumps(meta))
    export(run_dir, tmp_path / "old")
    assert "class_probs" not in json.loads((tmp_path / "old" / "config.json").read_text())["sampling"]
    one_line_error(capsys, ["pairs", tmp_path / "old", "-n", "10", "--out", tmp_path / "p-old", "--quiet"],
                   "it is needed for the class frequencies")


# ---------------------------------------------------------------- broken exports, refused exports
def _break(folder: Path, how: str) -> str:
    """Damage an export folder one way; returns what the error must say."""
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    config = json.loads(cfg_path.read_text())
    if how == "not json":
        cfg_path.write_text("{ not json")
        return "config.json is corrupt"
    if how == "other format":
        cfg_path.write_text(json.dumps({**config, "format": "something-else"}))
        return "is not a straightflow export (its format is 'something-else'"
    if how == "newer format":
        cfg_path.write_text(json.dumps({**config, "format_version": 99}))
        return "has format_version 99; this straightflow reads 1 and older: upgrade straightflow"
    if how == "wrong width":
        cfg_path.write_text(json.dumps({**config, "train_config": {**config["train_config"], "width": 48}}))
        return "does not match this run's model: shape mismatch"
    if how == "unknown key":
        cfg_path.write_text(json.dumps({**config, "train_config": {**config["train_config"], "widht": 48}}))
        return "unknown config key 'widht'"
    if how == "bad normalisation":
        sampling = {**config["sampling"], "normalization": {"shift": [0.0, 0.0], "scale": [1.0, 1.0]}}
        cfg_path.write_text(json.dumps({**config, "sampling": sampling}))
        return "the normalisation has 2 entries; data of shape (3,) needs 3"
    if how == "missing weights":
        weights.unlink()
        return "exported weights file"
    if how == "tampered weights":
        data = bytearray(weights.read_bytes())
        data[-4] ^= 0xFF
        weights.write_bytes(bytes(data))
        return "its sha256 differs from the one recorded in config.json"
    if how == "missing config":
        cfg_path.unlink()
        return "is not a run directory (no config.yaml) nor an exported model (no config.json)"
    raise ValueError(how)


BREAKS = ["not json", "other format", "newer format", "wrong width", "unknown key", "bad normalisation",
          "missing weights", "tampered weights", "missing config"]


def test_broken_exports_are_one_line_errors(points_run, tmp_path, capsys):
    root, run_dir = points_run
    export(run_dir, tmp_path / "good")
    for how in BREAKS:
        folder = tmp_path / how.replace(" ", "-")
        shutil.copytree(tmp_path / "good", folder)
        message = _break(folder, how)
        line = one_line_error(capsys, ["sample", folder, "-n", "5", "--out", tmp_path / "s.npy"], message)
        assert "Traceback" not in line
        with pytest.raises(StraightflowError, match=None):
            sf.load(folder)
    assert not (tmp_path / "s.npy").exists()


def test_refused_exports(points_run, tmp_path, capsys):
    root, run_dir = points_run
    empty = tmp_path / "empty"
    empty.mkdir()
    from straightflow.config import TrainConfig, save_config

    save_config(TrainConfig(data="moons", out=str(empty)), empty / "config.yaml")
    one_line_error(capsys, ["export", empty, "--out", tmp_path / "x"],
                   f"{empty} has no checkpoint yet: nothing to export")
    custom = tmp_path / "custom"
    custom.mkdir()
    save_config(TrainConfig(data="moons", model="custom", out=str(custom)), custom / "config.yaml")
    one_line_error(capsys, ["export", custom, "--out", tmp_path / "x"],
                   "was trained with a user's own velocity module (model: custom): an export holds built-in "
                   "networks only")
    one_line_error(capsys, ["export", run_dir, "--out", tmp_path / "x", "--checkpoint", "999"],
                   "has no checkpoint of step 999 (checkpoints: step-000030)")
    one_line_error(capsys, ["export", tmp_path, "--out", tmp_path / "x"], "is not a run directory (no config.yaml)")
    one_line_error(capsys, ["export", run_dir, "--out", run_dir], "is a run directory; give a new folder")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text("{}")
    one_line_error(capsys, ["export", run_dir, "--out", tmp_path / "foreign"],
                   "holds a config.json that is not a straightflow export")
    assert not (tmp_path / "x").exists() and (tmp_path / "foreign" / "config.json").read_text() == "{}"
    assert main(["export", str(run_dir), "--out", str(tmp_path / "x"), "--checkpoint", "30"]) == 0
    assert "step 30 exported to" in capsys.readouterr().out
    one_line_error(capsys, ["export", tmp_path / "x", "--out", tmp_path / "y"],
                   "is already an exported model; export takes a run directory")
    with pytest.raises(StraightflowError, match="holds one set of weights"):
        sf.load(tmp_path / "x", checkpoint="step-000030")


def test_load_data_of_an_export_matches_the_saved_normalisation(points_run, tmp_path):
    """The lazily loaded data is the one the model was trained on: same split, same normalisation."""
    root, run_dir = points_run
    export(run_dir, tmp_path / "model")
    run = sf.load(tmp_path / "model", device="cpu")
    ref, _ = run.data.reference(20, seed=0)
    assert run.data.loaded
    real = load_data(str(root / "points.npy"))
    assert (torch.equal(ref, real.reference(20, seed=0)[0])
            and math.isclose(float(run.data.normalize(ref).std()), float(real.normalize(ref).std())))


def test_an_export_leaves_data_root_and_download_to_the_machine_that_evaluates_it(tmp_path):
    run_dir = sf.train(data="moons", data_root=str(tmp_path / "my-datasets"), download=True, out=str(tmp_path / "run"),
                       **QUICK)
    # the run directory keeps the trainer's settings
    assert sf.load(run_dir).cfg.data_root == str(tmp_path / "my-datasets")
    export(run_dir, tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())["train_config"]
    assert saved["data_root"] == "" and saved["download"] is False
    run = sf.load(tmp_path / "model", device="cpu")
    assert run.cfg.data_root == "" and run.cfg.download is False
