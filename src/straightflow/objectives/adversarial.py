"""The adversarial term of the lines method, a separate piece with its own step.

A hinge-loss GAN term on the endpoint prediction x_hat (lines paper; its
"adversarial" term, ``docs/lines.md``), stabilised by spectral normalisation.
The student's loss adds ``weight * generator_loss(x_hat)`` (= -D(x_hat)); after
the student's optimizer step, :meth:`AdversarialTerm.step` makes one critic
update on real data vs the last x_hat. The critic has its own Adam (betas
(0.5, 0.999)) and its state goes into checkpoints through ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _sn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer)


def build_discriminator(shape: tuple[int, ...], kind: str = "vector", width: int = 256) -> nn.Module:
    """A small spectrally normalised critic: an MLP for vectors, a conv net for images."""
    if kind in ("image", "latent") and len(shape) == 3:
        c = shape[0]
        return nn.Sequential(
            _sn(nn.Conv2d(c, 32, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(32, 64, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(64, 128, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), _sn(nn.Linear(128, 1)),
        )
    dim = int(math.prod(shape))
    return nn.Sequential(
        nn.Flatten(), _sn(nn.Linear(dim, width)), nn.LeakyReLU(0.2),
        _sn(nn.Linear(width, width)), nn.LeakyReLU(0.2), _sn(nn.Linear(width, 1)),
    )


class AdversarialTerm:
    """Critic ``disc`` between real data (``sample_real(n, generator)``) and x_hat.

    Under DDP the critic's gradients are averaged over ranks in :meth:`step`.
    """

    def __init__(self, disc: nn.Module, sample_real: Callable[[int, torch.Generator], torch.Tensor], lr: float):
        self.disc, self.sample_real = disc, sample_real
        self.opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
        self.last_fake: torch.Tensor | None = None

    def _requires_grad(self, flag: bool) -> None:
        for p in self.disc.parameters():
            p.requires_grad_(flag)

    def generator_loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        """-D(x_hat), differentiable in x_hat only (the critic is frozen for it)."""
        self.last_fake = x_hat.detach()
        self._requires_grad(False)
        try:
            return -self.disc(x_hat).mean()
        finally:
            self._requires_grad(True)

    def step(self, generator: torch.Generator) -> dict:
        """One critic update: hinge loss on real data vs the last x_hat."""
        fake = self.last_fake
        if fake is None:
            raise RuntimeError("AdversarialTerm.step() before any generator_loss()")
        real = self.sample_real(fake.shape[0], generator).to(fake.device, fake.dtype)
        d_real, d_fake = self.disc(real), self.disc(fake)
        loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for p in self.disc.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
        self.opt.step()
        return {"adv_d_loss": loss.detach(), "adv_d_real": d_real.mean().detach(), "adv_d_fake": d_fake.mean().detach()}

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
