"""Time embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal features of t in [0, 1], scaled by 1000
    so that the frequencies span the unit interval (as in DDPM/NCSN++)."""

    def __init__(self, dim: int, max_period: float = 10_000.0, scale: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError("time embedding dim must be even")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t.float() * self.scale)[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class LabelEmbedding(nn.Module):
    """A learned vector per class plus one for the null class (index ``num_classes``),
    added to the time embedding of a conditional network (``docs/conditional.md``).

    ``forward(y, n, device)``: ``y`` (n,) int64 labels, or None for the null class.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError("a label embedding needs at least one class")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, y: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if y is None:
            y = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        elif y.shape != (n,):
            raise ValueError(f"labels of shape {tuple(y.shape)} for a batch of {n}")
        elif y.numel() and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
            raise ValueError(f"labels must be in 0..{self.num_classes} ({self.num_classes} = the null class), got "
                             f"{int(y.min())}..{int(y.max())}")
        return self.table(y.long())


def conditioning(time_emb: torch.Tensor, labels: "LabelEmbedding | None", y: torch.Tensor | None) -> torch.Tensor:
    """The time embedding plus the label embedding of ``y`` (an unconditional net refuses labels)."""
    if labels is None:
        if y is not None:
            raise ValueError("this network is unconditional (num_classes = 0) but was given labels")
        return time_emb
    return time_emb + labels(y, time_emb.shape[0], time_emb.device)
