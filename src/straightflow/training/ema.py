"""Exponential moving average of a module's parameters and buffers.

The decay warms up with the step count, ``min(decay, (1 + step) / (10 + step))``,
so short runs (a few thousand steps) get a useful average: a fixed 0.9999
over 4k steps would still be mostly the initial weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self._src_params = list(module.parameters())
        self._dst_params = list(self.shadow.parameters())
        self._src_buffers = list(module.buffers())
        self._dst_buffers = list(self.shadow.buffers())

    def effective_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward the module given at construction."""
        weight = 1.0 - self.effective_decay(step)
        torch._foreach_lerp_(self._dst_params, self._src_params, weight)
        for b_dst, b_src in zip(self._dst_buffers, self._src_buffers):
            b_dst.copy_(b_src)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
