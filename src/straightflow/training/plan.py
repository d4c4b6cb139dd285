"""What ``train(dry_run=True)`` prints: the run it would start or continue, checked but not run
(``docs/guide.md``, "Command line", ``--dry-run``)."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import latest_checkpoint, load_train_state
from ..config import TrainConfig
from ..device import resolve_device
from ..distributed import DistContext
from ..methods import Method
from .auto_beta import pilot_plan
from .setup import banner, build_state, check_request, load_training_data, restore, run_meta
from .state import TrainState

#: the beta and KL target a ``--beta auto`` run is built with in a dry run (its pilots would pick both; the
#: network does not depend on them)
PLAN_BETA = 1.0


def changed_fields(cfg: TrainConfig) -> dict:
    """The config fields of ``cfg`` that differ from :class:`TrainConfig`'s defaults (``out`` aside)."""
    default = TrainConfig().to_dict()
    return {k: v for k, v in cfg.to_dict().items() if k != "out" and v != default.get(k)}


def describe(state: TrainState, banner: str, *, resumed: bool, auto: list[str]) -> list[str]:
    """The lines of a dry run: what would train (``banner``, the real run's first line, reworded), from where
    (a new run, a checkpoint's step, or nothing left to do), the config fields that differ from the defaults,
    ``--beta auto``'s pilot plan (``auto``) and that nothing was written."""
    cfg = state.cfg
    if not resumed:
        start = ("a new run from step 0"
                 if not (state.out / "config.yaml").exists() else "the saved config from step 0 (no checkpoint yet)")
    elif state.step >= cfg.steps:
        start = f"nothing: already trained to step {state.step} (asked for {cfg.steps})"
    else:
        start = f"step {state.step} of {cfg.steps} (checkpoint loaded into the network: it matches)"
    config = ", ".join(f"{k}={v!r}" for k, v in changed_fields(cfg).items()) or "all defaults"
    return [
        "straightflow: dry run: would train" + banner.removeprefix("straightflow: training"),
        f"straightflow: dry run: {cfg.steps} steps at batch {cfg.batch_size}; starts with {start}",
        f"straightflow: dry run: config (differs from the defaults): {config}",
        *(f"straightflow: dry run: {line}" for line in auto),
        f"straightflow: dry run: nothing written to {state.out}",
    ]


def dry_run_train(cfg: TrainConfig, *, resume: bool, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
                  dataset=None, custom_method: Method | None = None) -> Path:
    """``train(dry_run=True)`` after the run directory was checked: the sections of :func:`_train` that read (the
    request, the checkpoint, the data, the module built from the config, the checkpoint loaded into it), none that
    write (no lock, run directory, logs or steps); ``--beta auto``'s pilots are planned and checked, not run.
    Prints the plan (:func:`describe`) and returns the run directory."""
    built = replace(cfg, beta=PLAN_BETA, kl_target=PLAN_BETA) if cfg.beta == "auto" else cfg  # the pilots pick both
    ctx = DistContext(rank=int(os.environ.get("RANK", "0")), world_size=int(os.environ.get("WORLD_SIZE", "1")),
                      device=resolve_device(cfg.device))  # no process group: nothing is exchanged
    # a user's own modules are copied: a resumed run's checkpoint is loaded into the copies, not into theirs
    velocity_net, encoder_net = copy.deepcopy(velocity_net), copy.deepcopy(encoder_net)
    check_request(built, ctx, velocity_net=velocity_net, encoder_net=encoder_net, custom_method=custom_method)
    ckpt = latest_checkpoint(Path(cfg.out)) if resume else None
    saved = load_train_state(ckpt) if ckpt is not None else None
    data = load_training_data(built, saved, dataset)
    auto = pilot_plan(cfg, tuple(data.shape), custom_model=velocity_net is not None, custom_data=dataset is not None,
                      custom_encoder=encoder_net is not None) if cfg.beta == "auto" else []  # the data loaded once
    # the caller's streams stay untouched
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        state = build_state(built, ctx, data, velocity_net=velocity_net, encoder_net=encoder_net,
                            custom_method=custom_method)
        restore(state, ckpt, saved, resume=resume)
    state.cfg, state.meta = cfg, run_meta(state, custom_method)
    if ctx.is_main:
        print("\n".join(describe(state, banner(state), resumed=ckpt is not None, auto=auto)))
    return state.out
