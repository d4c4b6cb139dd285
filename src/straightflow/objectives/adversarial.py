"""The adversarial term of the lines method, a separate piece with its own step.

A hinge-loss GAN term on the endpoint prediction x_hat (lines paper; its
"adversarial" term, ``docs/lines.md``), stabilised by spectral normalisation.
The student's loss adds ``weight * generator_loss(x_hat)`` (= -D(x_hat)); after
the student's optimizer step, :meth:`AdversarialTerm.step` makes one critic
update on real data vs the last x_hat. The critic has its own Adam (betas
(0.5, 0.999)) and its state goes into checkpoints through ``state_dict``.

A class-conditional student gets a projection critic (Miyato & Koyama 2018,
"cGANs with Projection Discriminator"): ``D(x, y) = psi(phi(x)) + <e_y, phi(x)>``,
so x_hat made for class y is judged against real data of class y, not the data of
all classes. Labels dropped to the null class (classifier-free guidance training)
keep a null embedding, and the real batch's labels are dropped at the same rate, so
that branch compares the unconditional predictions with all of the data
(``docs/conditional.md``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import drop_labels


def _sn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer)


class ProjectionCritic(nn.Module):
    """``D(x, y) = head(phi(x)) + <embed(y), phi(x)>`` over a feature net ``phi`` (x -> (B, features));
    ``y`` in ``0 .. num_classes`` (the last index: the null class of classifier-free guidance)."""

    def __init__(self, features: nn.Module, width: int, num_classes: int):
        super().__init__()
        self.features, self.head = features, _sn(nn.Linear(width, 1))
        self.embed = _sn(nn.Embedding(num_classes + 1, width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h) + (self.embed(y.long()) * h).sum(dim=1, keepdim=True)


def build_discriminator(shape: tuple[int, ...], kind: str = "vector", width: int = 256,
                        num_classes: int = 0) -> nn.Module:
    """A small spectrally normalised critic: an MLP for vectors, a conv net for images; with ``num_classes``
    > 0 the same feature net under a :class:`ProjectionCritic` head (called as ``disc(x, y)``)."""
    if num_classes > 0:
        conv = kind in ("image", "latent") and len(shape) == 3
        features = _critic_features(shape, conv, width)
        return ProjectionCritic(features, 128 if conv else width, num_classes)
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


def _critic_features(shape: tuple[int, ...], conv: bool, width: int) -> nn.Module:
    """The projection critic's phi: the unconditional critic without its last layer."""
    if conv:
        c = shape[0]
        return nn.Sequential(
            _sn(nn.Conv2d(c, 32, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(32, 64, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(64, 128, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
    dim = int(math.prod(shape))
    return nn.Sequential(nn.Flatten(), _sn(nn.Linear(dim, width)), nn.LeakyReLU(0.2), _sn(nn.Linear(width, width)),
                         nn.LeakyReLU(0.2))


class AdversarialTerm:
    """Critic ``disc`` between real data (``sample_real(n, generator) -> (x, y)``, e.g. a data source's
    ``sample_train``) and x_hat.

    Conditional (``num_classes`` > 0): ``disc(x, y)`` is a :class:`ProjectionCritic`, x_hat is judged with the labels it
    was predicted for, and the real labels are
    replaced by the null class at ``cond_drop``, the student's own label-dropout rate.
    Under DDP the critic's gradients are averaged over ranks in :meth:`step`.
    """

    def __init__(self, disc: nn.Module, sample_real: Callable[[int, torch.Generator], tuple], lr: float,
                 num_classes: int = 0, cond_drop: float = 0.0):
        self.disc, self.sample_real = disc, sample_real
        self.num_classes, self.cond_drop = int(num_classes), float(cond_drop)
        self.opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
        self.last_fake: torch.Tensor | None = None
        self.last_labels: torch.Tensor | None = None

    def _requires_grad(self, flag: bool) -> None:
        for p in self.disc.parameters():
            p.requires_grad_(flag)

    def _score(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes > 0:
            if y is None:
                raise RuntimeError("a conditional critic scores x_hat with the labels it was predicted for")
            return self.disc(x, y.to(x.device))
        return self.disc(x)

    def generator_loss(self, x_hat: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """-D(x_hat) (-D(x_hat, y) for a conditional critic), differentiable in x_hat only (the critic is frozen for
        it)."""
        self.last_fake = x_hat.detach()
        self.last_labels = None if y is None else y.detach()
        self._requires_grad(False)
        try:
            return -self._score(x_hat, y).mean()
        finally:
            self._requires_grad(True)

    def step(self, generator: torch.Generator) -> dict:
        """One critic update: hinge loss on real data vs the last x_hat."""
        fake = self.last_fake
        if fake is None:
            raise RuntimeError("AdversarialTerm.step() before any generator_loss()")
        real, real_y = self.sample_real(fake.shape[0], generator)
        real = real.to(fake.device, fake.dtype)
        if self.num_classes > 0:
            real_y = drop_labels(real_y, self.cond_drop, self.num_classes, generator)
            d_real, d_fake = self._score(real, real_y), self._score(fake, self.last_labels)
        else:
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
