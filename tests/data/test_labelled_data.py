"""Class labels of user data: point clouds with a label column, image folders with one subfolder per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from straightflow.data import DataOptions, PointCloud, load_data
from straightflow.data.images import load_image_folder
from straightflow.errors import StraightflowError


# ---------------------------------------------------------------- point clouds
def labelled_points(n=60, seed=0):
    """Points whose class is a function of the point: class k sits at x0 = 10 * k (k in 0..2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.stack([10.0 * y + rng.uniform(-1, 1, n), rng.normal(size=n)], axis=1)
    return x, y


def class_of(points: torch.Tensor) -> torch.Tensor:
    """The class each point (data units) belongs to, read back from its position."""
    return torch.round(points[:, 0] / 10.0).long()


def check_aligned(src, names=("0", "1", "2")):
    assert src.class_names == tuple(names) and src.num_classes == len(names)
    x, y = src.sample_train(500, torch.Generator().manual_seed(3))
    assert y.dtype == torch.int64
    assert torch.equal(class_of(src.denormalize(x)), y)
    x, y = src.reference(10_000)
    assert torch.equal(class_of(x), y) and x.shape[0] == src.heldout.shape[0]
    x, y = src.reference(5, seed=2)
    assert x.shape[0] == 5 and torch.equal(class_of(x), y)
    x, y = src.floor_reference(7, seed=1)
    assert x.shape[0] == 7 and torch.equal(class_of(x), y)
    x, y = src.floor_reference(10_000)
    assert torch.equal(class_of(x), y)


def test_npy_label_column_is_removed_and_follows_the_split(tmp_path):
    x, y = labelled_points()
    np.save(tmp_path / "pts.npy", np.concatenate([x[:, :1], y[:, None].astype(np.float64), x[:, 1:]], axis=1))
    src = load_data(str(tmp_path / "pts.npy"), DataOptions(label_column="1"))
    assert src.shape == (2,) and src.kind == "vector"
    check_aligned(src)
    # the points are those of the file without the label column, split as an unlabelled file of them would be
    np.save(tmp_path / "plain.npy", x)
    plain = PointCloud(tmp_path / "plain.npy")
    torch.testing.assert_close(src.heldout, plain.heldout)
    torch.testing.assert_close(src.train, plain.train)


def test_labels_do_not_change_the_draw(tmp_path):
    x, y = labelled_points()
    np.save(tmp_path / "pts.npy", np.concatenate([x, y[:, None]], axis=1))
    np.save(tmp_path / "plain.npy", x)
    src = PointCloud(tmp_path / "pts.npy", label_column=2)
    a, none = PointCloud(tmp_path / "plain.npy").sample_train(64, torch.Generator().manual_seed(5))
    b, labels = src.sample_train(64, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert none is None and labels.shape == (64,)


def test_the_validation_split_keeps_its_labels(tmp_path):
    x, y = labelled_points()
    np.save(tmp_path / "pts.npy", np.concatenate([x, y[:, None]], axis=1))
    src = load_data(str(tmp_path / "pts.npy"), DataOptions(label_column="2", validation_fraction=0.25))
    val, labels = src.validation(10_000)
    assert labels.dtype == torch.int64 and torch.equal(class_of(val), labels)
    val, labels = src.validation(5, seed=1)
    assert val.shape[0] == 5 and torch.equal(class_of(val), labels)


def test_class_probs_are_training_frequencies(tmp_path):
    x, y = labelled_points(n=100)
    np.save(tmp_path / "pts.npy", np.concatenate([x, y[:, None]], axis=1))
    src = PointCloud(tmp_path / "pts.npy", label_column="2")
    p = src.class_probs()
    assert p.shape == (3,) and abs(float(p.sum()) - 1) < 1e-6
    counts = torch.bincount(class_of(src.denormalize(src.train)), minlength=3).double()
    torch.testing.assert_close(p.double(), counts / counts.sum(), atol=1e-6, rtol=0)


def test_unlabelled_point_cloud_is_unchanged(tmp_path):
    x, _ = labelled_points()
    np.save(tmp_path / "pts.npy", x)
    src = load_data(str(tmp_path / "pts.npy"))
    assert src.class_names == () and src.num_classes == 0
    for _, y in (src.sample_train(4, torch.Generator().manual_seed(0)), src.reference(4), src.floor_reference(4)):
        assert y is None
    with pytest.raises(StraightflowError, match="label_column"):
        load_data(str(tmp_path / "pts.npy"), require_labels=True)


def write_csv(path, x, labels, header=True):
    lines = ["a,species,b"] if header else []
    lines += [f"{p[0]},{lab},{p[1]}" for p, lab in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_header_name_and_index_agree(tmp_path):
    x, y = labelled_points()
    path = write_csv(tmp_path / "pts.csv", x, y)
    by_name = load_data(str(path), DataOptions(label_column="species"))
    by_index = load_data(str(path), DataOptions(label_column="1"))
    check_aligned(by_name)
    assert by_name.class_names == by_index.class_names
    torch.testing.assert_close(by_name.train, by_index.train)
    assert torch.equal(by_name.labels, by_index.labels) and torch.equal(by_name.heldout_labels, by_index.heldout_labels)


def test_csv_text_labels(tmp_path):
    x, y = labelled_points()
    names = np.array(["setosa", "versicolor", "virginica"])  # sorted, so class k is still names[k]
    check_aligned(load_data(str(write_csv(tmp_path / "pts.csv", x, names[y])), DataOptions(label_column="species")),
                  names)
    # quoted text labels without a header, by index
    check_aligned(load_data(str(write_csv(tmp_path / "q.csv", x, [f'"{n}"' for n in names[y]], header=False)),
                            DataOptions(label_column="1")), names)


def test_integer_labels_sort_numerically(tmp_path):
    x, y = labelled_points()
    values = np.array([2, 10, -1])[y]  # class names sorted numerically: -1, 2, 10
    src = load_data(str(write_csv(tmp_path / "pts.csv", x, values)), DataOptions(label_column="species"))
    assert src.class_names == ("-1", "2", "10")
    _, labels = src.reference(100)
    # -1 -> label 0 (x0 = 20), 2 -> label 1 (x0 = 0), 10 -> label 2 (x0 = 10)
    torch.testing.assert_close(class_of(src.heldout), torch.tensor([2, 0, 1])[labels])


@pytest.mark.parametrize(
    "label_column, content, message",
    [
        ("5", None, "out of range: .* has 3 columns"),
        ("color", None, "'color' is not in the header .*'a', 'species', 'b'"),
        ("species", "noheader", "has no header row"),
        ("1", "float", "row 4 has label '1.5', not an integer class"),
        ("1", "oneclass", "only 1 class"),
        ("1", "empty", "row 3 has an empty label"),
        ("0", "textcell", "row 2 column 3 holds text 'oops'"),
        ("0", "onecol", "only the label column"),
    ],
)
def test_csv_label_errors(tmp_path, label_column, content, message):
    x, y = labelled_points(n=20)
    labels = list(y)
    header = content != "noheader"
    if content == "float":
        labels[2] = 1.5
    elif content == "oneclass":
        labels = [7] * len(labels)
    elif content == "empty":
        labels[1] = ""
    path = write_csv(tmp_path / "bad.csv", x, labels, header=header)
    if content == "textcell":
        lines = path.read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 1)[0] + ",oops"
        path.write_text("\n".join(lines) + "\n")
    if content == "onecol":
        path.write_text("\n".join(str(v) for v in y) + "\n")
    with pytest.raises(StraightflowError, match=message) as err:
        load_data(str(path), DataOptions(label_column=label_column))
    assert "\n" not in str(err.value)


def test_text_in_the_label_column_is_not_a_text_cell_error(tmp_path):
    x, y = labelled_points(n=20)
    path = write_csv(tmp_path / "pts.csv", x, np.array(["a", "b", "c"])[y])
    with pytest.raises(StraightflowError, match="row 2 column 2 holds text"):
        load_data(str(path))  # unlabelled: the text column is bad data, as before
    assert load_data(str(path), DataOptions(label_column="1")).class_names == ("a", "b", "c")


@pytest.mark.parametrize(
    "label_column, content, message",
    [
        ("species", "3col", "is a name, but .* is a .npy file"),
        ("3", "3col", "out of range: .* has 3 columns"),
        ("0", "1col", "only the label column"),
        ("1", "float", "row 0 has label 0.5, not an integer class"),
        ("1", "oneclass", "only 1 class"),
    ],
)
def test_npy_label_errors(tmp_path, label_column, content, message):
    x, y = labelled_points(n=20)
    arr = np.concatenate([x[:, :1], y[:, None], x[:, 1:]], axis=1)
    if content == "1col":
        arr = y.astype(np.float64)
    elif content == "float":
        arr[0, 1] = 0.5
    elif content == "oneclass":
        arr[:, 1] = 4
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(StraightflowError, match=message) as err:
        load_data(str(tmp_path / "bad.npy"), DataOptions(label_column=label_column))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- image folders
COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}


def write_image(path, colour, size=6):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)


def write_class_folder(root, counts=None):
    counts = counts or {"cat": 5, "dog": 4, "eel": 6}
    for name, n in counts.items():
        for i in range(n):
            write_image(root / name / f"{i:02d}.png", COLOURS[name])
    return root


def colour_class(x: torch.Tensor) -> torch.Tensor:
    """Class index of each constant-colour image (the channel that is bright)."""
    return x.mean(dim=(2, 3)).argmax(dim=1)


def test_class_subfolders_give_class_names_and_aligned_labels(tmp_path):
    root = write_class_folder(tmp_path / "imgs")
    (root / "notes.txt").write_text("not an image")  # other files are ignored
    src = load_data(str(root), DataOptions(), require_labels=True)
    assert src.class_names == ("cat", "dog", "eel") and src.shape == (3, 6, 6)
    x, y = src.sample_train(40, torch.Generator().manual_seed(0))
    assert torch.equal(colour_class(x), y)
    x, y = src.reference(100)
    assert torch.equal(colour_class(x), y)
    x, y = src.floor_reference(100)
    assert torch.equal(colour_class(x), y)
    x, y = load_data(str(root), DataOptions(validation_fraction=0.25), require_labels=True).validation(100)
    assert x.shape[0] > 0 and torch.equal(colour_class(x), y)
    p = src.class_probs()
    assert abs(float(p.sum()) - 1) < 1e-6
    torch.testing.assert_close(p.double(),
                               torch.bincount(colour_class(src.train), minlength=3).double() / src.train.shape[0])


def test_labelled_folder_draws_like_the_same_images_unlabelled(tmp_path):
    labelled = write_class_folder(tmp_path / "a")
    flat = tmp_path / "b"
    for f in sorted(labelled.rglob("*.png")):  # same sort order: cat_00, ..., eel_05
        write_image(flat / f"{f.parent.name}_{f.name}", COLOURS[f.parent.name])
    a, b = load_data(str(labelled)), load_data(str(flat))
    assert b.class_names == () and b.labels is None
    torch.testing.assert_close(a.train, b.train)
    (xa, ya), (xb, yb) = (a.sample_train(20, torch.Generator().manual_seed(1)),
                          b.sample_train(20, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(xa, xb)
    assert torch.equal(colour_class(xa), ya) and yb is None


@pytest.mark.parametrize(
    "layout, why",
    [
        ("root", "lies directly in"),
        ("nested", "nested more than one folder deep"),
        ("oneclass", "only one class folder"),
    ],
)
def test_unlabelled_folder_layouts(tmp_path, layout, why):
    root = tmp_path / "imgs"
    if layout == "root":
        write_class_folder(root)
        write_image(root / "stray.png", COLOURS["cat"])
    elif layout == "nested":
        write_class_folder(root)
        write_image(root / "cat" / "deeper" / "x.png", COLOURS["cat"])
    else:
        write_class_folder(root, {"dog": 12})
    src = load_image_folder(root)
    assert src.class_names == () and src.labels is None  # unlabelled, exactly as before
    with pytest.raises(StraightflowError, match=f"images in .* are not in one subfolder per class: .*{why}") as err:
        load_data(str(root), require_labels=True)
    assert "\n" not in str(err.value)


def test_empty_class_folder(tmp_path):
    root = write_class_folder(tmp_path / "imgs")
    (root / "fox").mkdir()
    (root / ".cache").mkdir()  # hidden folders are not classes
    assert load_data(str(root)).class_names == ("cat", "dog", "eel")
    with pytest.raises(StraightflowError, match="class folder fox in .* holds no images") as err:
        load_data(str(root), require_labels=True)
    assert "\n" not in str(err.value)
