"""The training loop for every method (one process or DDP), EMA, run directories."""

from .ema import EMA
from .run_dir import inherit_teacher_config
from .trainer import train

__all__ = ["train", "inherit_teacher_config", "EMA"]
