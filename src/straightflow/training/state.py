"""The state the training loop's sections share (:class:`TrainState`) and the steps between two log lines
(:class:`LogWindow`), as plain dataclasses (``training/trainer.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data import BatchStream
from ..distributed import DistContext
from ..methods import FlowTrainingModule, Method
from .ema import EMA
from .monitor import TrainingMonitor


@dataclass
class TrainState:
    """What the sections of the training loop share, on one rank: the run's config and ranks, what trains (the
    method's module and its DDP wrapper ``train_module``, the optimizer over ``params``, the EMA, the aux trainer,
    the ``--kl-target`` budget), where batches come from (``data``, in memory, or the streamed ``batches``; this
    rank's ``generator`` for every draw), rank 0's monitor, what each checkpoint records beside the weights
    (``meta``) and ``step``, the steps done so far."""

    cfg: TrainConfig
    ctx: DistContext
    out: Path
    data: object
    prior: object
    module: FlowTrainingModule
    method: Method
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema: EMA
    generator: torch.Generator
    aux: object | None
    budget: object | None
    local_batch: int
    train_module: nn.Module
    batches: BatchStream | None = None
    monitor: TrainingMonitor | None = None
    meta: dict = field(default_factory=dict)
    step: int = 0


@dataclass
class LogWindow:
    """The steps since the last log line (their summed stats, how many, when the window began) and where
    log lines go: the progress bar and rank 0's ``stats.jsonl``."""

    bar: tqdm
    stats_file: IO[str] | None
    t_last: float
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1
