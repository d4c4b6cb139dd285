"""The lines method's endpoint objective ("Generative Lines Matching Models"; ``docs/lines.md``).

On the straight line between a teacher pair, ``x_t = (1 - t) x* + t z``, the
network's endpoint prediction ``x_hat(x_t, t) = x_t - t v(x_t, t)`` is trained
with a reconstruction distance ``d(x_hat, x*)``: ``mse``, ``pseudo-huber``
(``sqrt(||a - b||^2 + c^2) - c``, c = 0.00054 sqrt(D)) or ``lpips`` (a
user-supplied perceptual distance), plus optionally ``adv_weight`` times an
:class:`~straightflow.objectives.adversarial.AdversarialTerm`. With
``sampler_steps = k`` the times are drawn only from the k times
{1, (k-1)/k, ..., 1/k} a k-step line sampler visits (training tuned to the sampler).
``t1_fraction = f`` draws a share f of the times at t = 1, the step every sampler
takes first and the one-step sampler's only one, and the rest from the other times
(``docs/lines.md``; measured in ``docs/student_gap.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import StraightflowError
from ..paths import interpolate, predict_data, sample_times

RECON_LOSSES = ("mse", "pseudo-huber", "lpips")
#: pseudo-Huber constant c = PSEUDO_HUBER_C * sqrt(D) (improved consistency training's choice for data in [-1, 1])
PSEUDO_HUBER_C = 0.00054


def sampler_times(n: int, k: int, generator: torch.Generator, device) -> torch.Tensor:
    """t uniform over the k times {1, (k-1)/k, ..., 1/k} a k-step line/Euler sampler evaluates."""
    j = torch.randint(1, k + 1, (n,), generator=generator, device=generator.device)
    return (j.float() / k).to(device)


def training_times(n: int, k: int, t1_fraction: float | None, generator: torch.Generator, device,
                   t_min: float = 1e-5) -> torch.Tensor:
    """The lines objective's times: the k sampler times (:func:`sampler_times`), or t in (0, 1] for k = 0.

    With ``t1_fraction = f`` each time is t = 1 with probability f and otherwise one of the sampler's
    other times {(k-1)/k, ..., 1/k} (uniform), or for k = 0 a draw of (0, 1]; for k = 1 every time is 1.
    ``None`` draws exactly as before (the generator consumed as :func:`sampler_times` /
    :func:`~straightflow.paths.sample_times` consume it).
    """
    if t1_fraction is None or k == 1:
        if k > 0:
            return sampler_times(n, k, generator, device)
        return sample_times(n, generator, t_min, device=device)
    first = torch.rand(n, generator=generator, device=generator.device) < t1_fraction
    if k > 1:
        rest = torch.randint(1, k, (n,), generator=generator, device=generator.device).float() / k
    else:
        rest = sample_times(n, generator, t_min, device=generator.device)
    return torch.where(first, torch.ones_like(rest), rest).to(device)


def check_t1_fraction(value: float | None) -> None:
    """``--t1-fraction`` is none or a share in (0, 1]."""
    if value is not None and not 0.0 < value <= 1.0:
        raise StraightflowError(f"--t1-fraction must be in (0, 1] (a share of the training times) or none, got {value}")


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sqrt(||a - b||^2 + c^2) - c`` with c = 0.00054 sqrt(D), batch mean."""
    d = (a - b).flatten(1)
    c = PSEUDO_HUBER_C * math.sqrt(d.shape[1])
    return (torch.sqrt(d.pow(2).sum(dim=1) + c * c) - c).mean()


def load_lpips(path: str):
    """LPIPS as a saved module ``d(a, b) -> (B,)`` on images in [-1, 1] (model units):
    TorchScript (``.pt``) or a ``torch.export`` program (``.pt2``).

    No LPIPS weights ship with straightflow (and none are downloaded): export
    one yourself (e.g. the ``lpips`` package's network, traced) and pass its file.
    """
    if not path or not Path(path).is_file():
        raise StraightflowError(
            f"--recon lpips needs LPIPS weights, none found at {path or '(not given)'}: pass --lpips-weights FILE "
            "(a TorchScript .pt or torch.export .pt2 module computing d(a, b) per image) or use --recon pseudo-huber"
        )
    try:
        if path.endswith(".pt2"):  # a torch.export program
            net = torch.export.load(path).module()
        else:
            net = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise StraightflowError(f"--lpips-weights {path} is not a TorchScript (.pt) or torch.export (.pt2) module "
                                f"({str(exc).splitlines()[0]})") from None
    if hasattr(net, "eval"):
        net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@dataclass
class LinesObjective:
    """``loss, stats = LinesObjective(...)(net, x_star, z, generator)`` for any ``net(x_t, t)``
    (``net(x_t, t, y)`` given labels ``y``, which a conditional critic also judges x_hat by).

    ``lpips``: a distance module, needed for ``recon="lpips"``; ``adversary``: an
    :class:`~straightflow.objectives.adversarial.AdversarialTerm`, weighted by ``adv_weight``.
    """

    recon: str = "mse"
    sampler_steps: int = 0
    t1_fraction: float | None = None
    t_min: float = 1e-5
    adv_weight: float = 0.0
    adversary: object | None = None
    lpips: object | None = None

    def __post_init__(self):
        if self.recon not in RECON_LOSSES:
            raise StraightflowError(f"unknown --recon {self.recon!r}: use one of {', '.join(RECON_LOSSES)}")
        if self.recon == "lpips" and self.lpips is None:
            raise StraightflowError("--recon lpips needs an LPIPS module (--lpips-weights FILE)")
        if self.sampler_steps < 0:
            raise StraightflowError(f"--sampler-steps must be >= 0, got {self.sampler_steps}")
        check_t1_fraction(self.t1_fraction)
        if self.adv_weight < 0:
            raise StraightflowError(f"--adv must be >= 0, got {self.adv_weight}")

    def recon_loss(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.recon == "mse":
            return (x_hat - x).pow(2).mean()
        if self.recon == "pseudo-huber":
            return pseudo_huber(x_hat, x)
        return self.lpips(x_hat, x).mean()

    def times(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        return training_times(n, self.sampler_steps, self.t1_fraction, generator, device, self.t_min)

    def __call__(self, net, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        t = self.times(x.shape[0], generator, x.device)
        x_hat = predict_data(net, interpolate(x, z, t), t, y)
        loss = self.recon_loss(x_hat, x)
        stats = {"recon_loss": loss.detach()}
        if self.adversary is not None and self.adv_weight > 0:
            g = self.adversary.generator_loss(x_hat) if y is None else self.adversary.generator_loss(x_hat, y)
            loss = loss + self.adv_weight * g
            stats["adv_g_loss"] = g.detach()
        return loss, stats
