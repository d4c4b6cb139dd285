"""A DDPM++-style UNet velocity network v_theta(x_t, t) for images.

Architecture (after Song et al. 2021's DDPM++ as configured in the curvature
paper's Table 4, written fresh here):

- sinusoidal time embedding of t (scaled by 1000) -> 2-layer MLP (4 x channels),
  plus a learned class embedding when ``num_classes > 0`` (``forward(x, t, y)``;
  ``y`` None = the null class of classifier-free guidance);
- a 3x3 input conv, then per resolution level ``num_res_blocks`` residual
  blocks (GroupNorm, SiLU, conv, + projected time embedding, GroupNorm, SiLU,
  dropout, conv; skip connections rescaled by 1/sqrt(2)), self-attention at
  the chosen resolutions, and a residual block with 2x2 average-pool
  downsampling between levels (BigGAN-style "resblock up/down");
- a middle block (residual, attention, residual);
- a mirrored decoder consuming the encoder's activations as skip connections,
  with nearest-neighbour upsampling residual blocks that restore the exact
  encoder size (so odd sizes such as 28 -> 14 -> 7 -> 4 -> 7 work);
- GroupNorm, SiLU and the output 3x3 conv, exposed as ``.out``. It is *not*
  zero-initialised (the curvature method zeroes its encoder's ``.out``).

``out_mult = 2`` doubles the output channels (the learned coupling's encoder:
mean and log-variance). Presets (:data:`PRESETS`) fill in the UNet fields.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StraightflowError
from ..formatting import parse_int_list
from .embedding import LabelEmbedding, SinusoidalTimeEmbedding, conditioning

#: Named UNet settings. ``mnist`` / ``cifar10``: the curvature paper's Table 4
#: (GPU). ``digits-cpu``: the CPU default, used automatically for 8x8 data.
PRESETS: dict[str, dict] = {
    "digits-cpu": dict(channels=32, channel_mult="1,2", num_res_blocks=2, attn_resolutions="", dropout=0.0),
    "mnist": dict(channels=32, channel_mult="2,2,2", num_res_blocks=2, attn_resolutions="", dropout=0.13),
    "cifar10": dict(channels=128, channel_mult="2,2,2", num_res_blocks=4, attn_resolutions="16", dropout=0.13),
}
UNET_FIELDS = ("channels", "channel_mult", "num_res_blocks", "attn_resolutions", "dropout")


def _groups(ch: int) -> int:
    g = min(32, max(1, ch // 4))
    while ch % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """Residual block with time-embedding injection; ``resample`` = None | "down" | "up"."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.norm0 = nn.GroupNorm(_groups(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)  # residual branch starts at zero (DDPM++ init_zero)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def _resample(self, x, size):
        if self.resample == "down":
            return F.avg_pool2d(x, 2, ceil_mode=True)
        if self.resample == "up":
            return F.interpolate(x, size=size, mode="nearest")
        return x

    def forward(self, x, emb, size=None):
        h = F.silu(self.norm0(x))
        h = self.conv0(self._resample(h, size))
        x = self._resample(x, size)
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv1(self.drop(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (h + x) * (1 / math.sqrt(2))


class SelfAttention(nn.Module):
    """Multi-head self-attention over pixels, residual, rescaled by 1/sqrt(2)."""

    def __init__(self, ch: int, head_dim: int = 64):
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, d)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(a)) * (1 / math.sqrt(2))


class Level(nn.Module):
    """A residual block followed by optional attention (one encoder/decoder stage)."""

    def __init__(self, cin, cout, emb_dim, dropout, attn: bool):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout)
        self.attn = SelfAttention(cout) if attn else None
        self.resample = None

    def forward(self, x, emb, size=None):
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        resolution: int,
        out_channels: int | None = None,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        amp: str = "none",
        compile: bool = False,
        num_classes: int = 0,
    ):
        super().__init__()
        if channels < 1 or num_res_blocks < 1 or not channel_mult or min(channel_mult) < 1:
            raise StraightflowError("UNet needs channels >= 1, num_res_blocks >= 1 and positive channel multipliers")
        self.amp, self.use_compile = amp, compile
        emb_dim = 4 * channels
        self.time_embed = nn.Sequential(SinusoidalTimeEmbedding(channels + channels % 2),
                                        nn.Linear(channels + channels % 2, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        ch, res, skips = channels, resolution, [channels]
        resolutions = []
        for level, mult in enumerate(channel_mult):
            if level > 0:
                self.down.append(ResBlock(ch, ch, emb_dim, dropout, "down"))
                res = (res + 1) // 2
                skips.append(ch)
            resolutions.append(res)
            for _ in range(num_res_blocks):
                self.down.append(Level(ch, channels * mult, emb_dim, dropout, res in attn_resolutions))
                ch = channels * mult
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), SelfAttention(ch),
                                  ResBlock(ch, ch, emb_dim, dropout)])
        for level in reversed(range(len(channel_mult))):
            for _ in range(num_res_blocks + 1):
                cout = channels * channel_mult[level]
                self.up.append(Level(ch + skips.pop(), cout, emb_dim, dropout, resolutions[level] in attn_resolutions))
                ch = cout
            if level > 0:
                self.up.append(ResBlock(ch, ch, emb_dim, dropout, "up"))
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = conditioning(self.time_embed(t), self.label_embed, y)
        h = self.conv_in(x)
        hs, sizes = [h], []
        for block in self.down:
            if block.resample == "down":
                sizes.append(h.shape[-2:])
            h = block(h, emb)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if block.resample == "up":
                h = block(h, emb, sizes.pop())
            else:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        fn = self._forward
        if self.use_compile and x.is_cuda:
            # compiled lazily per instance (the EMA copy gets its own, not this one's)
            if self.__dict__.get("_compiled_for") != id(self):
                self.__dict__["_compiled"] = torch.compile(self._forward)
                self.__dict__["_compiled_for"] = id(self)
            fn = self.__dict__["_compiled"]
        if self.amp == "bf16" and x.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return fn(x, t, y).float()
        return fn(x, t, y)

    def __getstate__(self):  # compiled functions are not copied or pickled
        state = self.__dict__.copy()
        state.pop("_compiled", None)
        state.pop("_compiled_for", None)
        return state


def _int_tuple(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(parse_int_list(text))
    except ValueError:
        raise StraightflowError(f"{name} must be comma-separated integers, got {text!r}") from None


def unet_settings(cfg, shape) -> dict:
    """The UNet fields after applying ``cfg.preset`` (or ``digits-cpu`` for 8x8 data).

    A preset fills every UNet field that still has its TrainConfig default;
    a field set to a non-default value wins over the preset (so a field set
    explicitly to its default is still overridden: use ``--preset none`` to
    take the UNet fields exactly as given).
    """
    from ..config import TrainConfig

    name = cfg.preset or ("digits-cpu" if tuple(shape[-2:]) == (8, 8) else "")
    if name == "none":
        name = ""
    elif name and name not in PRESETS:
        raise StraightflowError(f"unknown preset {name!r}: use one of {', '.join(sorted(PRESETS))} or none")
    defaults = TrainConfig()
    out = {k: getattr(cfg, k) for k in UNET_FIELDS}
    for k, v in PRESETS.get(name, {}).items():
        if out[k] == getattr(defaults, k):
            out[k] = v
    out["preset"] = name
    return out


def build_unet(cfg, shape, out_mult: int = 1, size: str = "full", num_classes: int = 0) -> UNet:
    """Registry builder (``MODELS["unet"]``). ``size="small"`` (the curvature
    method's encoder): a quarter of the channels and half the blocks per level,
    about 20x fewer parameters (for ``cifar10`` this is the ``mnist``-sized
    2.2M-parameter encoder of the paper's Table 4)."""
    if len(shape) != 3:
        raise StraightflowError(f"the UNet needs image data (C x H x W); got samples of shape {tuple(shape)} (use "
                                "--model mlp)")
    s = unet_settings(cfg, shape)
    channels, blocks = int(s["channels"]), int(s["num_res_blocks"])
    if size == "small":
        channels, blocks = max(8, channels // 4), max(1, blocks // 2)
    amp = cfg.amp  # validated with the config (config.validate)
    return UNet(
        in_channels=shape[0],
        resolution=max(shape[1], shape[2]),
        out_channels=shape[0] * out_mult,
        channels=channels,
        channel_mult=_int_tuple(s["channel_mult"], "channel_mult"),
        num_res_blocks=blocks,
        attn_resolutions=_int_tuple(s["attn_resolutions"], "attn_resolutions"),
        dropout=float(s["dropout"]),
        amp=amp,
        compile=bool(cfg.compile) and torch.cuda.is_available(),
        num_classes=num_classes,
    )
