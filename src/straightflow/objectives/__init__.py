"""Objectives: what the network is asked to predict on the line (METHODS.md 3)."""

from .velocity import velocity_loss

__all__ = ["velocity_loss"]
