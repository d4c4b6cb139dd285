"""A torchcfm-trained model as a straightflow teacher: ``velocity(x, t)`` in straightflow's convention.

    straightflow pairs --teacher-callable bench/torchcfm_teacher_fn.py:velocity --data moons -n 100000 --nfe 100 \\
        --out PAIRS

reads the weights that ``bench/torchcfm_teacher.py`` saved from the file named by the
environment variable ``TORCHCFM_TEACHER_WEIGHTS`` (a ``torch.save`` of
``{"state_dict", "dim", "width", "depth"}``). The network was trained with torchcfm's
I-CFM in torchcfm's convention (t_peer = 0 noise, t_peer = 1 data, v_peer = data - noise);
:func:`straightflow.teachers.from_peer_velocity` converts it: v(x, t) = -v_peer(x, 1 - t).
The network is loaded once per process and per weights file (module-level cache).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from straightflow.teachers import from_peer_velocity

WEIGHTS_ENV = "TORCHCFM_TEACHER_WEIGHTS"


class TimeMLP(nn.Module):
    """A plain MLP on (x, t_peer) concatenated: ``depth`` hidden layers of ``width``, SiLU."""

    def __init__(self, dim: int = 2, width: int = 256, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        d_in = dim + 1
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.SiLU()]
            d_in = width
        layers.append(nn.Linear(d_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.net(torch.cat([x, t.reshape(-1, 1).to(x.dtype)], dim=1))


def save_net(net: TimeMLP, path: str | os.PathLike, dim: int, width: int, depth: int) -> None:
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "dim": dim, "width": width, "depth": depth}, path)


def load_net(path: str | os.PathLike) -> TimeMLP:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = TimeMLP(blob["dim"], blob["width"], blob["depth"])
    net.load_state_dict(blob["state_dict"])
    return net.eval().requires_grad_(False)


_CACHE: dict[str, object] = {}  # path -> our-convention velocity of the loaded net


def _ours() -> object:
    path = os.environ.get(WEIGHTS_ENV)
    if not path:
        raise RuntimeError(f"set {WEIGHTS_ENV} to the weights file saved by bench/torchcfm_teacher.py")
    if path not in _CACHE:
        net = load_net(path)
        _CACHE.clear()
        _CACHE[path] = (net, from_peer_velocity(net))
    return _CACHE[path]


def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The torchcfm model's velocity in straightflow's convention (t = 0 data, t = 1 noise), data units."""
    net, v = _ours()
    if next(net.parameters()).device != x.device:
        net.to(x.device)
    return v(x, t)
