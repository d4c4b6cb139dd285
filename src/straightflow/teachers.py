"""Teachers and teacher pairs from *any* model (lines paper: x* = Sampler(z)).

A teacher maps noise z to its deterministic sample x*. Two kinds:

* :class:`VelocityTeacher` - a velocity ``v(x, t)`` in straightflow's convention
  (t = 0 data, t = 1 noise), integrated from t = 1 to 0 by one of our solvers
  (Euler / Heun / RK45) with an honest NFE (RK45 stops at t = 1e-3 and x* is its
  data prediction there, so pairs end at t = 0);
* :class:`SamplerTeacher` - a deterministic sampler ``z -> x*`` of someone
  else's model (a DDIM, EDM-Heun or dopri5 sampler of a pretrained diffusion /
  flow model): we only record its pairs.

Peers' velocities (torchcfm, Meta's flow_matching: t_peer = 1 - t, v_peer = -v)
convert with :func:`from_peer_velocity`. :func:`generate_pairs` writes the pairs
of any teacher as a pair folder (:mod:`straightflow.data.pairs`): sharded,
checksummed, resumable and split across ranks under ``torchrun``. See
``docs/lines.md`` and ``docs/api.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .conditioning import GuidedVelocity
from .data.pairs import (
    FORMAT_VERSION,
    MANIFEST,
    SETTINGS,
    atomic_write,
    complete_shard,
    default_heldout,
    default_shard_size,
    read_json,
    write_manifest,
    write_shard,
)
from .distributed import DistContext
from .errors import StraightflowError
from .locks import FolderLock
from .noise import seeded_labels, seeded_noise
from .priors import DiagonalGaussianPrior
from .solvers import SOLVERS, SolveResult, VelocityFn, rk45, solve

#: how a ``VelocityTeacher`` with ``solver="rk45"`` ends (recorded in the pairs' settings)
RK45_TEACHER_END = "t = 0: x_hat(z, t) at t = 1e-3"


class Teacher(Protocol):
    """z (B, ...) [, y (B,) class labels] -> :class:`SolveResult` with ``samples`` x* and the ``nfe`` it took."""

    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult: ...

    def settings(self) -> dict: ...


@dataclass
class VelocityTeacher:
    """A velocity field in our convention, solved from t = 1 to 0 by ``solver`` at ``nfe``.

    ``solver="rk45"`` ignores ``nfe`` and ends at t = 0 too: Dormand-Prince to t = 1e-3, then
    x* = x_hat(z, 1e-3) = z - 1e-3 v(z, 1e-3), one more network call counted in the NFE
    (:func:`straightflow.solvers.rk45` with ``to_zero=True``).

    Conditional (``null_label`` set: the velocity is ``v(x, t, y)`` of a net trained with
    label dropout): called with labels, it solves the guided velocity
    v_null + ``guidance`` (v_y - v_null) (``docs/conditional.md``); a guided NFE costs two
    network evaluations per pair.
    """

    velocity: VelocityFn
    solver: str = "euler"
    nfe: int = 128
    guidance: float = 1.0
    null_label: int | None = None

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise StraightflowError(f"unknown solver {self.solver!r}: use one of {', '.join(sorted(SOLVERS))}")
        if self.nfe < 1:
            raise StraightflowError(f"--nfe must be >= 1, got {self.nfe}")
        if self.null_label is None and self.guidance != 1.0:
            raise StraightflowError(f"--guidance {self.guidance:g} needs a conditional teacher (trained with "
                                    "--conditional)")

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        velocity = self.velocity if y is None else GuidedVelocity(self.velocity, y, self.guidance, self.null_label)
        # x* at t = 0: RK45 to t = 1e-3, then x_hat there (one more call; docs/api.md "Solvers")
        if self.solver == "rk45":
            return rk45(velocity, z, to_zero=True)
        return solve(velocity, z, self.solver, self.nfe)

    def settings(self) -> dict:
        out = {"solver": self.solver, "nfe": self.nfe}
        if self.solver == "rk45":  # pairs made before x* ended at t = 0 are not resumed into
            out["rk45_end"] = RK45_TEACHER_END
        if self.null_label is not None:
            out["guidance"] = self.guidance
        return out


@dataclass
class SamplerTeacher:
    """A deterministic sampler ``z -> x*`` (``(z, y) -> x*`` for a conditional teacher);
    ``nfe`` is what one call costs (0 = not stated)."""

    sampler: Callable[..., torch.Tensor]
    nfe: int = 0

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        x = self.sampler(z) if y is None else self.sampler(z, y)
        if not torch.is_tensor(x) or tuple(x.shape) != tuple(z.shape):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise StraightflowError(f"the teacher sampler returned {got} for noise of shape {tuple(z.shape)}; it must "
                                    "return x* of the same shape")
        return SolveResult(x, self.nfe)

    def settings(self) -> dict:
        return {"solver": "sampler", "nfe": self.nfe}


def from_peer_velocity(v_peer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> VelocityFn:
    """Wrap a velocity in the torchcfm / flow_matching convention (t = 0 noise, t = 1 data).

    ``v_peer(x, t_peer)`` with t_peer of shape (B,); returns ``v(x, t) = -v_peer(x, 1 - t)``.
    """

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -v_peer(x, 1.0 - t)

    return velocity


def load_callable(spec: str):
    """The object named by ``package.module:attr`` or ``path/to/file.py:attr``."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise StraightflowError(f"--teacher-callable {spec!r}: use package.module:function or path/to/file.py:function")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise StraightflowError(f"--teacher-callable: file {path} does not exist")
            name = f"straightflow_teacher_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except StraightflowError:
        raise
    except Exception as exc:
        raise StraightflowError(f"--teacher-callable {spec!r}: could not import {target} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    obj = getattr(module, attr, None)
    if obj is None or not callable(obj):
        raise StraightflowError(f"--teacher-callable {spec!r}: {target} has no callable {attr!r}")
    return obj


def generate_pairs(
    teacher: Teacher,
    n: int,
    out: str | Path,
    shape: tuple[int, ...],
    *,
    seed: int = 0,
    prior=None,
    to_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
    shard_size: int | None = None,
    heldout: int | None = None,
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
    progress: bool = True,
    settings: dict | None = None,
    manifest: dict | None = None,
    ctx: DistContext | None = None,
    class_names: tuple[str, ...] | None = None,
    class_probs: torch.Tensor | None = None,
    dry_run: bool = False,
) -> dict:
    """Generate (or finish) a pair folder of ``n`` pairs (z, x* = teacher(z)); returns a summary dict.

    ``z`` of pair ``i`` is row ``i`` of the ``"pairs"`` noise stream of ``seed``
    (shaped by ``prior``, default N(0, I)), whatever the batch or shard size. The
    prior is recorded (``settings["prior"]``, e.g. ``"N(0, I)"``): a student of another
    prior is refused (:func:`straightflow.data.pairs.pairs_prior`).
    ``to_model`` maps the teacher's x* to model units before it is stored (e.g.
    ``data.normalize`` for a teacher working in data units). ``settings`` (what
    makes two folders the same: teacher name, checkpoint, ...) is recorded and
    checked on resume; ``manifest`` entries (e.g. ``teacher_config``, the
    config fields a student inherits) go into the manifest only.

    ``class_names`` (a conditional teacher): pair ``i`` also gets a class label, row ``i``
    of the ``"labels"`` stream of ``seed`` drawn from ``class_probs`` (default uniform), and
    the teacher is called as ``teacher(z, y)``; labels are stored with the pairs.

    Under ``torchrun`` pass ``ctx`` (:func:`straightflow.distributed.init_distributed`):
    rank r generates the shards ``i`` with ``i % world == r`` and rank 0 writes
    the manifest once all are done.

    ``dry_run``: the same checks, the teacher called once on two noises of the first shard (its samples must
    come back finite and of ``shape``), the shards that would be reused or generated counted; nothing is written
    (the summary has ``dry_run: True``).
    """
    shape = tuple(int(s) for s in shape)
    if n < 2:
        raise StraightflowError(f"-n must be >= 2, got {n}")
    if batch_size < 1 or (shard_size is not None and shard_size < 1):
        raise StraightflowError("--batch-size and --shard-size must be >= 1")
    held = default_heldout(n) if heldout is None else heldout
    if not 0 <= held < n:
        raise StraightflowError(f"--heldout must be in [0, n), got {held}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StraightflowError(f"--out {out} exists and is not a folder")
    ctx = ctx or DistContext(device=torch.device(device))
    size = shard_size or default_shard_size(shape)
    settings = _folder_settings(teacher, seed, shape, prior, settings, class_names, class_probs)
    if (out / SETTINGS).exists():
        old = read_json(out / SETTINGS, "pairs settings")
        if old != settings:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
            raise StraightflowError(f"{out} holds pairs made with other settings ({diff}); choose another --out")
    if dry_run:
        return _plan(teacher, n, out, shape, seed, prior, to_model, size, held, settings, ctx)
    lock = FolderLock(out, "pairs folder") if ctx.is_main else None
    if lock is not None:  # one writer per pairs folder (under torchrun: rank 0 for all ranks)
        lock.acquire()
    try:
        return _generate(teacher, n, out, shape, seed, prior, to_model, size, held, batch_size, progress, settings,
                         manifest, ctx)
    finally:
        if lock is not None:
            lock.release()


def _folder_settings(teacher, seed, shape, prior, settings, class_names, class_probs) -> dict:
    """What makes two pair folders the same (recorded in ``settings.json``, checked on resume)."""
    settings = {"format": FORMAT_VERSION, **teacher.settings(), "seed": seed, "shape": list(shape), "dtype": "float32",
                "space": "model", "prior": (prior or DiagonalGaussianPrior()).describe(), **(settings or {})}
    if class_names:
        probs = (torch.full((len(class_names),), 1.0 / len(class_names))
                 if class_probs is None else torch.as_tensor(class_probs, dtype=torch.float64))
        if probs.shape != (len(class_names),) or not bool((probs >= 0).all()) or not float(probs.sum()) > 0:
            raise StraightflowError(f"class_probs must hold {len(class_names)} non-negative weights")
        probs = probs / probs.sum()
        settings.update({"classes": list(class_names), "class_probs": [round(float(p), 12) for p in probs]})
    return settings


def _plan(teacher, n, out, shape, seed, prior, to_model, size, held, settings, ctx) -> dict:
    """``generate_pairs(dry_run=True)``: the teacher tried on two noises, the shards to reuse and to generate."""
    z = seeded_noise(2, shape, seed, "pairs", prior).to(ctx.device)
    y = (seeded_labels(2, torch.tensor(settings["class_probs"]), seed, "labels").to(ctx.device)
         if "classes" in settings else None)
    res = teacher(z) if y is None else teacher(z, y)
    x = res.samples if to_model is None else to_model(res.samples)
    if tuple(x.shape) != (2, *shape):
        raise StraightflowError(f"the teacher returned samples of shape {tuple(x.shape)[1:]}, not the data's {shape}")
    if not bool(torch.isfinite(x).all()):
        raise StraightflowError("the teacher returned non-finite samples for the first noises")
    starts = list(range(0, n, size))
    reused = [i for i in range(len(starts))
              if complete_shard(out, i, starts[i], min(size, n - starts[i]), settings) is not None]
    return {"dry_run": True, "out": str(out), "n": n, "heldout": held, "shards": len(starts),
            "reused_shards": len(reused), "generated_pairs": n - sum(min(size, n - starts[i]) for i in reused),
            "teacher_nfe": int(res.nfe), "settings": settings}


def _generate(teacher, n, out, shape, seed, prior, to_model, size, held, batch_size, progress, settings, manifest,
              ctx) -> dict:
    ctx.barrier()
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / SETTINGS, json.dumps(settings, indent=1).encode())
        (out / MANIFEST).unlink(missing_ok=True)  # the folder is "in progress" until the manifest is back
    ctx.barrier()

    starts = list(range(0, n, size))
    mine = [i for i in range(len(starts)) if i % ctx.world_size == ctx.rank]
    todo, reused = [], 0
    for i in mine:
        if complete_shard(out, i, starts[i], min(size, n - starts[i]), settings) is not None:
            reused += 1
        else:
            todo.append(i)
    total = sum(min(size, n - starts[i]) for i in todo)
    bar = tqdm(total=total, disable=not (progress and ctx.is_main and total),
               desc=f"pairs {settings.get('solver')}@{settings.get('nfe')}",
               unit="pair", dynamic_ncols=True, mininterval=0.5)
    t0 = time.perf_counter()
    try:
        for i in todo:
            start, stop = starts[i], min(starts[i] + size, n)
            z = seeded_noise(stop - start, shape, seed, "pairs", prior, start=start)
            y = seeded_labels(stop - start, torch.tensor(settings["class_probs"]), seed, "labels",
                              start=start) if "classes" in settings else None
            xs, nfe_used = [], 0
            for b in range(0, z.shape[0], batch_size):
                zb = z[b : b + batch_size].to(ctx.device)
                res = teacher(zb) if y is None else teacher(zb, y[b : b + batch_size].to(ctx.device))
                x = res.samples if to_model is None else to_model(res.samples)
                xs.append(x.float().cpu())
                nfe_used = max(nfe_used, int(res.nfe))
                bar.update(x.shape[0])
            x_all = torch.cat(xs).numpy()
            if not np.isfinite(x_all).all():
                raise StraightflowError(f"the teacher returned non-finite samples in shard {i} (pairs "
                                        f"{start}..{stop - 1})")
            write_shard(out, i, start, z.numpy(), x_all, settings, nfe_used, None if y is None else y.numpy())
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    counts = ctx.gather_objects((len(todo), reused, total, seconds))  # also a barrier
    generated, pairs_done = sum(c[0] for c in counts), sum(c[2] for c in counts)
    slowest = max(c[3] for c in counts)
    summary = {"out": str(out), "n": n, "generated_shards": generated, "reused_shards": sum(c[1] for c in counts),
               "generated_pairs": pairs_done, "seconds": slowest,
               "pairs_per_sec": pairs_done / slowest if pairs_done else float("nan")}
    if ctx.is_main:
        shards = []
        for i, start in enumerate(starts):
            entry = complete_shard(out, i, start, min(size, n - start), settings)
            if entry is None:
                raise StraightflowError(f"shard {i} of {out} is missing or corrupt after generation (disk full?); "
                                        "rerun to regenerate it")
            shards.append(entry)
        write_manifest(out, settings, shards, held, size,
                       {"batch_size": batch_size, "world_size": ctx.world_size, **(manifest or {})})
    ctx.barrier()
    return summary
