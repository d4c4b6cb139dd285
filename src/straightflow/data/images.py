"""Image datasets: ``digits``, image folders, ``.npy`` image arrays, ``mnist``/``cifar10``.

Every image source holds images as float32 tensors of shape (N, C, H, W) in
**[-1, 1]**, which are also the data units (``normalize`` is the identity):
samples written by ``sample --out FILE.npy`` are in [-1, 1]; map them to
8-bit with ``(x + 1) * 127.5``.

Splits are fixed: ``digits``, folders and ``.npy`` arrays are split once into
train and held-out parts (``--heldout-fraction``, ``--split-seed``); ``mnist``
and ``cifar10`` use their official test split as the held-out set.
``reference`` returns held-out images, ``floor_reference`` as many training
images: the Fréchet distance between the two is the metric's floor.

Scaling rules for ``.npy`` arrays: ``uint8`` -> ``x / 127.5 - 1``; floats are
taken as already in [-1, 1] when they lie in it and have negative values,
as [0, 1] images when they lie in [0, 1], as 0..255 images when they lie in
[0, 255]; any other range is an error (scale the file yourself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..errors import StraightflowError
from .base import DataOptions, DataSource, resize_images, split_rows, subset_index
from .stream import ConcatRows, ItemSource, TensorRows, TrainItems, resolve_loader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")



class ImageSource(DataSource):
    """In-memory images in [-1, 1] with a fixed held-out split.

    ``sample_train`` draws indices (and flips, with ``hflip``) from the
    caller's generator on the generator's device, so a resumed run draws the
    same batches; the training tensor lives on the training device (``to``).
    ``labels`` / ``heldout_labels`` (optional, int64 class indices of the two
    splits) let the Fréchet-distance module train a classifier feature net on
    the dataset itself and make the source labelled (conditional training).
    """

    kind = "image"

    def __init__(self, name: str, train: torch.Tensor, heldout: torch.Tensor, labels: torch.Tensor | None = None,
                 hflip: bool = False, key: str | None = None, heldout_labels: torch.Tensor | None = None,
                 class_names: tuple[str, ...] | None = None, loader: str = "memory"):
        if train.dim() != 4 or heldout.dim() != 4:
            raise ValueError("image tensors must be N x C x H x W")
        self.name = name
        self.shape = tuple(train.shape[1:])
        self.train = train.float().contiguous()
        self.heldout = heldout.float().contiguous()
        self.labels = None if labels is None else labels.long()
        self.heldout_labels = None if heldout_labels is None else heldout_labels.long()
        if self.labels is not None and self.heldout_labels is not None:
            k = int(max(self.labels.max(), self.heldout_labels.max())) + 1
            self.class_names = tuple(class_names) if class_names else tuple(str(i) for i in range(k))
        self.hflip = hflip
        self.loader = loader  # "stream": the trainer reads train_dataset() through a DataLoader
        #: identifies the data and its split (cache key of trained feature nets)
        self.key = key or name

    def class_probs(self) -> torch.Tensor:
        counts = torch.bincount(self.labels.cpu(), minlength=self.num_classes).double()
        return counts / counts.sum()

    def to(self, device):
        self.train = self.train.to(device)
        # drawn beside the images, no copy per batch
        self._train_y = None if self.labels is None else self.labels.to(device)
        return self

    def augment(self, x, generator):
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def train_dataset(self, labels=False):
        if labels and not self.class_names:
            raise self._no_labels()
        return TrainItems(TensorRows(self.train.cpu(), self.labels), np.arange(self.train.shape[0]), labels=labels)

    def _draw(self, n, generator):
        dev = generator.device
        idx = torch.randint(0, self.train.shape[0], (n,), generator=generator, device=dev)
        x = self.train[idx.to(self.train.device)].to(dev)
        y = None
        if self.class_names:
            labels = getattr(self, "_train_y", None)
            labels = self.labels if labels is None else labels
            y = labels[idx.to(labels.device)].to(dev)
        return self.augment(x, generator), y

    def sample_train(self, n, generator):
        return self._draw(n, generator)

    def _subset(self, x, y, n, seed):
        idx = subset_index(x.shape[0], n, seed)
        y = y if self.class_names else None
        if idx is None:
            return x.cpu(), None if y is None else y.cpu()
        return x[idx.to(x.device)].cpu(), None if y is None else y[idx.to(y.device)].cpu()

    def reference(self, n, seed=0):
        return self._subset(self.heldout, self.heldout_labels, n, seed)

    def floor_reference(self, n, seed=0):
        return self._subset(self.train, self.labels, n, seed + 1)

    def train_images(self) -> torch.Tensor:
        """All training images (CPU, [-1, 1])."""
        return self.train.cpu()

    def with_validation(self, fraction: float, seed: int) -> "ImageSource":
        """A source training on all but ``fraction`` of the training images (chosen by ``seed``); those are
        :meth:`validation`. The held-out split (``reference``) is unchanged."""
        keep, val = split_rows(self.train.shape[0], fraction, seed, f"the training split of {self.name}", unit="images")
        keep, val = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(val))
        on = self.train.device
        view = ImageSource(self.name, self.train[keep.to(on)], self.heldout,
                           labels=None if self.labels is None else self.labels[keep],
                           hflip=self.hflip, key=f"{self.key}-val{fraction:g}s{seed}",
                           heldout_labels=self.heldout_labels, class_names=self.class_names or None, loader=self.loader)
        view._validation = self.train[val.to(on)].cpu()
        view._validation_labels = None if self.labels is None else self.labels[val]
        return view

    def validation(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        carved = getattr(self, "_validation", None)
        if carved is None:
            return super().validation(n, seed)
        return self._subset(carved, self._validation_labels, n, seed)


def _split(n: int, heldout_fraction: float, split_seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    return split_rows(n, heldout_fraction, split_seed, what, unit="images")


def _opts(options: DataOptions) -> tuple[float, int, bool, int]:
    return options.heldout_fraction, options.split_seed, bool(options.hflip), int(options.image_size or 0)





# ---------------------------------------------------------------- digits
def load_digits_source(options: DataOptions = DataOptions()) -> ImageSource:
    """scikit-learn's 1,797 8x8 digits (0..16 grey levels) scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    heldout_fraction, split_seed, hflip, size = _opts(options)
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, ho = _split(len(x), heldout_fraction, split_seed, "digits")
    x = resize_images(x, size)
    key = f"digits-s{split_seed}-h{heldout_fraction:g}-{x.shape[-1]}px"
    loader = resolve_loader(options.loader, x[tr].numel() * 4, "digits")  # "stream": a DataLoader over the tensor
    return ImageSource("digits", x[tr], x[ho], labels=y[tr], hflip=hflip, key=key, heldout_labels=y[ho], loader=loader)


# ---------------------------------------------------------------- folders
def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise StraightflowError(f"could not read image {path}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _folder_classes(path: Path, files: list[Path], require_labels: bool) -> tuple[str, ...]:
    """The class names of a folder with one subfolder per class (``root/<class>/<image>``), else ().

    With ``require_labels`` a folder of any other layout, or with a class folder
    that holds no images, is a one-line error.
    """
    rel = [f.relative_to(path) for f in files]
    why = ""
    if any(len(r.parts) == 1 for r in rel):
        first = next(r for r in rel if len(r.parts) == 1)
        why = f"{first} lies directly in {path}"
    elif any(len(r.parts) > 2 for r in rel):
        first = next(r for r in rel if len(r.parts) > 2)
        why = f"{first} is nested more than one folder deep"
    names = tuple(sorted({r.parts[0] for r in rel}))
    if not why and len(names) < 2:
        why = f"only one class folder ({names[0]!r}) holds images; need at least 2"
    if why:
        if require_labels:
            raise StraightflowError(f"images in {path} are not in one subfolder per class: {why}")
        return ()
    if require_labels:
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.name not in names:
                raise StraightflowError(f"class folder {sub.name} in {path} holds no images")
    return names


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _image_tensor(im, mode: str) -> torch.Tensor:
    """One PIL image as float32 C x H x W in [-1, 1], converted to ``mode`` ("L" or "RGB")."""
    if im.mode in ("I", "I;16", "F"):  # 16-bit or float grey (Pillow's convert would clip)
        a = np.asarray(im, dtype=np.float64)
        a = a / (65535.0 if im.mode != "F" else max(float(a.max()), 1.0)) * 255.0
    else:
        a = np.asarray(im.convert(mode), dtype=np.float64)
    return torch.from_numpy((a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).astype(np.float32) / 127.5 - 1.0)


def _size_error(path: Path, f, got, first_file, first) -> StraightflowError:
    return StraightflowError(
        f"images in {path} differ in size: {f} is {got[0]}x{got[1]} but {first_file} is {first[0]}x{first[1]}; pass "
        "--image-size N to resize them"
    )


def _image_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StraightflowError(f"image folder {path} is empty: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES[:3])} "
                                "files found")
    return files


def _image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of an image file, reading only its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise StraightflowError(f"could not read image {path}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


class ImageFiles:
    """Rows of an image folder, decoded when read (by the DataLoader's workers when streamed).

    The channel count and, without ``size``, the image size are the first file's: a colour
    image in a grayscale folder, an image of another size or a file that does not decode is
    a one-line error naming it when its batch is read.
    """

    def __init__(self, root: Path, files: list[Path], channels: int, size: int, first_size: tuple[int, int],
                 labels: np.ndarray | None):
        self.root, self.files, self.channels, self.size, self.first_size = (
            str(root), [str(f) for f in files], channels, size, first_size)
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> torch.Tensor:
        f = Path(self.files[i])
        im = _read_image(f)
        if self.channels == 1 and im.mode not in GRAY_MODES:
            raise StraightflowError(f"{f} is a colour image but the first image of {self.root} ({self.files[0]}) is "
                                    "grayscale: a streamed folder takes its channels from its first image")
        if not self.size and im.size != self.first_size:
            raise _size_error(Path(self.root), f, im.size, self.files[0], self.first_size)
        a = _image_tensor(im, "L" if self.channels == 1 else "RGB")
        if a.shape[0] != self.channels:  # 16-bit / float grey in a colour folder
            a = a.expand(self.channels, -1, -1)
        return (resize_images(a[None], self.size)[0] if self.size else a).clamp(-1, 1)

    def read(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.stack([self._decode(int(i)) for i in idx]) if idx.size else torch.empty(0)
        return x, (None if self.labels is None else self.labels[torch.from_numpy(idx)])


def stream_image_folder(path: Path, options: DataOptions, files: list[Path],
                        class_names: tuple[str, ...]) -> ItemSource:
    """An image folder read file by file (``--loader stream``): nothing is decoded up front."""
    heldout_fraction, split_seed, hflip, size = _opts(options)
    mode, first = _image_header(files[0])
    channels = 1 if mode in GRAY_MODES else 3
    labels = None
    if class_names:
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[f.relative_to(path).parts[0]] for f in files], dtype=np.int64)
    rows = ImageFiles(path, files, channels, size, first, labels)
    tr, ho = _split(len(files), heldout_fraction, split_seed, f"image folder {path}")
    w, h = (size, size) if size else first
    key = (f"folder-{path.resolve()}-s{split_seed}-h{heldout_fraction:g}-{w}px"
           + (f"-classes-{'|'.join(class_names)}" if class_names else ""))
    return ItemSource(str(path), "image", (channels, h, w), rows, tr, ho, loader="stream",
                      key=_classifier_key(key, len(tr)), hflip=hflip, class_names=class_names,
                      train_labels=None if labels is None else labels[tr])


def _classifier_key(key: str, n_train: int) -> str:
    """A streamed source trains its classifier feature net on at most CLASSIFIER_MAX_IMAGES images: another cache entry
    then."""
    from .stream import CLASSIFIER_MAX_IMAGES

    return key if n_train <= CLASSIFIER_MAX_IMAGES else f"{key}-first{CLASSIFIER_MAX_IMAGES}"


def _folder_loader(path: Path, options: DataOptions, require_labels: bool) -> DataSource:
    """An image folder in memory (:func:`load_image_folder`) or streamed (:func:`stream_image_folder`), by
    ``options.loader``."""
    files = _image_files(path)
    class_names = _folder_classes(path, files, require_labels)
    mode, first = _image_header(files[0])
    size = int(options.image_size or 0)
    w, h = (size, size) if size else first
    n_train = len(files) - min(len(files) - 1, max(1, int(round(options.heldout_fraction * len(files)))))
    nbytes = n_train * (1 if mode in GRAY_MODES else 3) * w * h * 4
    if resolve_loader(options.loader, nbytes, str(path)) == "memory":
        return load_image_folder(path, options, require_labels=require_labels)
    return stream_image_folder(path, options, files, class_names)


def load_image_folder(path: Path, options: DataOptions = DataOptions(), *, require_labels: bool = False) -> ImageSource:
    """Every PNG/JPEG/... under ``path`` (recursively, sorted by path).

    All grayscale -> 1 channel, otherwise RGB (alpha dropped). Sizes must
    agree unless ``--image-size N`` is given, which resizes every image to
    N x N (antialiased bilinear; aspect ratio not kept).

    A folder with one subfolder per class (every image in ``path/<class>/``,
    at least 2 such subfolders) is labelled: the class names are the sorted
    subfolder names. ``require_labels`` makes any other layout, and a class
    folder without images, an error.
    """
    heldout_fraction, split_seed, hflip, size = _opts(options)
    files = _image_files(path)
    class_names = _folder_classes(path, files, require_labels)
    images = [_read_image(f) for f in files]
    gray = all(im.mode in GRAY_MODES for im in images)
    mode = "L" if gray else "RGB"
    first = images[0].size
    arrays = []
    for f, im in zip(files, images):
        if not size and im.size != first:
            raise _size_error(path, f, im.size, files[0], first)
        a = _image_tensor(im, mode)
        arrays.append(resize_images(a[None], size)[0] if size else a)
    x = torch.stack(arrays).clamp(-1, 1)
    tr, ho = _split(len(x), heldout_fraction, split_seed, f"image folder {path}")
    key = f"folder-{path.resolve()}-s{split_seed}-h{heldout_fraction:g}-{x.shape[-1]}px"
    if not class_names:
        return ImageSource(str(path), x[tr], x[ho], hflip=hflip, key=key)
    index = {name: i for i, name in enumerate(class_names)}
    y = torch.tensor([index[f.relative_to(path).parts[0]] for f in files], dtype=torch.int64)
    key += f"-classes-{'|'.join(class_names)}"  # a classifier feature net cached for this key knows these classes
    return ImageSource(str(path), x[tr], x[ho], labels=y[tr], hflip=hflip, key=key, heldout_labels=y[ho],
                       class_names=class_names)


# ---------------------------------------------------------------- .npy arrays
def _scale_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 127.5 - 1.0
    if not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
        raise StraightflowError(f"{path} holds non-numeric data (dtype {arr.dtype})")
    a = arr.astype(np.float32)
    if not np.isfinite(a).all():
        raise StraightflowError(f"{path} contains non-finite values (NaN or inf)")
    lo, hi = float(a.min()), float(a.max())
    if lo >= -1.0 and hi <= 1.0 and lo < 0:
        return a
    if lo >= 0 and hi <= 1.0:
        return a * 2.0 - 1.0
    if lo >= 0 and hi <= 255.0:
        return a / 127.5 - 1.0
    raise StraightflowError(f"{path} has values in [{lo:.4g}, {hi:.4g}]; image arrays must be uint8, or floats in [-1, "
                            "1], [0, 1] or [0, 255] (--data-kind latent reads any range)")


def load_image_array(path: Path, options: DataOptions = DataOptions()) -> ImageSource:
    """An N x H x W or N x C x H x W (C in 1, 3) image array; N x H x W x C is accepted too."""
    heldout_fraction, split_seed, hflip, size = _opts(options)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise StraightflowError(f"could not read {path}: {exc}") from None
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise StraightflowError(f"{path} has shape {arr.shape}; image arrays must be N x H x W or N x C x H x W with C "
                                "= 1 or 3 (other arrays: --data-kind latent)")
    x = resize_images(torch.from_numpy(np.ascontiguousarray(_scale_array(arr, path))), size)
    tr, ho = _split(len(x), heldout_fraction, split_seed, str(path))
    return ImageSource(str(path), x[tr], x[ho], hflip=hflip,
                       key=f"npy-{path.resolve()}-s{split_seed}-h{heldout_fraction:g}-{x.shape[-1]}px")


def image_path_loader(path: Path, options: DataOptions, *, require_labels: bool = False) -> DataSource | None:
    """Folders and 3-/4-d ``.npy`` arrays are images; None for anything else
    (``require_labels``: see :func:`load_image_folder`)."""
    if path.is_dir():
        return _folder_loader(path, options, require_labels)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:
            return None  # let the point-cloud loader report it
        if arr.ndim in (3, 4):
            from .arrays import image_array_layout, stream_image_array

            layout = image_array_layout(tuple(arr.shape), path)
            c = 1 if layout == "nhw" else (arr.shape[-1] if layout == "nhwc" else arr.shape[1])
            pixels = int(options.image_size) ** 2 if options.image_size else int(np.prod(arr.shape[1:])) // c
            nbytes = round(arr.shape[0] * (1 - options.heldout_fraction)) * c * pixels * 4
            if resolve_loader(options.loader, nbytes, str(path)) == "memory":
                return load_image_array(path, options)
            return stream_image_array(path, options)
    return None


# ---------------------------------------------------------------- torchvision
def _torchvision_source(name: str, options: DataOptions) -> ImageSource:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise StraightflowError(f"--data {name} needs torchvision: pip install 'straightflow[vision]' (or pip install "
                                "torchvision)") from None
    heldout_fraction, split_seed, hflip, size = _opts(options)
    root = Path(options.data_root or cache_dir() / "datasets").expanduser()
    download = bool(options.download)
    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        train, test = cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        if not download:
            raise StraightflowError(f"{name} was not found under {root}; pass --download to fetch it there, or "
                                    "--data-root FOLDER where it is") from None
        raise StraightflowError(f"could not load {name} from {root}: {exc}") from None
    except OSError as exc:
        raise StraightflowError(f"could not load {name} from {root}: {exc}") from None

    def tensor(ds):
        a = np.asarray(ds.data)
        a = a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)
        return resize_images(torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0), size)

    labels = torch.as_tensor(np.asarray(train.targets), dtype=torch.int64)
    test_labels = torch.as_tensor(np.asarray(test.targets), dtype=torch.int64)
    names = tuple(getattr(train, "classes", ()) or ())
    stored = np.asarray(train.data)
    side = size or stored.shape[1]
    nbytes = stored.shape[0] * (1 if stored.ndim == 3 else stored.shape[-1]) * side * side * 4
    if resolve_loader(options.loader, nbytes, name) == "stream":  # uint8 rows, converted batch by batch
        from .arrays import ArrayRows

        layout = "nhw" if stored.ndim == 3 else "nhwc"
        rows = ConcatRows(ArrayRows(stored, layout, "uint8", size, labels.numpy()),
                          ArrayRows(np.asarray(test.data), layout, "uint8", size, test_labels.numpy()))
        n, m = stored.shape[0], len(test.data)
        c = 1 if stored.ndim == 3 else stored.shape[-1]
        return ItemSource(name, "image", (c, side, side), rows, np.arange(n), np.arange(n, n + m), loader="stream",
                          key=_classifier_key(f"{name}-{side}px", n), hflip=hflip,
                          class_names=names or tuple(str(i) for i in range(int(labels.max()) + 1)),
                          train_labels=labels.numpy())
    x_train = tensor(train)
    return ImageSource(name, x_train, tensor(test), labels=labels, hflip=hflip, key=f"{name}-{x_train.shape[-1]}px",
                       heldout_labels=test_labels, class_names=names or None)


def load_mnist(options: DataOptions = DataOptions()) -> ImageSource:
    return _torchvision_source("mnist", options)


def load_cifar10(options: DataOptions = DataOptions()) -> ImageSource:
    return _torchvision_source("cifar10", options)
