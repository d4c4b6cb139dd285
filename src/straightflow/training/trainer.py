"""The training loop: one function for every method, one process or many (DDP).

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
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ..checkpoint import latest_checkpoint, load_checkpoint_weights, load_into, load_train_state, save_checkpoint
from ..config import TrainConfig, apply_overrides, coerce, int_list, load_run_config, load_yaml, resolve_config, save_config, validate
from ..data import CUSTOM_DATA, BatchStream, DataOptions, EpochSampler, auto_workers, load_data
from ..data.pairs import PairData, read_manifest
from ..distributed import DistContext, init_distributed, shutdown_distributed
from ..errors import StraightflowError, TrainingInterrupted
from ..locks import FolderLock
from ..methods import CUSTOM_METHOD, Method, build_module, resolve_method
from ..models import count_parameters, resolve_model_name
from .auto_beta import RECORD_FILE as AUTO_RECORD
from .auto_beta import resolve_auto_beta
from .ema import EMA
from .monitor import QUALITY_FILE, TENSORBOARD_DIR, QualityProbe, TrainingMonitor, summary_line, summary_writer_class

#: config keys that may differ when a run is resumed (they do not change the result)
RESUMABLE_KEYS = {"steps", "device", "progress", "log_every", "ckpt_every", "keep_checkpoints", "out", "workers",
                  "tensorboard", "eval_every", "eval_nfe", "eval_n"}


def rank_seed(seed: int, rank: int) -> int:
    """Distinct, reproducible stream per (seed, rank)."""
    return (seed * 1_000_003 + rank * 7_919 + 12_345) % (2**63 - 1)


#: config fields a student takes from its teacher run's config unless given explicitly
INHERITED_FIELDS = (
    "data", "prior", "model", "width", "depth", "time_embed_dim", "heldout_fraction", "split_seed",
    "image_size", "data_root", "preset", "channels", "channel_mult", "num_res_blocks", "attn_resolutions", "dropout",
    "label_column", "conditional", "data_kind",
)


def inherit_teacher_config(cfg: TrainConfig, explicit: set[str], method: Method | None = None) -> None:
    """Fill ``cfg`` for training on ``cfg.pairs``: the data (and, for a teacher run, the
    architecture) from the pairs' manifest, ``teacher`` from the manifest, and
    ``init_from_teacher`` from the method (only when the teacher is a run); fields in
    ``explicit`` (given on the command line or in a config file) are kept."""
    manifest = read_manifest(cfg.pairs)
    tcfg = manifest.get("teacher_config") or {}
    for key in INHERITED_FIELDS:
        if key not in explicit and key in tcfg:
            setattr(cfg, key, coerce(key, tcfg[key]))
    teacher_run = manifest.get("teacher_kind", "run") == "run" and bool(manifest.get("teacher"))
    if not cfg.teacher and teacher_run:
        cfg.teacher = manifest["teacher"]
    if "init_from_teacher" not in explicit:
        cfg.init_from_teacher = bool(resolve_method(cfg, method).starts_from_teacher and cfg.teacher)


def _prepare_run_dir(out: Path, resume: bool, overrides: dict, config_file: str | None, method: Method | None = None) -> TrainConfig:
    saved = out / "config.yaml"
    if resume:
        if not saved.exists():
            raise StraightflowError(f"--resume given but {out} holds no run (no config.yaml)")
        cfg = load_run_config(saved)
        file_cfg = resolve_config(config_file, None).to_dict() if config_file else {}
        asked = {**{k: v for k, v in file_cfg.items()}, **overrides} if config_file else dict(overrides)
        for key, value in asked.items():
            key = key.replace("-", "_")
            if key in RESUMABLE_KEYS:
                continue
            if key == "beta" and value == "auto" and (out / AUTO_RECORD).exists():
                continue  # the rule resolved beta (and kl_target) when the run started: its saved values are the answer
            probe = TrainConfig()
            apply_overrides(probe, {key: value}, "command line")
            if getattr(probe, key) != getattr(cfg, key):
                raise StraightflowError(f"--resume: {key}={getattr(probe, key)!r} differs from the run's saved {key}={getattr(cfg, key)!r}")
        apply_overrides(cfg, {k: v for k, v in overrides.items() if k.replace('-', '_') in RESUMABLE_KEYS}, "command line")
        cfg.out = str(out)
        return validate(cfg)
    if saved.exists() or latest_checkpoint(out) is not None:
        raise StraightflowError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    cfg = resolve_config(config_file, overrides)
    cfg.out = str(out)
    if cfg.pairs:  # training on teacher pairs: take the teacher's data/model fields unless given
        explicit = {k.replace("-", "_") for k in [*overrides, *(load_yaml(config_file) if config_file else {})]}
        inherit_teacher_config(cfg, explicit, method)
    return cfg


def _asks_auto_beta(overrides: dict, config_file: str | None) -> bool:
    """Whether the command asks for ``--beta auto`` (on the command line, else in its config file)."""
    value = overrides.get("beta", load_yaml(config_file).get("beta") if config_file else None)
    return value == "auto"


def _truncate_stats(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in keep))


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
    out_value = overrides.get("out")
    if not out_value and config_file:
        out_value = load_yaml(config_file).get("out")
        if out_value is not None and not isinstance(out_value, str):
            raise StraightflowError(f"config key 'out' in {config_file} expects a folder name, got {out_value!r}")
    if not out_value:
        raise StraightflowError("no run directory given: pass --out RUNDIR")
    out = Path(out_value)
    if resume and not (out / "config.yaml").exists() and _asks_auto_beta(overrides, config_file) and (out / "pilots").is_dir():
        resume = False  # stopped during its pilots: the same command starts it, reusing the finished pilots
    cfg = _prepare_run_dir(out, resume, overrides, config_file, custom_method)
    if cfg.beta == "auto":  # pilot runs pick kl_target and the initial beta (training/auto_beta.py)
        resolve_auto_beta(cfg, train, velocity_net, encoder_net, dataset)
        validate(cfg)
    with ExitStack() as cleanup:
        ctx = init_distributed(cfg.device)
        cleanup.callback(shutdown_distributed, ctx)
        return _train(cfg, ctx, resume, velocity_net, encoder_net, cleanup, dataset, custom_method)


def rng_states(ctx: DistContext, generator: torch.Generator) -> dict:
    """Every rank's random state, for a checkpoint: its batch generator, the CPU RNG and, when
    the rank trains on CUDA, its device's RNG (dropout and other global CUDA draws); one list
    entry per rank, all tensors, so ``torch.load(weights_only=True)`` reads them."""
    states = {"generators": ctx.gather_objects(generator.get_state()), "torch_rng": ctx.gather_objects(torch.get_rng_state())}
    if ctx.device.type == "cuda":
        states["cuda_rng"] = ctx.gather_objects(torch.cuda.get_rng_state(ctx.device))
    return states


def restore_rng_states(state: dict, ctx: DistContext, generator: torch.Generator) -> str | None:
    """Set this rank's random state from a checkpoint's (see :func:`rng_states`); returns a
    warning when some stream cannot be restored and starts afresh instead."""
    gens = state.get("generators", [])
    if len(gens) != ctx.world_size:
        return f"warning: checkpoint was written by {len(gens)} ranks, resuming on {ctx.world_size}: random streams restart"
    generator.set_state(gens[ctx.rank])
    torch.set_rng_state(state["torch_rng"][ctx.rank])
    if ctx.device.type == "cuda":
        cuda = state.get("cuda_rng")
        if cuda is None or len(cuda) != ctx.world_size:
            return "warning: the checkpoint holds no CUDA random state (written on the CPU or by an older version): the CUDA stream (dropout) restarts"
        torch.cuda.set_rng_state(cuda[ctx.rank], ctx.device)
    return None


class _StopSignals:
    """``with _StopSignals(out) as stop:`` SIGINT and SIGTERM only set ``stop.signum``; the training
    loop finishes its step, checkpoints it and raises :class:`TrainingInterrupted`. A second signal
    stops at once (the last checkpoint stays intact). Handlers are installed only in the main
    thread (Python allows no other) and the previous ones are restored on exit."""

    def __init__(self, out: Path):
        self.out, self.signum = out, None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise TrainingInterrupted(f"interrupted again before the checkpoint was written; the last checkpoint is intact; "
                                      f"continue with: straightflow train --out {shlex.quote(str(self.out))} --resume", signum)
        self.signum = signum

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def _speed_note(cfg: TrainConfig, velocity, device: torch.device) -> str | None:
    """Where ``--amp bf16`` / ``--compile`` cannot apply, say so (the UNet applies both
    itself on CUDA, to training and sampling alike; weights stay float32)."""
    if cfg.amp == "none" and not cfg.compile:
        return None
    if device.type != "cuda":
        return f"note: --amp/--compile apply on CUDA only; training on {device} in float32, uncompiled"
    if not hasattr(velocity, "use_compile"):
        return f"note: --amp/--compile are implemented for the UNet; this {type(velocity).__name__} trains in float32, uncompiled"
    return None


def _build_monitor(cfg: TrainConfig, out: Path, data, prior, module, method: Method, start_step: int, device: torch.device) -> TrainingMonitor:
    """Rank 0's :class:`TrainingMonitor` for ``--tensorboard`` / ``--eval-every`` (docs/monitoring.md)."""
    probe = None
    if cfg.eval_every:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the training streams stay untouched
            probe = QualityProbe(data, int_list("eval_nfe", cfg.eval_nfe), n=cfg.eval_n, solver=method.default_solver, prior=prior,
                                 num_classes=module.num_classes, device=device, draws=cfg.eval_draws,
                                 split="validation" if cfg.validation_fraction > 0 else "heldout")
    return TrainingMonitor(out / TENSORBOARD_DIR if cfg.tensorboard else None, out / QUALITY_FILE if cfg.eval_every else None,
                           probe, start_step)


def _train(cfg: TrainConfig, ctx: DistContext, resume: bool, velocity_net: nn.Module | None, encoder_net: nn.Module | None,
           cleanup: ExitStack, dataset=None, custom_method: Method | None = None) -> Path:
    out = Path(cfg.out)
    device = ctx.device
    if cfg.batch_size % ctx.world_size:
        raise StraightflowError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} ranks")
    local_batch = cfg.batch_size // ctx.world_size

    if encoder_net is not None and not resolve_method(cfg, custom_method).accepts_encoder:
        raise StraightflowError(f"encoder_net= is a learned coupling's encoder (the curvature method's); --method {cfg.method} has none")
    if cfg.model == "custom" and velocity_net is None:
        raise StraightflowError(f"{out} was trained with a user's own velocity module (model: custom): pass velocity_net= to train(...) to resume it")
    if cfg.tensorboard:
        summary_writer_class()  # a missing package is an error on every rank, before any work
    ckpt = latest_checkpoint(out) if resume else None
    state = load_train_state(ckpt) if ckpt is not None else None
    options = DataOptions.of(cfg)
    if cfg.loader == "auto" and state is not None:  # resume the way the run started, whatever auto would choose today
        options = replace(options, loader="stream" if "sampler" in state else "memory")
    if cfg.data == CUSTOM_DATA and dataset is None:
        raise StraightflowError(f"{out} trains on a user's own Dataset (data: custom): pass dataset= to train(...) to resume it")
    data = load_data(cfg.data, options if not cfg.pairs else replace(options, loader="auto"), require_labels=cfg.conditional, dataset=dataset)
    if cfg.pairs:  # batches are (x*, z) teacher pairs; evaluation data stays cfg.data
        data = PairData.open(cfg.pairs, base=data, labels=cfg.conditional)
    streaming = data.loader == "stream"
    if not streaming:
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

    if ctx.is_main:  # one writer per run directory, from here until train() returns
        cleanup.enter_context(FolderLock(out, "run directory"))
    start_step = 0
    if resume and ckpt is None and ctx.is_main:  # stopped before its first checkpoint: nothing to lose by starting over
        print(f"straightflow: note: {out} has no checkpoint yet; training it from step 0 with its saved config", file=sys.stderr)
    if ckpt is not None:
        load_into(module, load_checkpoint_weights(ckpt, "model.safetensors"), ckpt / "model.safetensors")
        load_into(ema.shadow, load_checkpoint_weights(ckpt, "ema.safetensors"), ckpt / "ema.safetensors")
        optimizer.load_state_dict(state["optimizer"])
        if aux is not None and "aux" in state:
            aux.load_state_dict(state["aux"])
        if budget is not None:
            if "kl_budget" not in state:
                raise StraightflowError(f"{ckpt} holds no KL-budget state although the run has kl_target {cfg.kl_target:g}")
            budget.load_state_dict(state["kl_budget"])
        start_step = int(state["step"])
        warning = restore_rng_states(state, ctx, generator)
        if warning and ctx.is_main:
            print(warning)
    if budget is not None:
        method.set_beta(module, budget.beta)
    batches = None
    if streaming:  # a DataLoader per rank over its share of each epoch (docs/data.md)
        train_items = data.train_dataset(labels=module.conditional)
        sampler = EpochSampler(len(train_items), local_batch, cfg.seed, ctx.rank, ctx.world_size)
        if state is not None and "sampler" in state:
            warning = sampler.load_state_dict(state["sampler"])
            if warning and ctx.is_main:
                print(warning)
        workers = cfg.workers if cfg.workers >= 0 else auto_workers(ctx.world_size, train_items.rows)
        batches = BatchStream(train_items, sampler, workers, device)
        cleanup.callback(batches.close)

    meta = {
        "method": cfg.method if custom_method is None else f"{CUSTOM_METHOD}:{type(custom_method).__qualname__}",
        "model": resolve_model_name(cfg, data) if cfg.model != "custom" else f"custom:{type(module.velocity).__qualname__}",
        "data": cfg.data,
        "shape": list(data.shape),
        "velocity_parameters": count_parameters(module.velocity),
        # what sampling needs without the data (Run.load, export; docs/portable.md)
        "sampling": {**data.sampling_state(), "prior": cfg.prior},
    }
    if module.conditional:
        meta["classes"] = list(data.class_names)
    n_params = meta["velocity_parameters"]
    monitor = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        _truncate_stats(out / "stats.jsonl", start_step)
        _truncate_stats(out / QUALITY_FILE, start_step)
        if cfg.tensorboard or cfg.eval_every:
            monitor = _build_monitor(cfg, out, data, prior, module, method, start_step, device)
            cleanup.callback(monitor.close)
        extra = count_parameters(module) - n_params
        print(
            f"straightflow: training {cfg.method} on {data.describe()} | model {meta['model']} "
            f"{n_params:,} parameters" + (f" (+{extra:,} in the coupling)" if extra else "")
            + (f" | DataLoader, {batches.workers} worker{'s' if batches.workers != 1 else ''} per rank" if batches is not None else "")
            + (f" | conditional on {data.num_classes} classes, label dropout {cfg.cond_drop:g}" if module.conditional else "")
            + f" | device {device} x{ctx.world_size} | run dir {out}"
        )
    ctx.barrier()

    train_module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else module
    note = _speed_note(cfg, module.velocity, device)
    if note and ctx.is_main:
        print(note)
    module.train()

    def diverged(step: int, what: str) -> StraightflowError:
        last = latest_checkpoint(out)
        kept = f"the last checkpoint ({last.name}) is intact" if last is not None else "no checkpoint was written"
        return StraightflowError(f"training diverged at step {step}: {what} (lower --lr or set --grad-clip); {kept}")

    def checkpoint(step: int) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in (*module.parameters(), *ema.shadow.parameters())):
            raise diverged(step, "the weights are not finite")  # never write (nor prune for) a broken checkpoint
        rngs = rng_states(ctx, generator)
        if budget is not None and len(set(ctx.gather_objects(budget.log_beta))) > 1:  # never on one rank; a guard for DDP
            raise StraightflowError(f"the ranks' KL-budget betas differ at step {step}: the KL was not averaged across ranks")
        if ctx.is_main:
            state = {"optimizer": optimizer.state_dict(), "step": step, **rngs}
            if batches is not None:  # the epoch sampler: which rows the next batches are
                state["sampler"] = batches.state_dict()
            if aux is not None:
                state["aux"] = aux.state_dict()
            if budget is not None:
                state["kl_budget"] = budget.state_dict()
            save_checkpoint(out, step, module.state_dict(), ema.state_dict(), state, meta, cfg.keep_checkpoints)
        ctx.barrier()

    def stop_signal(stop: _StopSignals) -> int:
        """The signal that asked to stop (0: none); under DDP, any rank's, so all ranks stop at the same step."""
        if not ctx.enabled:
            return stop.signum or 0
        return int(ctx.all_max(torch.tensor([float(stop.signum or 0)], device=device)).item())

    sums: dict[str, torch.Tensor] = {}
    count = 0
    t_last = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (cfg.progress and ctx.is_main), desc="train", dynamic_ncols=True, mininterval=0.5)
    stats_file = open(out / "stats.jsonl", "a") if ctx.is_main else None
    stop = cleanup.enter_context(_StopSignals(out))
    try:
        for step in range(start_step, cfg.steps):
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if batches is not None:
                batch, labels = batches.next()
                batch = data.augment(batch, generator)
                loss, stats = train_module(batch, generator, labels) if module.conditional else train_module(batch, generator)
            elif module.conditional:
                batch, labels = data.sample_train_labeled(local_batch, generator)
                loss, stats = train_module(batch, generator, labels)
            else:
                loss, stats = train_module(data.sample_train(local_batch, generator), generator)
            if not torch.isfinite(loss):  # stop at once: nothing non-finite reaches the weights or a checkpoint
                raise diverged(step + 1, f"the loss is {float(loss.detach())}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip).detach()
            optimizer.step()
            ema.update(step)
            if aux is not None:  # e.g. a discriminator's own optimizer step
                stats.update(aux.step(generator))
            if budget is not None:  # one dual step on the KL of the global batch: every rank holds the same beta
                method.set_beta(module, budget.update(float(ctx.all_mean(stats["kl"].detach().float().reshape(1)))))
            for k, v in stats.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            count += 1
            done = step + 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.steps:
                keys = sorted(sums)
                means = ctx.all_mean(torch.stack([sums[k].float() for k in keys]) / count).tolist()
                now = time.perf_counter()
                record = {"step": done, **dict(zip(keys, means)), "lr": lr, "steps_per_sec": count / max(now - t_last, 1e-9)}
                if budget is not None:  # the controller's state after this step (kl above: the window's mean batch KL)
                    record.update(budget.stats())
                if not all(math.isfinite(v) for v in means):
                    raise StraightflowError(f"training diverged at step {done}: loss is {record.get('loss')} (lower --lr or set --grad-clip)")
                if stats_file:
                    stats_file.write(json.dumps(record) + "\n")
                    stats_file.flush()
                if monitor is not None:
                    monitor.log_stats(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                sums, count, t_last = {}, 0, now
            saved = done % cfg.ckpt_every == 0 or done == cfg.steps
            if saved:
                checkpoint(done)
            if monitor is not None and monitor.probe is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
                t_check = time.perf_counter()
                result = monitor.check(done, ema.shadow.velocity)  # rank 0 only; no collective, the other ranks wait at the next one
                bar.write(summary_line(done, result, monitor.probe.nfes))
                t_last += time.perf_counter() - t_check  # steps/s counts training only
            signum = stop_signal(stop)
            if signum and done < cfg.steps:  # SIGINT / SIGTERM: keep the finished step, then stop
                if not saved:
                    checkpoint(done)
                raise TrainingInterrupted(f"interrupted at step {done}; checkpoint step-{done:06d} written; "
                                          f"continue with: straightflow train --out {shlex.quote(str(out))} --resume",
                                          signum, step=done, checkpoint=out / "checkpoints" / f"step-{done:06d}")
    finally:
        bar.close()
        if stats_file:
            stats_file.close()
    if start_step >= cfg.steps and ctx.is_main:
        print(f"straightflow: {out} is already trained to step {start_step} (asked for {cfg.steps})")
    return out
