"""The sections of a training run that read and build, before anything is written: the request checked, the
data loaded, the module, objective, optimizer and EMA built, a checkpoint restored, and the line that says what
trains. ``train`` runs them before its steps (``training/trainer.py``); ``train(dry_run=True)`` runs them alone
(``training/plan.py``)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_checkpoint_weights, load_into
from ..config import TrainConfig
from ..data import CUSTOM_DATA, DataOptions, load_data
from ..data.pairs import PairData
from ..distributed import DistContext
from ..errors import StraightflowError
from ..methods import CUSTOM_METHOD, Method, build_module, resolve_method
from ..models import count_parameters, resolve_model_name
from .ema import EMA
from .monitor import summary_writer_class
from .resume import rank_seed, restore_rng_states
from .state import TrainState


def check_request(cfg: TrainConfig, ctx: DistContext, *, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
                   custom_method: Method | None) -> None:
    """The errors a run is told before any work: a batch the ranks cannot share, an encoder its method takes
    none of, a custom model resumed without its module, ``--tensorboard`` without its package (on every rank)."""
    out = Path(cfg.out)
    if cfg.batch_size % ctx.world_size:
        raise StraightflowError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} ranks")
    if encoder_net is not None and not resolve_method(cfg, custom_method).accepts_encoder:
        raise StraightflowError("encoder_net= is a learned coupling's encoder (the curvature method's); --method "
                                f"{cfg.method} has none")
    if cfg.model == "custom" and velocity_net is None:
        raise StraightflowError(f"{out} was trained with a user's own velocity module (model: custom): pass "
                                "velocity_net= to train(...) to resume it")
    if cfg.tensorboard:
        summary_writer_class()  # a missing package is an error on every rank, before any work


def load_training_data(cfg: TrainConfig, saved: dict | None, dataset=None):
    """The training data: ``cfg.data`` (a resumed run, ``saved`` its checkpoint's train state, reads it the way it
    started), or teacher pairs over it with ``--pairs``; ``dataset``: a user's own Dataset (``data: custom``)."""
    options = DataOptions.of(cfg)
    if cfg.loader == "auto" and saved is not None:  # resume the way the run started, whatever auto would choose today
        options = replace(options, loader="stream" if "sampler" in saved else "memory")
    if cfg.data == CUSTOM_DATA and dataset is None:
        raise StraightflowError(f"{Path(cfg.out)} trains on a user's own Dataset (data: custom): pass dataset= to "
                                "train(...) to resume it")
    data = load_data(cfg.data, options if not cfg.pairs else replace(options, loader="auto"),
                     require_labels=cfg.conditional, dataset=dataset)
    if cfg.pairs:  # batches are (x*, z) teacher pairs; evaluation data stays cfg.data
        data = PairData.open(cfg.pairs, base=data, labels=cfg.conditional)
    return data


def build_state(cfg: TrainConfig, ctx: DistContext, data, *, velocity_net: nn.Module | None,
                encoder_net: nn.Module | None,
           custom_method: Method | None) -> TrainState:
    """Build what trains, in the order that fixes every random draw: the module from ``cfg.seed`` (the same
    initial weights on every rank), the method's objective, aux trainer and KL budget, then this rank's seed of
    the global RNG (dropout), the optimizer, the EMA and this rank's batch generator."""
    device = ctx.device
    if data.loader != "stream":
        data.to(device)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    module, method, prior = build_module(cfg, data, velocity_net, encoder_net, custom_method)
    method.prepare(module, cfg, data)
    module.to(device)
    module.objective, aux = method.build_objective(cfg, data, device)
    budget = method.build_kl_budget(cfg)  # --kl-target: beta adapted by dual ascent (docs/kl_target.md)
    torch.manual_seed(rank_seed(cfg.seed, ctx.rank))  # dropout etc. differ per rank

    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(module, cfg.ema_decay)
    generator = torch.Generator(device=device).manual_seed(rank_seed(cfg.seed, ctx.rank))
    return TrainState(cfg=cfg, ctx=ctx, out=Path(cfg.out), data=data, prior=prior, module=module, method=method,
                      params=params, optimizer=optimizer, ema=ema, generator=generator, aux=aux, budget=budget,
                      local_batch=cfg.batch_size // ctx.world_size, train_module=module)


def restore(state: TrainState, ckpt: Path | None, saved: dict | None, *, resume: bool) -> None:
    """Continue from checkpoint ``ckpt`` (``saved``: its train state), when there is one: the weights, the EMA,
    the optimizer, the aux trainer, the KL budget, ``state.step`` and every random stream; then give the coupling
    the budget's beta."""
    cfg, ctx = state.cfg, state.ctx
    if resume and ckpt is None and ctx.is_main:  # stopped before its first checkpoint: nothing to lose by starting over
        print(f"straightflow: note: {state.out} has no checkpoint yet; training it from step 0 with its saved config",
              file=sys.stderr)
    if ckpt is not None:
        load_into(state.module, load_checkpoint_weights(ckpt, "model.safetensors"), ckpt / "model.safetensors")
        load_into(state.ema.shadow, load_checkpoint_weights(ckpt, "ema.safetensors"), ckpt / "ema.safetensors")
        state.optimizer.load_state_dict(saved["optimizer"])
        if state.aux is not None and "aux" in saved:
            state.aux.load_state_dict(saved["aux"])
        if state.budget is not None:
            if "kl_budget" not in saved:
                raise StraightflowError(f"{ckpt} holds no KL-budget state although the run has kl_target "
                                        f"{cfg.kl_target:g}")
            state.budget.load_state_dict(saved["kl_budget"])
        state.step = int(saved["step"])
        warning = restore_rng_states(saved, ctx, state.generator)
        if warning and ctx.is_main:
            print(warning)
    if state.budget is not None:
        state.method.set_beta(state.module, state.budget.beta)


def run_meta(state: TrainState, custom_method: Method | None) -> dict:
    """What every checkpoint's ``meta.json`` says of the run beside the weights."""
    cfg, data, module = state.cfg, state.data, state.module
    meta = {
        "method": cfg.method if custom_method is None else f"{CUSTOM_METHOD}:{type(custom_method).__qualname__}",
        "model": resolve_model_name(cfg, data)
        if cfg.model != "custom" else f"custom:{type(module.velocity).__qualname__}", "data": cfg.data,
        "shape": list(data.shape),
        "velocity_parameters": count_parameters(module.velocity),
        # what sampling needs without the data (Run.load, export; docs/portable.md)
        "sampling": {**data.sampling_state(), "prior": cfg.prior},
    }
    if module.conditional:
        meta["classes"] = list(data.class_names)
    return meta


def banner(state: TrainState) -> str:
    """The line that says what trains: method, data, model, loader, classes, devices, run directory."""
    cfg, data, batches, meta = state.cfg, state.data, state.batches, state.meta
    n_params = meta["velocity_parameters"]
    extra = count_parameters(state.module) - n_params
    return (
        f"straightflow: training {cfg.method} on {data.describe()} | model {meta['model']} "
        f"{n_params:,} parameters" + (f" (+{extra:,} in the coupling)" if extra else "")
        + (f" | DataLoader, {batches.workers} worker{'s' if batches.workers != 1 else ''} per rank"
           if batches is not None else "")
        + (f" | conditional on {data.num_classes} classes, label dropout {cfg.cond_drop:g}"
           if state.module.conditional else "")
        + f" | device {state.ctx.device} x{state.ctx.world_size} | run dir {state.out}"
    )
