"""The teacher-pair folder: noise z and the teacher's deterministic sample x* = Sampler(z).

Pairs are made by :func:`straightflow.teachers.generate_pairs` (any teacher:
a velocity callable solved by our solvers, or someone else's deterministic
sampler) or by ``straightflow pairs``; this module is the folder format and
:class:`PairData`, the pairs as a training data source. Pairs are kept in the
model's (normalised) units, float32, never quantised (``docs/lines.md``).

Folder layout::

    PAIRDIR/settings.json           what the pairs are (teacher, checkpoint, solver, NFE, seed, shape)
    PAIRDIR/shard-00000.z.npy       (count, *shape) float32 noise
    PAIRDIR/shard-00000.x.npy       (count, *shape) float32 teacher samples
    PAIRDIR/shard-00000.y.npy       (count,) int64 class labels (pairs of a conditional teacher only)
    PAIRDIR/shard-00000.json        start, count, sha256 of the arrays (written last)
    PAIRDIR/manifest.json           settings + n, held-out count, shard list (written at the end)

Reproducibility: the noise of pair ``i`` depends only on ``(seed, i)`` (it is
drawn in chunks of :data:`NOISE_CHUNK` pairs, each from its own seeded
generator), never on the batch or shard size. Euler/Heun solve every pair
independently, so x* does not depend on the batch size either (up to the
float rounding of the backend's batched matmuls); RK45 shares one step size
over a batch, so its x* depends on ``--batch-size``.

Resume: every array is written to a temporary name and renamed into place,
and a shard's ``.json`` sidecar (with the arrays' sha256) is written only after
both arrays; a shard whose sidecar matches the settings and whose files match
their checksums is skipped, anything else is regenerated. Under ``torchrun``
shard ``i`` goes to rank ``i % world``; rank 0 writes the manifest after a barrier.

Training reads the shards memory-mapped (:class:`PairData`), so neither
generation nor training holds all pairs in memory; each shard file is checked
against the sha256 in the manifest once, when :class:`PairData` opens it. The last ``heldout`` pairs
are never used for training; they measure the distillation error.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import StraightflowError
from ..files import atomic_write as write_atomically
from ..files import sha256_file
from ..noise import NOISE_CHUNK
from ..priors import DiagonalGaussianPrior, make_prior
from .base import DataSource

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SETTINGS = "settings.json"


# ------------------------------------------------------------------ sizes
def default_shard_size(shape: tuple[int, ...]) -> int:
    """Pairs per shard: each array at most ~32 MiB, between 1,024 and 100,000 pairs."""
    per_pair = 4 * int(np.prod(shape))
    return int(max(NOISE_CHUNK, min(100_000, (32 << 20) // per_pair)))


def default_heldout(n: int) -> int:
    return min(2000, n // 10)


# ------------------------------------------------------------------ files
def atomic_write(path: Path, data: bytes) -> None:
    """:func:`straightflow.files.atomic_write` for a pair folder: finished shards are kept."""
    write_atomically(path, data, "finished shards are kept: rerun the same command to resume")


def _npy_bytes(arr: np.ndarray, dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=dtype), allow_pickle=False)
    return buf.getvalue()


def _shard_names(index: int) -> tuple[str, str, str]:
    stem = f"shard-{index:05d}"
    return f"{stem}.z.npy", f"{stem}.x.npy", f"{stem}.json"


def _labels_name(index: int) -> str:
    return f"shard-{index:05d}.y.npy"


def write_shard(out: Path, index: int, start: int, z: np.ndarray, x: np.ndarray, settings: dict, nfe_used: int,
                y: np.ndarray | None = None) -> dict:
    """Write one shard atomically (``y``: int64 labels of a conditional teacher); the sidecar (written last) marks it
    complete."""
    z_name, x_name, side_name = _shard_names(index)
    zb, xb = _npy_bytes(z), _npy_bytes(x)
    atomic_write(out / z_name, zb)
    atomic_write(out / x_name, xb)
    entry = {
        "index": index, "start": start, "count": int(z.shape[0]), "z": z_name, "x": x_name,
        "z_sha256": hashlib.sha256(zb).hexdigest(), "x_sha256": hashlib.sha256(xb).hexdigest(), "nfe": int(nfe_used),
    }
    if y is not None:
        yb = _npy_bytes(y, np.int64)
        atomic_write(out / _labels_name(index), yb)
        entry.update({"y": _labels_name(index), "y_sha256": hashlib.sha256(yb).hexdigest()})
    atomic_write(out / side_name, json.dumps({"settings": settings, **entry}, indent=1).encode())
    return entry


def complete_shard(out: Path, index: int, start: int, count: int, settings: dict) -> dict | None:
    """The shard's entry if it is complete, matches ``settings`` and its checksums; else None."""
    z_name, x_name, side_name = _shard_names(index)
    try:
        side = json.loads((out / side_name).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if side.get("settings") != settings or side.get("start") != start or side.get("count") != count:
        return None
    files = [("z_sha256", z_name), ("x_sha256", x_name)]
    if "classes" in settings:  # a conditional teacher's shard must hold its labels
        files.append(("y_sha256", _labels_name(index)))
    for key, name in files:
        if not (out / name).is_file() or sha256_file(out / name) != side.get(key):
            return None
    return {k: v for k, v in side.items() if k != "settings"}


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError:
        raise StraightflowError(f"{path.parent} is not a pairs folder (no {path.name}; make one with "
                                "`straightflow pairs`)") from None
    except json.JSONDecodeError as exc:
        raise StraightflowError(f"{what} {path} is corrupt ({exc})") from None
    if not isinstance(data, dict):
        raise StraightflowError(f"{what} {path} is corrupt (not a JSON object)")
    return data


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise StraightflowError(f"pairs folder {folder} does not exist (make one with `straightflow pairs`)")
    if not (folder / MANIFEST).exists() and (folder / SETTINGS).exists():
        raise StraightflowError(f"pairs folder {folder} is incomplete (no manifest.json): rerun the same `straightflow "
                                "pairs` command to finish it")
    manifest = read_json(folder / MANIFEST, "pairs manifest")
    version = manifest.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise StraightflowError(f"pairs manifest {folder / MANIFEST} has format {version}; this straightflow reads "
                                f"format {FORMAT_VERSION}: upgrade straightflow to use it")
    if version != FORMAT_VERSION or not isinstance(manifest.get("shards"), list) or "shape" not in manifest:
        raise StraightflowError(f"pairs manifest {folder / MANIFEST} is not a straightflow pairs manifest (format "
                                f"{FORMAT_VERSION})")
    return manifest


def write_manifest(out: Path, settings: dict, shards: list[dict], heldout: int, shard_size: int, extra: dict) -> dict:
    n = sum(s["count"] for s in shards)
    manifest = {
        **settings, "n": n, "heldout": heldout, "shard_size": shard_size,
        "nfe_used": max((s["nfe"] for s in shards), default=0), **extra, "shards": shards,
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def write_pair_folder(out: str | Path, z, x, teacher_config: dict | None = None, heldout: int | None = None,
                      shard_size: int | None = None, **settings_extra) -> Path:
    """Write given arrays (model units) as a pairs folder, e.g. pairs from an external teacher or a known map.

    ``teacher_config`` (a dict of config fields, at least ``data``) is what a
    student trained with ``--pairs`` inherits; ``settings_extra`` is recorded.
    """
    out = Path(out)
    z = np.asarray(z, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if z.shape != x.shape or z.ndim < 2:
        raise StraightflowError(f"pairs need z and x of the same shape (N, ...), got {z.shape} and {x.shape}")
    out.mkdir(parents=True, exist_ok=True)
    n, shape = z.shape[0], tuple(z.shape[1:])
    shard_size = shard_size or default_shard_size(shape)
    settings = {"format": FORMAT_VERSION, "teacher": "", "teacher_checkpoint": "", "solver": "", "nfe": 0, "seed": 0,
                "shape": list(shape), "dtype": "float32", "space": "model",
                "prior": DiagonalGaussianPrior().describe(), **settings_extra}
    shards = [write_shard(out, i, s, z[s : s + shard_size], x[s : s + shard_size], settings, settings["nfe"])
              for i, s in enumerate(range(0, n, shard_size))]
    atomic_write(out / SETTINGS, json.dumps(settings, indent=1).encode())
    held = default_heldout(n) if heldout is None else heldout
    write_manifest(out, settings, shards, held, shard_size, {"teacher_config": teacher_config or {}})
    return out


def pairs_prior(manifest: dict) -> str:
    """The noise prior the pairs' z were drawn from, as :meth:`DiagonalGaussianPrior.describe` writes it
    (``"N(0, I)"``). Folders written before the prior was recorded: the teacher run's ``prior`` field, else
    N(0, I) (what callables and :func:`write_pair_folder` drew from)."""
    if isinstance(manifest.get("prior"), str):
        return manifest["prior"]
    name = (manifest.get("teacher_config") or {}).get("prior", "standard")
    try:
        return make_prior(str(name), tuple(manifest.get("shape") or ())).describe()
    except StraightflowError:
        return str(name)


def teacher_info(manifest: dict, folder: str | Path) -> dict:
    """What a pairs folder says about its teacher: ``kind`` (run, callable, diffusers, edm; ``given`` for
    :func:`write_pair_folder`'s arrays), ``source`` (its path or spec), ``pairs`` (the folder), ``solver`` and
    ``nfe`` (a sampler's own name and steps, e.g. ``diffusers-ddim``), ``guidance`` for a labelled teacher's pairs."""
    kind = str(manifest.get("teacher_kind") or "given")
    source = str(manifest.get("teacher") or "")
    for prefix in ("callable ", "diffusers ", "edm "):
        if source.startswith(prefix):
            source = source[len(prefix):]
    info = {"kind": kind, "source": source, "pairs": str(Path(folder).resolve()),
            "solver": str(manifest.get("solver") or "given"), "nfe": int(manifest.get("nfe") or 0)}
    if "classes" in manifest:
        info["guidance"] = float(manifest.get("guidance", 1.0))
    return info


def check_pairs_prior(folder: str | Path, manifest: dict, prior: DiagonalGaussianPrior, prior_name: str) -> None:
    """Refuse pairs whose z came from another prior than the student's: the student would learn lines
    from noise it never samples (``docs/lines.md``)."""
    made, wanted = pairs_prior(manifest), prior.describe()
    if made != wanted:
        raise StraightflowError(f"the pairs in {folder} start from noise z ~ {made}, but this run samples z ~ {wanted} "
                                f"(--prior {prior_name}): train with the teacher's prior or make pairs from "
                                "the student's")


# ------------------------------------------------------------------ training data
class PairData(DataSource):
    """Teacher pairs as a training data source; everything else comes from the base data source.

    ``sample_train`` returns ``((x*, z), y)``: pairs (model units) drawn
    uniformly, with the caller's generator, from the training part (all but the
    last ``heldout`` pairs), and their labels; shards are memory-mapped, so memory stays bounded.
    ``reference``, ``floor_reference``, (de)normalisation, shape and kind are
    the base (teacher's) data source's, so evaluation is unchanged. Pairs of a
    conditional teacher carry the class each x* was generated for (``y``; None for
    pairs without labels).
    """

    def __init__(self, folder: Path, manifest: dict, base: DataSource):
        self.folder, self.manifest, self.base = Path(folder), manifest, base
        self.name, self.shape, self.kind = base.name, tuple(base.shape), base.kind
        self.class_names = tuple(base.class_names)
        #: the pairs record a class label per pair (made by a conditional teacher)
        self.has_labels = "classes" in manifest
        shards = manifest["shards"]
        self.counts = np.array([int(s["count"]) for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.n = int(self.counts.sum())
        self.heldout = int(manifest.get("heldout", 0))
        self.n_train = self.n - self.heldout
        if self.n_train < 1:
            raise StraightflowError(f"pairs folder {folder} has no training pairs ({self.n} pairs, {self.heldout} "
                                    "held out)")
        self.device = torch.device("cpu")
        self._arrays: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(shards)
        self._label_arrays: list[np.ndarray | None] = [None] * len(shards)
        for i in range(len(shards)):  # fail early if a file is missing, corrupt or of the wrong shape
            self._shard(i)
            if self.has_labels:
                self._labels(i)

    @classmethod
    def open(cls, folder: str | Path, base: DataSource | None = None, labels: bool = False) -> "PairData":
        """Open ``folder``; ``base`` defaults to the teacher's data source from the manifest;
        ``labels=True`` (a conditional student) requires pairs with class labels."""
        manifest = read_manifest(folder)
        if base is None:
            from . import load_data

            tcfg = manifest.get("teacher_config") or {}
            if "data" not in tcfg:
                raise StraightflowError(f"pairs manifest in {folder} records no teacher data; pass --data")
            base = load_data(tcfg["data"], tcfg)
        if list(manifest["shape"]) != list(base.shape):
            raise StraightflowError(f"pairs in {folder} have shape {tuple(manifest['shape'])} but data {base.name} has "
                                    f"shape {tuple(base.shape)}")
        if labels and "classes" not in manifest:
            raise StraightflowError(f"pairs in {folder} hold no class labels (an unconditional teacher made them): a "
                                    "conditional student needs pairs of a conditional teacher")
        if "classes" in manifest and list(manifest["classes"]) != list(base.class_names):
            raise StraightflowError(f"pairs in {folder} are labelled with classes {manifest['classes']} but data "
                                    f"{base.name} has {list(base.class_names)}")
        return cls(Path(folder), manifest, base)

    def _shard(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays[i] is None:
            entry = self.manifest["shards"][i]
            arrays = []
            for key in ("x", "z"):
                path = self.folder / str(entry.get(key, ""))
                try:
                    arr = np.load(path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError, EOFError) as exc:  # EOFError: a zero-byte file
                    raise StraightflowError(f"pairs shard {path} is missing or unreadable "
                                            f"({str(exc).splitlines()[0]})") from None
                self._check_sha256(path, entry.get(f"{key}_sha256"))
                if arr.shape != (int(entry["count"]), *self.shape) or arr.dtype != np.float32:
                    raise StraightflowError(f"pairs shard {path} has shape {arr.shape} {arr.dtype}; the manifest says "
                                            f"({entry['count']}, {', '.join(map(str, self.shape))}) float32")
                arrays.append(arr)
            self._arrays[i] = (arrays[0], arrays[1])
        return self._arrays[i]

    def _check_sha256(self, path: Path, expected: str | None) -> None:
        """A shard file's bytes against the sha256 the manifest recorded for it (once, when the shard is first
        opened); an overwritten file of the same size is caught here, not trained on."""
        if expected is not None and sha256_file(path) != expected:
            raise StraightflowError(f"pairs shard {path} is corrupt (its sha256 differs from the one in "
                                    f"{self.folder / MANIFEST}); regenerate it: rerun the same `straightflow "
                                    "pairs` command")

    def gather(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs at global indices ``idx`` as CPU float32 tensors (x*, z)."""
        idx = np.asarray(idx, dtype=np.int64)
        which = np.searchsorted(self.starts, idx, side="right") - 1
        x = np.empty((idx.shape[0], *self.shape), dtype=np.float32)
        z = np.empty_like(x)
        for s in np.unique(which):
            mask = which == s
            rows = idx[mask] - self.starts[s]
            xs, zs = self._shard(int(s))
            x[mask], z[mask] = xs[rows], zs[rows]
        return torch.from_numpy(x), torch.from_numpy(z)

    def gather_labels(self, idx: np.ndarray) -> torch.Tensor:
        """Class labels (int64, CPU) of the pairs at global indices ``idx``."""
        if not self.has_labels:
            raise StraightflowError(f"pairs in {self.folder} hold no class labels")
        idx = np.asarray(idx, dtype=np.int64)
        which = np.searchsorted(self.starts, idx, side="right") - 1
        y = np.empty(idx.shape[0], dtype=np.int64)
        for s in np.unique(which):
            mask = which == s
            y[mask] = self._labels(int(s))[idx[mask] - self.starts[s]]
        return torch.from_numpy(y)

    def _labels(self, i: int) -> np.ndarray:
        if self._label_arrays[i] is None:
            entry = self.manifest["shards"][i]
            path = self.folder / str(entry.get("y", ""))
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise StraightflowError(f"pairs labels {path} are missing or unreadable "
                                        f"({str(exc).splitlines()[0]})") from None
            self._check_sha256(path, entry.get("y_sha256"))
            if arr.shape != (int(entry["count"]),) or arr.dtype != np.int64:
                raise StraightflowError(f"pairs labels {path} have shape {arr.shape} {arr.dtype}; the manifest says "
                                        f"({entry['count']},) int64")
            self._label_arrays[i] = arr
        return self._label_arrays[i]

    def _train_index(self, n: int, generator: torch.Generator) -> np.ndarray:
        return torch.randint(0, self.n_train, (n,), generator=generator, device=generator.device).cpu().numpy()

    def sample_train(self, n: int, generator: torch.Generator):
        idx = self._train_index(n, generator)
        x, z = self.gather(idx)
        y = self.gather_labels(idx).to(self.device) if self.has_labels else None
        return (x.to(self.device), z.to(self.device)), y

    def heldout_pairs(self, max_n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out pairs (x*, z), CPU, model units (the first ``max_n`` of them)."""
        return self.gather(self._heldout_index(max_n))

    def heldout_labels(self, max_n: int | None = None) -> torch.Tensor:
        """The class labels of :meth:`heldout_pairs`."""
        return self.gather_labels(self._heldout_index(max_n))

    def _heldout_index(self, max_n: int | None) -> np.ndarray:
        count = self.heldout if max_n is None else min(self.heldout, max_n)
        return np.arange(self.n_train, self.n_train + count)

    def to(self, device) -> "PairData":
        self.device = torch.device(device)
        self.base.to(device)  # the adversarial term draws real data from it
        return self

    def reference(self, n: int, seed: int = 0):
        return self.base.reference(n, seed)

    def floor_reference(self, n: int, seed: int = 0):
        return self.base.floor_reference(n, seed)

    def validation(self, n: int, seed: int = 0):
        return self.base.validation(n, seed)

    def class_probs(self) -> torch.Tensor:
        return self.base.class_probs()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.normalize(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.denormalize(x)

    def normalization_state(self) -> dict | None:
        return self.base.normalization_state()

    def describe(self) -> str:
        m = self.manifest
        src = f"{m.get('solver') or 'given'}@{m.get('nfe')}" if m.get("solver") else "given pairs"
        if self.has_labels:
            src += f", labelled, guidance {m.get('guidance', 1.0):g}"
        return f"{self.n_train:,} teacher pairs ({src}, {self.heldout:,} held out) of {self.base.describe()}"
