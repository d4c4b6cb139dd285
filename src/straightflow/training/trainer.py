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
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ..checkpoint import latest_checkpoint, load_train_state, save_checkpoint
from ..config import TrainConfig, int_list, save_config, validate
from ..data import CUSTOM_DATA, BatchStream, EpochSampler, auto_workers
from ..distributed import DistContext, init_distributed, shutdown_distributed
from ..errors import StraightflowError, TrainingInterrupted
from ..locks import FolderLock
from ..methods import CUSTOM_METHOD, Method
from .auto_beta import resolve_auto_beta
from .monitor import QUALITY_FILE, TENSORBOARD_DIR, QualityProbe, TrainingMonitor, summary_line
from .plan import dry_run_train
from .resume import StopSignals, rng_states
from .run_dir import asks_auto_beta, prepare_run_dir, run_dir_asked, truncate_records
from .setup import banner, build_state, check_request, load_training_data, restore, run_meta
from .state import LogWindow, TrainState


def train(config_file: str | None = None, resume: bool = False, velocity_net: nn.Module | None = None,
          encoder_net: nn.Module | None = None, dataset=None, *, dry_run: bool = False, **overrides) -> Path:
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
    ``dry_run``: check everything the run would check (the config, the data and its shape, the run directory,
    a resumed run's checkpoint, ``--beta auto``'s pilots), print what would train and return; nothing is written.
    """
    overrides, custom_method = _mark_custom_parts(overrides, resume, velocity_net=velocity_net, encoder_net=encoder_net,
                                                  dataset=dataset)
    out = run_dir_asked(overrides, config_file)
    if (resume and not (out / "config.yaml").exists() and asks_auto_beta(overrides, config_file)
            and (out / "pilots").is_dir()):
        resume = False  # stopped during its pilots: the same command starts it, reusing the finished pilots
    cfg = prepare_run_dir(out, resume, overrides, config_file, custom_method)
    if dry_run:
        return dry_run_train(cfg, resume=resume, velocity_net=velocity_net, encoder_net=encoder_net, dataset=dataset,
                             custom_method=custom_method)
    if cfg.beta == "auto":  # pilot runs pick kl_target and the initial beta (training/auto_beta.py)
        resolve_auto_beta(cfg, train, velocity_net=velocity_net, encoder_net=encoder_net, dataset=dataset)
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
    check_request(cfg, ctx, velocity_net=velocity_net, encoder_net=encoder_net, custom_method=custom_method)
    ckpt = latest_checkpoint(Path(cfg.out)) if resume else None
    saved = load_train_state(ckpt) if ckpt is not None else None
    data = load_training_data(cfg, saved, dataset)
    state = build_state(cfg, ctx, data, velocity_net=velocity_net, encoder_net=encoder_net, custom_method=custom_method)
    if ctx.is_main:  # one writer per run directory, from here until train() returns
        cleanup.enter_context(FolderLock(state.out, "run directory"))
    restore(state, ckpt, saved, resume=resume)
    if data.loader == "stream":  # a DataLoader per rank over its share of each epoch (docs/data.md)
        state.batches = _open_batches(state, saved, cleanup)
    state.meta = run_meta(state, custom_method)
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
    print(banner(state))
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


def lr_at(cfg, step: int) -> float:
    """The learning rate of ``step`` under ``cfg``'s warmup and ``lr_schedule``."""
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_schedule == "cosine" and step >= cfg.warmup_steps:
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        lr *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
    return lr


def _set_lr(state: TrainState, step: int) -> float:
    """The learning rate of ``step`` (linear warm-up over ``warmup_steps``, then constant or cosine decay to 0 at
    the last step), set on the optimizer and returned."""
    lr = lr_at(state.cfg, step)
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
