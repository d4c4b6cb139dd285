"""What the diffusers and EDM adapters share: the denoiser type and per-row times."""

from __future__ import annotations

from typing import Callable

import torch

#: D(x, sigma): x (B, ...) in VE units, sigma (B,) -> the denoised x0_hat (B, ...)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batch_times(t, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def _per_row(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
