"""Built-in 2D sets and user point clouds."""

import numpy as np
import pytest
import torch

from straightflow.data import BUILTIN_2D, PointCloud, load_data
from straightflow.errors import StraightflowError


@pytest.mark.parametrize("name", sorted(BUILTIN_2D))
def test_builtin_sets_are_seeded_2d_and_fresh(name):
    src = load_data(name)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    (a, ya), (b, yb) = src.sample_train(500, g1), src.sample_train(500, g2)
    assert a.shape == (500, 2) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert ya.shape == (500,) and ya.dtype == torch.int64 and torch.equal(ya, yb)
    assert not torch.equal(a, src.sample_train(500, g1)[0])  # unlimited fresh samples
    assert not torch.equal(src.reference(100)[0], src.floor_reference(100)[0])


def test_two_gaussians_matches_the_paper_toy():
    x, _ = load_data("two-gaussians").sample_train(20000, torch.Generator().manual_seed(0))
    left, right = x[x[:, 0] < 0], x[x[:, 0] > 0]
    torch.testing.assert_close(left.mean(0), torch.tensor([-8.0, 8.0]), atol=0.1, rtol=0)
    torch.testing.assert_close(right.mean(0), torch.tensor([8.0, 8.0]), atol=0.1, rtol=0)
    torch.testing.assert_close(right.var(0), torch.tensor([3.0, 0.1]), atol=0.15, rtol=0)


def test_point_cloud_npy_any_dimension(tmp_path):
    arr = np.random.default_rng(0).normal(size=(500, 5)) * 3 + 10
    np.save(tmp_path / "pts.npy", arr)
    src = load_data(str(tmp_path / "pts.npy"))
    assert src.shape == (5,)
    assert src.heldout.shape == (100, 5)
    x, y = src.sample_train(2000, torch.Generator().manual_seed(0))
    assert y is None
    assert abs(float(x.mean())) < 0.2 and abs(float(x.std()) - 1) < 0.1  # normalised
    torch.testing.assert_close(src.denormalize(src.normalize(src.heldout)), src.heldout)
    # fixed split: the same file splits the same way
    torch.testing.assert_close(PointCloud(tmp_path / "pts.npy").heldout, src.heldout)


def test_point_cloud_csv_with_header(tmp_path):
    rows = "\n".join(f"{i},{i * 2.0},{-i}" for i in range(50))
    (tmp_path / "pts.csv").write_text("a,b,c\n" + rows + "\n")
    src = load_data(str(tmp_path / "pts.csv"))
    assert src.shape == (3,) and src.heldout.shape[0] + src.train.shape[0] == 50


@pytest.mark.parametrize(
    "content, message",
    [
        (np.array([[1.0, np.nan]] * 20), "non-finite"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((20, 2, 2, 2, 2)), "shape"),
        (np.zeros((3, 2)), "at least 10"),
    ],
)
def test_bad_point_clouds_raise_one_line_errors(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(StraightflowError, match=message) as err:
        load_data(str(tmp_path / "bad.npy"))
    assert "\n" not in str(err.value)


def test_unknown_name_and_missing_file():
    with pytest.raises(StraightflowError, match="unknown data 'mooons'"):
        load_data("mooons")
    with pytest.raises(StraightflowError, match="does not exist"):
        load_data("/nonexistent/points.npy")


def test_empty_csv(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(StraightflowError, match="empty"):
        load_data(str(tmp_path / "e.csv"))


def test_a_validation_split_is_carved_from_the_training_rows_and_never_overlaps_the_heldout_split(tmp_path):
    """with_validation: the carved rows leave training, the held-out split is untouched, the normalisation stays."""
    from straightflow.data import DataOptions, load_data

    rng = np.random.default_rng(1)
    path = tmp_path / "pts.npy"
    np.save(path, rng.normal(size=(300, 4)) * [1.0, 3.0, 0.2, 5.0])
    full = load_data(str(path), DataOptions())
    carved = load_data(str(path), DataOptions(validation_fraction=0.25, split_seed=0))
    rows = lambda x: {tuple(r) for r in x.tolist()}  # noqa: E731
    (val, val_y), (held, _) = carved.validation(10_000), carved.reference(10_000)
    assert val_y is None
    train_rows = rows(carved.denormalize(carved.train))
    assert val.shape[0] == 60 and carved.train.shape[0] == 180 and full.train.shape[0] == 240
    assert not rows(val) & train_rows and not rows(val) & rows(held)
    assert rows(val) | train_rows == rows(full.denormalize(full.train))  # carved out of the training rows, nothing lost
    assert torch.equal(held, full.reference(10_000)[0]) and carved.normalization_state() == full.normalization_state()
    with pytest.raises(StraightflowError, match="has no validation split"):
        full.validation(5)
    toy = load_data("moons", DataOptions(validation_fraction=0.1))
    assert not torch.equal(toy.validation(100, 0)[0], toy.reference(100, 0)[0])  # its own stream, not eval's reference
    with pytest.raises(StraightflowError, match="validation_fraction must be in"):
        load_data("moons", DataOptions(validation_fraction=1.0))


def test_a_loaded_run_and_teacher_pairs_pass_the_validation_split_through(tmp_path):
    """A run's stored data and a pairs folder serve their base data's validation draws (generated data: its own
    stream)."""
    import straightflow as sf
    from straightflow.data import DataOptions

    run = sf.load(sf.train(data="moons", steps=2, width=8, depth=1, batch_size=16, progress=False,
                           out=str(tmp_path / "r")))
    expected, labels = load_data("moons", DataOptions(validation_fraction=0.1)).validation(50, 3)
    got, got_labels = run.data.validation(50, 3)
    assert torch.equal(got, expected) and torch.equal(got_labels, labels)
