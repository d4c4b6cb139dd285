"""Training loop, EMA, checkpoints, run directories and DDP."""

from .trainer import build_training_module, train

__all__ = ["train", "build_training_module"]
