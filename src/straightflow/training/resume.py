"""What makes ``--resume`` exact and a stop clean: each rank's random streams (seeded per rank,
saved in and restored from checkpoints) and the signal handlers that let a step finish and be
checkpointed before the run stops (``docs/architecture.md``)."""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path

import torch

from ..distributed import DistContext
from ..errors import TrainingInterrupted


def rank_seed(seed: int, rank: int) -> int:
    """Distinct, reproducible stream per (seed, rank)."""
    return (seed * 1_000_003 + rank * 7_919 + 12_345) % (2**63 - 1)


def rng_states(ctx: DistContext, generator: torch.Generator) -> dict:
    """Every rank's random state, for a checkpoint: its batch generator, the CPU RNG and, when
    the rank trains on CUDA, its device's RNG (dropout and other global CUDA draws); one list
    entry per rank, all tensors, so ``torch.load(weights_only=True)`` reads them."""
    states = {"generators": ctx.gather_objects(generator.get_state()),
              "torch_rng": ctx.gather_objects(torch.get_rng_state())}
    if ctx.device.type == "cuda":
        states["cuda_rng"] = ctx.gather_objects(torch.cuda.get_rng_state(ctx.device))
    return states


def restore_rng_states(state: dict, ctx: DistContext, generator: torch.Generator) -> str | None:
    """Set this rank's random state from a checkpoint's (see :func:`rng_states`); returns a
    warning when some stream cannot be restored and starts afresh instead."""
    gens = state.get("generators", [])
    if len(gens) != ctx.world_size:
        return (f"warning: checkpoint was written by {len(gens)} ranks, resuming on {ctx.world_size}: random "
                "streams restart")
    generator.set_state(gens[ctx.rank])
    torch.set_rng_state(state["torch_rng"][ctx.rank])
    if ctx.device.type == "cuda":
        cuda = state.get("cuda_rng")
        if cuda is None or len(cuda) != ctx.world_size:
            return ("warning: the checkpoint holds no CUDA random state (written on the CPU or by an older version): "
                    "the CUDA stream (dropout) restarts")
        torch.cuda.set_rng_state(cuda[ctx.rank], ctx.device)
    return None


class StopSignals:
    """``with StopSignals(out) as stop:`` SIGINT and SIGTERM only set ``stop.signum``; the training
    loop finishes its step, checkpoints it and raises :class:`TrainingInterrupted`. A second signal
    stops at once (the last checkpoint stays intact). Handlers are installed only in the main
    thread (Python allows no other) and the previous ones are restored on exit."""

    def __init__(self, out: Path):
        self.out, self.signum = out, None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise TrainingInterrupted("interrupted again before the checkpoint was written; the last checkpoint "
                                      "is intact; continue with: straightflow train --out "
                                      f"{shlex.quote(str(self.out))} --resume", signum)
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
