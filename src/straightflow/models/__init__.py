"""Velocity networks. ``build_model`` picks one from the config.

:data:`MODELS` is a static table: name -> builder(cfg, data_shape, out_mult, size, num_classes)
returning an ``nn.Module`` with ``forward(x, t)`` (``forward(x, t, y)`` when
``num_classes > 0``); ``size`` is "full" (the velocity net) or "small" (an encoder
about 20x smaller, curvature paper Table 2). Any user module with that ``forward``
works too (``sf.train(velocity_net=...)``).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import StraightflowError
from .mlp import MLPVelocity
from .unet import UNet, build_unet

ModelBuilder = Callable[..., nn.Module]


def _build_mlp(cfg, shape, out_mult: int = 1, size: str = "full", num_classes: int = 0) -> nn.Module:
    dim = 1
    for s in shape:
        dim *= s
    width = cfg.width if size == "full" else max(16, cfg.width // 5)
    depth = cfg.depth if size == "full" else max(1, cfg.depth - 1)
    return MLPVelocity(dim, width=width, depth=depth, time_dim=cfg.time_embed_dim, out_mult=out_mult,
                       num_classes=num_classes)


MODELS: dict[str, ModelBuilder] = {"mlp": _build_mlp, "unet": build_unet}


def resolve_model_name(cfg, data) -> str:
    if cfg.model != "auto":
        return cfg.model
    images = data.kind == "image" or (data.kind == "latent" and len(data.shape) == 3)  # C x H x W latents: a UNet too
    return "unet" if images else "mlp"


def model_classes(cfg, data) -> int:
    """Classes of the label embedding: the data's class count for a conditional run, else 0."""
    return data.num_classes if cfg.conditional else 0


def build_model(cfg, data, out_mult: int = 1, size: str = "full") -> nn.Module:
    name = resolve_model_name(cfg, data)
    if name == "custom":
        raise StraightflowError("this run was trained with a user's own velocity module (model: custom): pass it "
                                "again, e.g. Run.load(RUNDIR, velocity_net=MyNet(...))")
    if name not in MODELS:
        raise StraightflowError(f"unknown model {name!r}: use one of {', '.join(sorted(MODELS))} or auto")
    return MODELS[name](cfg, tuple(data.shape), out_mult=out_mult, size=size, num_classes=model_classes(cfg, data))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["MLPVelocity", "UNet", "MODELS", "build_model", "count_parameters", "resolve_model_name"]
