"""``straightflow score``: any samples scored as ``eval`` scores a run's; a student's teacher in eval and on its card;
the sampling defaults shared by ``Run.sample`` and ``sample``; image samples clamped to the data range."""

import json
import shutil

import numpy as np
import pytest

import straightflow as sf
from straightflow.cli.main import main
from straightflow.experiments.pairs import pairs_from_run
from straightflow.training import train

TINY = dict(width=32, depth=2, batch_size=64, log_every=10, progress=False)
QUALITY = ("w2", "energy", "fd", "kid", "precision", "recall")


def _json(capsys, argv) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _same_numbers(a: dict, b: dict) -> None:
    keys = [k for k in a if k in QUALITY or (k.endswith("_floor") and isinstance(a[k], float))]
    assert keys
    for k in keys:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k


@pytest.fixture(scope="module")
def moons_student(tmp_path_factory):
    """A moons teacher, 400 of its pairs (40 held out) and a distill student of them."""
    root = tmp_path_factory.mktemp("score")
    teacher = train(data="moons", steps=20, out=str(root / "teacher"), ckpt_every=20, **TINY)
    pairs = root / "pairs"
    pairs_from_run(teacher, 400, pairs, solver="euler", nfe=4, seed=1, progress=False)
    student = train(method="distill", pairs=str(pairs), steps=10, out=str(root / "student"), ckpt_every=10, **TINY)
    return root, teacher, pairs, student


def test_score_of_a_runs_samples_prints_evals_numbers(moons_student, tmp_path, capsys):
    _, teacher, _, _ = moons_student
    run = sf.load(teacher)
    np.save(tmp_path / "s.npy", run.sample(300, nfe=2, seed=3).samples.numpy())
    scored = _json(capsys, ["score", str(tmp_path / "s.npy"), "--data", "moons", "-n", "300", "--seed", "3"])
    evaluated = _json(capsys, ["eval", str(teacher), "--nfe", "2", "-n", "300", "--seed", "3"])
    _same_numbers(scored, evaluated)
    _same_numbers(scored["results"][0], evaluated["results"][0])
    assert (scored["floor_source"] == evaluated["floor_source"]
            and (scored["n"], scored["n_reference"]) == (evaluated["n"], evaluated["n_reference"]))
    assert "clamped" not in scored  # vectors are never clamped
    capsys.readouterr()
    assert main(["score", str(tmp_path / "s.npy"), "--data", "moons", "-n", "300", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "two-sample floor: w2" in text and f"{scored['results'][0]['w2']:.4g}" in text


def test_a_students_eval_reports_its_teachers_quality_and_score_of_the_pairs_agrees(moons_student, tmp_path, capsys):
    root, _, pairs, student = moons_student
    report = sf.evaluate(sf.load(student), [1], n=40, seed=2)
    block = report["teacher"]
    assert (block["kind"], block["solver"], block["nfe"], block["n"]) == ("run", "euler", 4, 40)
    assert block["which"].startswith("the first 40 of the 40 held-out pairs")
    scored = _json(capsys, ["score", str(pairs), "-n", "40", "--seed", "2"])  # the data comes from the manifest
    _same_numbers(scored["results"][0], block)
    assert "teacher (pairs' x*, euler NFE 4): w2" in sf.format_table(report)
    # the pairs folder gone: a note instead, and the student still evaluates
    moved = tmp_path / "moved"
    shutil.move(str(pairs), moved)
    try:
        gone = sf.evaluate(sf.load(student), [1], n=40, seed=2)
    finally:
        shutil.move(str(moved), pairs)
    assert "teacher" not in gone and "pairs are unavailable" in gone["teacher_note"]


def test_the_card_of_a_student_names_its_teacher_and_its_score(moons_student, tmp_path, capsys):
    _, teacher, _, student = moons_student
    report = _json(capsys, ["eval", str(student), "--nfe", "1", "-n", "40"])
    (student / "eval.json").write_text(json.dumps(report))
    try:
        sf.export(student, tmp_path / "model")
    finally:
        (student / "eval.json").unlink()
    card = (tmp_path / "model" / "README.md").read_text()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["teacher"]["kind"] == "run" and config["teacher"]["source"] == str(teacher.resolve())
    assert f"| teacher | a straightflow run `{teacher.resolve()}` (`euler` at NFE 4, 400 pairs) |" in card
    assert ("Teacher (pairs' x*, euler NFE 4, n = 40, against the same held-out reference): w2 "
            f"{report['teacher']['w2']:.4g}" in card)


def test_run_sample_and_the_sample_command_share_the_default_nfe(moons_student, tmp_path, capsys):
    _, teacher, _, _ = moons_student
    sf.export(teacher, tmp_path / "model", nfe=3)
    for folder, nfe in ((teacher, 1), (tmp_path / "model", 3)):
        run = sf.load(folder)
        assert run.sampling_defaults() == (nfe, None) and run.sample(5).nfe == nfe
        capsys.readouterr()
        assert main(["sample", str(folder), "-n", "5", "--out", str(tmp_path / "s.npy")]) == 0
        assert f"NFE {nfe})" in capsys.readouterr().out
        np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), run.sample(5).samples.numpy())


def test_image_samples_are_clamped_on_output_and_in_eval_unless_raw(tmp_path, capsys):
    from image_helpers import TINY_UNET, write_folder

    data = write_folder(tmp_path / "imgs", n=30)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "8",
                 "--progress", "false", "--lr", "0.05", *TINY_UNET]) == 0
    run = sf.load(tmp_path / "run")
    raw = run.sample(20, seed=1).samples
    assert float(raw.abs().max()) > 1  # an untrained net leaves the data range
    for flags, expected in (([], raw.clamp(-1, 1)), (["--raw"], raw)):
        assert main(["sample", str(tmp_path / "run"), "-n", "20", "--seed", "1", "--out", str(tmp_path / "s.npy"),
                     *flags]) == 0
        np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected.numpy())
    for clamp in (True, False):  # the API of eval --raw and score --raw; curvature of few paths keeps it quick
        evaluated = sf.evaluate(run, [1], n=20, seed=1, curvature_n=4, clamp=clamp)
        scored = sf.score(raw, str(data), seed=1, clamp=clamp)
        assert evaluated["clamped"] is clamp and scored["clamped"] is clamp
        _same_numbers(scored["results"][0], evaluated["results"][0])
        _same_numbers(scored, evaluated)
        header = sf.format_table(evaluated).splitlines()[0]
        assert ("samples clamped to [-1, 1]" if clamp else "samples unclamped (--raw)") in header


def test_score_per_class_with_labels(unbalanced_points, tmp_path):
    from straightflow.data import load_data

    data = load_data(str(unbalanced_points), {"label_column": "kind"})
    x, y = data.floor_reference(60, 5)
    report = sf.score(x.numpy(), str(unbalanced_points), labels=y.numpy(), data_options={"label_column": "kind"})
    row = report["results"][0]
    assert report["classes"] == ["a", "b"] and [c["class"] for c in row["per_class"]] == ["a", "b"]
    assert row["knn_accuracy"] > 0.9 and "per class (knn accuracy)" in sf.format_table(report)


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "x.npy", np.zeros((10, 3))), "have shape (10, 3); the data's samples are N x 2"),
    (lambda d: np.save(d / "x.npy", np.full((10, 2), np.nan)), "contain non-finite values"),
    (lambda d: None, "does not exist"),
    (lambda d: (np.save(d / "x.npy", np.zeros((10, 2))), np.save(d / "y.npy", np.zeros(9, dtype=int))), "labels in"),
])
def test_bad_score_input_is_one_line_and_exit_2(tmp_path, capsys, make, message, unbalanced_points):
    make(tmp_path)
    labels = ["--labels", str(tmp_path / "y.npy"), "--label-column", "kind"] if (tmp_path / "y.npy").exists() else []
    data = str(unbalanced_points) if labels else "moons"
    capsys.readouterr()
    assert main(["score", str(tmp_path / "x.npy"), "--data", data, *labels]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("straightflow: error:") and message in err and len(err.splitlines()) == 1
