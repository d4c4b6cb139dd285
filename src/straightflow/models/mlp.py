"""MLP velocity network for vectors of any dimension."""

from __future__ import annotations

import torch
from torch import nn

from .embedding import LabelEmbedding, SinusoidalTimeEmbedding, conditioning


class MLPVelocity(nn.Module):
    """v_theta(x_t, t) for flat data of dimension ``dim``.

    The time is embedded with sinusoidal features and a two-layer MLP, then
    added to every hidden layer (a FiLM-free, cheap conditioning that works
    much better than concatenating a raw scalar t). ``out_mult`` multiplies the
    output size (2 for an encoder predicting mean and log-variance).
    ``num_classes > 0`` makes it class-conditional, ``forward(x, t, y)``: a label
    embedding (with a null class, used when ``y`` is None) is added to the time's.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 3, time_dim: int = 64, out_mult: int = 1,
                 num_classes: int = 0):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError("MLP width and depth must be positive")
        self.dim = dim
        self.time_embed = nn.Sequential(SinusoidalTimeEmbedding(time_dim), nn.Linear(time_dim, width), nn.SiLU(),
                                        nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.act = nn.SiLU()
        self.out = nn.Linear(width, dim * out_mult)
        self.label_embed = LabelEmbedding(num_classes, width) if num_classes > 0 else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        temb = conditioning(self.time_embed(t), self.label_embed, y)
        h = self.act(self.inp(x.flatten(1)) + temb)
        for layer in self.hidden:
            h = self.act(layer(h) + temb)
        out = self.out(h)
        return out.view(shape[0], -1, *shape[2:]) if out.shape[1] != self.dim else out.view(shape)
