"""The training loop for every method (one process or DDP), EMA, run directories."""

from .ema import EMA
from .trainer import inherit_teacher_config, train

__all__ = ["train", "inherit_teacher_config", "EMA"]
