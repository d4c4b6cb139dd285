"""The training loop: one function for every method, one process or many (DDP).

It reads top to bottom: :func:`train` checks the call and the run directory, :func:`_train` runs
the sections of a run in order, each a named function over one :class:`TrainState`, and
:func:`_run_steps` is the loop, one line per thing a step does (``docs/architecture.md``).

Determinism: every random draw of a rank (data batch, noise, t, OT tie-breaks)
comes from that rank's own ``torch.Generator``; its state, the global CPU and
(on CUDA) device RNG states that dropout draws from, the optimizer's, the EMA's
and the step are checkpointed, so ``--resume`` continues exactly as if the run
had never stopped.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ..checkpoint import latest_checkpoint, load_checkpoint_weights, load_into, load_train_state, save_checkpoint
from ..config import TrainConfig, int_list, save_config, validate
from ..data import CUSTOM_DATA, BatchStream, DataOptions, EpochSampler, auto_workers, load_data
from ..data.pairs import PairData
from ..distributed import DistContext, init_distributed, shutdown_distributed
from ..errors import StraightflowError, TrainingInterrupted
from ..locks import FolderLock
from ..methods import CUSTOM_METHOD, Method, build_module, resolve_method
from ..models import count_parameters, resolve_model_name
from .auto_beta import resolve_auto_beta
from .ema import EMA
from .monitor import QUALITY_FILE, TENSORBOARD_DIR, QualityProbe, TrainingMonitor, summary_line, summary_writer_class
from .resume import StopSignals, rank_seed, restore_rng_states, rng_states
from .run_dir import asks_auto_beta, prepare_run_dir, run_dir_asked, truncate_records
from .state import LogWindow, TrainState


def train(config_file: str | None = None, resume: bool = False, velocity_net: nn.Module | None = None,
          encoder_net: nn.Module | None = None, dataset=None, **overrides) -> Path:
    """Train a run; returns its run directory.

    ``overrides`` are config fields (see :class:`TrainConfig`); unknown names are
    an error. With ``resume=True`` the run in ``out`` continues from its latest
    checkpoint (only ``steps`` and bookkeeping fields may change), or from step 0
    with its saved config when it stopped before its first checkpoint.
    ``velocity_net``: your own ``nn.Module`` with ``forward(x_t, t)`` instead of a
    built-in model (recorded as ``model: custom``; pass it again to ``Run.load`` and
    to resume); ``encoder_net``: your own encoder module for ``method="curvature"`` (output:
    twice the channels of x). Run directories, EMA, resume and DDP work the same.
    ``dataset``: your own map-style ``torch.utils.data.Dataset`` (items ``x`` or ``(x, y)``) as the
    training data (recorded as ``data: custom``; pass it again to ``Run.load`` and to resume;
    ``docs/data.md``). ``method``: a method name, or your own :class:`~straightflow.methods.Method`
    instance (recorded as ``method: custom``; pass it again to resume, ``Run.load`` and ``export``).
    """
    overrides, custom_method = _mark_custom_parts(overrides, resume, velocity_net=velocity_net, encoder_net=encoder_net,
                                                  dataset=dataset)
    out = run_dir_asked(overrides, config_file)
    if (resume and not (out / "config.yaml").exists() and asks_auto_beta(overrides, config_file)
            and (out / "pilots").is_dir()):
        resume = False  # stopped during its pilots: the same command starts it, reusing the finished pilots
    cfg = prepare_run_dir(out, resume, overrides, config_file, custom_method)
    if cfg.beta == "auto":  # pilot runs pick kl_target and the initial beta (training/auto_beta.py)
        resolve_auto_beta(cfg, train, velocity_net, encoder_net, dataset)
        validate(cfg)
    with ExitStack() as cleanup:
        ctx = init_distributed(cfg.device)
        cleanup.callback(shutdown_distributed, ctx)
        return _train(cfg, ctx, resume=resume, velocity_net=velocity_net, encoder_net=encoder_net, cleanup=cleanup,
                      dataset=dataset, custom_method=custom_method)


def _mark_custom_parts(overrides: dict, resume: bool, *, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
                       dataset=None) -> tuple[dict, Method | None]:
    """``overrides`` with what a user's own parts record in the config (``method: custom``; for a new run also
    ``model``, ``data`` and ``encoder: custom``), and the user's own :class:`Method` instance (None: a name)."""
    custom_method = overrides.get("method") if isinstance(overrides.get("method"), Method) else None
    if custom_method is not None:
        overrides = {**overrides, "method": CUSTOM_METHOD}
    if velocity_net is not None and not resume:
        overrides = {**overrides, "model": "custom"}
    if dataset is not None and not resume:
        if overrides.get("data", CUSTOM_DATA) != CUSTOM_DATA:
            raise StraightflowError(f"both data={overrides['data']!r} and dataset= given: pass one of them")
        overrides = {**overrides, "data": CUSTOM_DATA}
    if encoder_net is not None and not resume:
        overrides = {**overrides, "encoder": "custom"}
    return overrides, custom_method


def _train(cfg: TrainConfig, ctx: DistContext, *, resume: bool, velocity_net: nn.Module | None,
           encoder_net: nn.Module | None, cleanup: ExitStack, dataset=None,
           custom_method: Method | None = None) -> Path:
    """Train the run of ``cfg`` (checked by :func:`train`) on this rank, section by section: check the request,
    load the data, build what trains, take the run directory's lock, restore the latest checkpoint, open the
    streamed batches, prepare the run directory (rank 0), then the steps (:func:`_run_steps`). ``cleanup`` closes
    what the sections open (the lock, the DataLoader, the monitor, the signal handlers) when train() returns."""
    _check_request(cfg, ctx, velocity_net=velocity_net, encoder_net=encoder_net, custom_method=custom_method)
    ckpt = latest_checkpoint(Path(cfg.out)) if resume else None
    saved = load_train_state(ckpt) if ckpt is not None else None
    data = _load_training_data(cfg, saved, dataset)
    state = _setup(cfg, ctx, data, velocity_net=velocity_net, encoder_net=encoder_net, custom_method=custom_method)
    if ctx.is_main:  # one writer per run directory, from here until train() returns
        cleanup.enter_context(FolderLock(state.out, "run directory"))
    _restore(state, ckpt, saved, resume=resume)
    if data.loader == "stream":  # a DataLoader per rank over its share of each epoch (docs/data.md)
        state.batches = _open_batches(state, saved, cleanup)
    state.meta = _run_meta(state, custom_method)
    if ctx.is_main:
        state.monitor = _open_run_dir(state, cleanup)
    ctx.barrier()
    _wrap_for_training(state)
    start_step = state.step
    _run_steps(state, cleanup)
    if start_step >= cfg.steps and ctx.is_main:
        print(f"straightflow: {state.out} is already trained to step {start_step} (asked for {cfg.steps})")
    return state.out


# ------------------------------------------------------------------ setup: before the first step


def _check_request(cfg: TrainConfig, ctx: DistContext, *, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
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


def _load_training_data(cfg: TrainConfig, saved: dict | None, dataset=None):
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


def _setup(cfg: TrainConfig, ctx: DistContext, data, *, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
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


def _restore(state: TrainState, ckpt: Path | None, saved: dict | None, *, resume: bool) -> None:
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


def _open_batches(state: TrainState, saved: dict | None, cleanup: ExitStack) -> BatchStream:
    """This rank's DataLoader over its share of each epoch, where a resumed run's sampler left off."""
    cfg, ctx = state.cfg, state.ctx
    train_items = state.data.train_dataset(labels=state.module.conditional)
    sampler = EpochSampler(len(train_items), state.local_batch, cfg.seed, ctx.rank, ctx.world_size)
    if saved is not None and "sampler" in saved:
        warning = sampler.load_state_dict(saved["sampler"])
        if warning and ctx.is_main:
            print(warning)
    workers = cfg.workers if cfg.workers >= 0 else auto_workers(ctx.world_size, train_items.rows)
    batches = BatchStream(train_items, sampler, workers, ctx.device)
    cleanup.callback(batches.close)
    return batches


def _run_meta(state: TrainState, custom_method: Method | None) -> dict:
    """What every checkpoint's ``meta.json`` says of the run beside the weights."""
    cfg, data, module = state.cfg, state.data, state.module
    meta = {
        "method": cfg.method if custom_method is None else f"{CUSTOM_METHOD}:{type(custom_method).__qualname__}",
        "model": (resolve_model_name(cfg, data) if cfg.model != "custom"
                  else f"custom:{type(module.velocity).__qualname__}"), "data": cfg.data,
        "shape": list(data.shape),
        "velocity_parameters": count_parameters(module.velocity),
        # what sampling needs without the data (Run.load, export; docs/portable.md)
        "sampling": {**data.sampling_state(), "prior": cfg.prior},
    }
    if module.conditional:
        meta["classes"] = list(data.class_names)
    return meta


def _open_run_dir(state: TrainState, cleanup: ExitStack) -> TrainingMonitor | None:
    """Rank 0: write the config, cut the logs back to ``state.step``, open the monitor (returned; None without
    ``--tensorboard`` / ``--eval-every``) and print what trains."""
    cfg, out = state.cfg, state.out
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    truncate_records(out / "stats.jsonl", state.step)
    truncate_records(out / QUALITY_FILE, state.step)
    monitor = None
    if cfg.tensorboard or cfg.eval_every:
        monitor = _build_monitor(state)
        cleanup.callback(monitor.close)
    print(_banner(state))
    return monitor


def _build_monitor(state: TrainState) -> TrainingMonitor:
    """Rank 0's :class:`TrainingMonitor` for ``--tensorboard`` / ``--eval-every`` (docs/monitoring.md)."""
    cfg, device = state.cfg, state.ctx.device
    probe = None
    if cfg.eval_every:
        # the training streams stay untouched
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            probe = QualityProbe(state.data, int_list("eval_nfe", cfg.eval_nfe), n=cfg.eval_n,
                                 solver=state.method.default_solver, prior=state.prior,
                                 num_classes=state.module.num_classes, device=device, draws=cfg.eval_draws,
                                 split="validation" if cfg.validation_fraction > 0 else "heldout")
    return TrainingMonitor(state.out / TENSORBOARD_DIR if cfg.tensorboard else None,
                           state.out / QUALITY_FILE if cfg.eval_every else None, probe, state.step)


def _banner(state: TrainState) -> str:
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


def _wrap_for_training(state: TrainState) -> None:
    """Wrap the module in DDP across several ranks, say where ``--amp`` / ``--compile`` cannot apply, train mode."""
    module, ctx = state.module, state.ctx
    device = ctx.device
    state.train_module = (DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
                          if ctx.enabled else module)
    note = _speed_note(state.cfg, module.velocity, device)
    if note and ctx.is_main:
        print(note)
    module.train()


def _speed_note(cfg: TrainConfig, velocity, device: torch.device) -> str | None:
    """Where ``--amp bf16`` / ``--compile`` cannot apply, say so (the UNet applies both
    itself on CUDA, to training and sampling alike; weights stay float32)."""
    if cfg.amp == "none" and not cfg.compile:
        return None
    if device.type != "cuda":
        return f"note: --amp/--compile apply on CUDA only; training on {device} in float32, uncompiled"
    if not hasattr(velocity, "use_compile"):
        return (f"note: --amp/--compile are implemented for the UNet; this {type(velocity).__name__} trains in "
                "float32, uncompiled")
    return None


# ------------------------------------------------------------------ the steps


def _run_steps(state: TrainState, cleanup: ExitStack) -> None:
    """The loop, from ``state.step`` to ``cfg.steps``; SIGINT / SIGTERM finish the step, checkpoint it and raise
    :class:`TrainingInterrupted`."""
    cfg = state.cfg
    t_start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not (cfg.progress and state.ctx.is_main), desc="train",
               dynamic_ncols=True, mininterval=0.5)
    stats_file = open(state.out / "stats.jsonl", "a") if state.ctx.is_main else None
    window = LogWindow(bar, stats_file, t_start)
    stop = cleanup.enter_context(StopSignals(state.out))
    try:
        for step in range(state.step, cfg.steps):
            lr = _set_lr(state, step)
            batch, labels = _draw_batch(state)
            loss, stats = _compute_loss(state, batch, labels)
            if not torch.isfinite(loss):  # stop at once: nothing non-finite reaches the weights or a checkpoint
                raise _diverged(state, step + 1, f"the loss is {float(loss.detach())}")
            _optimizer_step(state, loss, stats)
            state.ema.update(step)
            if state.aux is not None:  # e.g. a discriminator's own optimizer step
                stats.update(state.aux.step(state.generator))
            if state.budget is not None:
                _kl_budget_step(state, stats)
            window.add(stats)
            state.step = step + 1
            bar.update(1)
            if _due(state.step, cfg.log_every, cfg.steps):
                _log(state, window, lr)
            saved = _due(state.step, cfg.ckpt_every, cfg.steps)
            if saved:
                _checkpoint(state)
            if (state.monitor is not None and state.monitor.probe is not None
                    and _due(state.step, cfg.eval_every, cfg.steps)):
                _quality_check(state, window)
            _stop_on_signal(state, stop, saved=saved)
    finally:
        bar.close()
        if stats_file:
            stats_file.close()


def _due(done: int, every: int, steps: int) -> bool:
    """Whether a periodic action falls after step ``done``: every ``every`` steps, and after the last."""
    return done % every == 0 or done == steps


def _set_lr(state: TrainState, step: int) -> float:
    """The learning rate of ``step`` (linear warm-up over ``warmup_steps``), set on the optimizer and returned."""
    lr = state.cfg.lr * min(1.0, (step + 1) / max(1, state.cfg.warmup_steps))
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _draw_batch(state: TrainState) -> tuple:
    """This rank's next batch and its labels (None for unlabelled data; only a conditional module reads them): from
    the DataLoader (augmented with the generator), else drawn from the in-memory data with the generator."""
    if state.batches is not None:
        batch, labels = state.batches.next()
        return state.data.augment(batch, state.generator), labels
    return state.data.sample_train(state.local_batch, state.generator)


def _compute_loss(state: TrainState, batch, labels) -> tuple[torch.Tensor, dict]:
    """The loss and stats of ``batch`` (the coupling's and the objective's draws from the generator)."""
    if state.module.conditional:
        return state.train_module(batch, state.generator, labels)
    return state.train_module(batch, state.generator)


def _optimizer_step(state: TrainState, loss: torch.Tensor, stats: dict) -> None:
    """Backward, clip (``--grad-clip``, its norm into ``stats``) and step."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if state.cfg.grad_clip > 0:
        stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(state.params, state.cfg.grad_clip).detach()
    state.optimizer.step()


def _kl_budget_step(state: TrainState, stats: dict) -> None:
    """One dual step of the KL budget on the KL of the global batch: every rank holds the same beta."""
    kl = float(state.ctx.all_mean(stats["kl"].detach().float().reshape(1)))
    state.method.set_beta(state.module, state.budget.update(kl))


def _log(state: TrainState, window: LogWindow, lr: float) -> None:
    """The window's mean stats over every rank, as of ``state.step``: a line of ``stats.jsonl``, the monitor's
    scalars, the bar's loss; a non-finite mean is a divergence. Starts the next window."""
    keys = sorted(window.sums)
    means = state.ctx.all_mean(torch.stack([window.sums[k].float() for k in keys]) / window.count).tolist()
    now = time.perf_counter()
    record = {"step": state.step, **dict(zip(keys, means)), "lr": lr,
              "steps_per_sec": window.count / max(now - window.t_last, 1e-9)}
    if state.budget is not None:  # the controller's state after this step (kl above: the window's mean batch KL)
        record.update(state.budget.stats())
    if not all(math.isfinite(v) for v in means):
        raise StraightflowError(f"training diverged at step {state.step}: loss is {record.get('loss')} (lower --lr or "
                                "set --grad-clip)")
    if window.stats_file:
        window.stats_file.write(json.dumps(record) + "\n")
        window.stats_file.flush()
    if state.monitor is not None:
        state.monitor.log_stats(record)
    window.bar.set_postfix(loss=f"{record['loss']:.4f}")
    window.sums, window.count, window.t_last = {}, 0, now


def _checkpoint(state: TrainState) -> None:
    """Checkpoint ``state.step``: every rank gathers its random state, rank 0 writes (never broken weights)."""
    step, ctx, budget = state.step, state.ctx, state.budget
    if not all(bool(torch.isfinite(p).all()) for p in (*state.module.parameters(), *state.ema.shadow.parameters())):
        raise _diverged(state, step, "the weights are not finite")  # never write (nor prune for) a broken checkpoint
    rngs = rng_states(ctx, state.generator)
    if budget is not None and len(set(ctx.gather_objects(budget.log_beta))) > 1:  # never on one rank; a guard for DDP
        raise StraightflowError(f"the ranks' KL-budget betas differ at step {step}: the KL was not averaged "
                                "across ranks")
    if ctx.is_main:
        train_state = {"optimizer": state.optimizer.state_dict(), "step": step, **rngs}
        if state.batches is not None:  # the epoch sampler: which rows the next batches are
            train_state["sampler"] = state.batches.state_dict()
        if state.aux is not None:
            train_state["aux"] = state.aux.state_dict()
        if budget is not None:
            train_state["kl_budget"] = budget.state_dict()
        save_checkpoint(state.out, step, state.module.state_dict(), state.ema.state_dict(), train_state, state.meta,
                        state.cfg.keep_checkpoints)
    ctx.barrier()


def _diverged(state: TrainState, step: int, what: str) -> StraightflowError:
    """The error of a run that diverged at ``step``, saying which checkpoint is intact."""
    last = latest_checkpoint(state.out)
    kept = f"the last checkpoint ({last.name}) is intact" if last is not None else "no checkpoint was written"
    return StraightflowError(f"training diverged at step {step}: {what} (lower --lr or set --grad-clip); {kept}")


def _quality_check(state: TrainState, window: LogWindow) -> None:
    """Rank 0: the monitor's quality check of the EMA weights, a line under the bar; its time is not training time."""
    t_check = time.perf_counter()
    # rank 0 only; no collective, the other ranks wait at the next one
    result = state.monitor.check(state.step, state.ema.shadow.velocity)
    window.bar.write(summary_line(state.step, result, state.monitor.probe.nfes))
    window.t_last += time.perf_counter() - t_check  # steps/s counts training only


def _stop_on_signal(state: TrainState, stop: StopSignals, *, saved: bool) -> None:
    """After a step: on SIGINT / SIGTERM (any rank's), keep the finished step (checkpointed unless ``saved``
    already) and raise :class:`TrainingInterrupted`."""
    signum = _stop_signal(state, stop)
    done, out = state.step, state.out
    if signum and done < state.cfg.steps:  # SIGINT / SIGTERM: keep the finished step, then stop
        if not saved:
            _checkpoint(state)
        raise TrainingInterrupted(f"interrupted at step {done}; checkpoint step-{done:06d} written; "
                                  f"continue with: straightflow train --out {shlex.quote(str(out))} --resume",
                                  signum, step=done, checkpoint=out / "checkpoints" / f"step-{done:06d}")


def _stop_signal(state: TrainState, stop: StopSignals) -> int:
    """The signal that asked to stop (0: none); under DDP, any rank's, so all ranks stop at the same step."""
    if not state.ctx.enabled:
        return stop.signum or 0
    return int(state.ctx.all_max(torch.tensor([float(stop.signum or 0)], device=state.ctx.device)).item())
