"""Learned Gaussian coupling q_phi(x, z) = q_phi(z|x) p(x): the curvature method.

Curvature paper, Sec. 3.3 and Eq. (11); ``docs/api.md``. A time-independent
encoder ``encoder(x, t)``, called with t = 1 (any ``nn.Module`` with that
``forward``, e.g. a velocity-style network with twice the output channels), outputs, for each element of x,
a mean and a log-variance (twice the channels of x: first half mu, second half
log-variance, unclamped). A training pair is the reparameterised sample

    z = mu_phi(x) + exp(logvar_phi(x) / 2) * eps,    eps ~ N(0, I),

and the same z enters both x_t = (1 - t) x + t z and the target z - x, with no
stop-gradient: the flow loss (the Eq. 8 bound on the degree of intersection,
Eq. 7) trains the encoder through both. The coupling adds the prior-matching
term of Eq. (10)/(11) as ``aux_loss = beta * KL``, where KL is the closed-form
KL(q_phi(z|x) || p(z)) *per dimension*, averaged over the batch (a summed KL
would silently multiply beta by D). In a class-conditional run the encoder also
sees the label, q_phi(z|x, y), and the prior stays N(0, I) for every class.

The encoder's last layer is zero-initialised, so training starts at
q_phi(z|x) = p(z), i.e. exactly at the independent coupling (same generator ->
same z). ``beta = inf`` is the independent coupling itself (the paper's
beta -> infinity limit): no encoder is built, z is drawn from the prior.

For a non-standard diagonal prior N(0, diag(s^2)) the encoder works in the
prior's standardised units, z = s * (mu' + exp(logvar' / 2) eps), so the
zero-initialised head still starts at the prior; :meth:`encode` returns the
moments in model units (mu = s mu', logvar = logvar' + 2 log s).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..conditioning import call_velocity
from ..errors import StraightflowError
from .base import CoupledBatch, Coupling


def zero_init_head(encoder: nn.Module) -> None:
    """Zero the parameters of the encoder's output layer ``encoder.out``.

    If ``out`` is a container (e.g. norm + activation + conv), only its last
    layer with a weight is zeroed, so the output is exactly 0 for any input.
    """
    head = getattr(encoder, "out", None)
    if head is None:
        raise StraightflowError(f"encoder {type(encoder).__name__} exposes no `.out` output layer to zero-initialise")
    if getattr(head, "weight", None) is None:
        layers = [m for m in head.modules() if getattr(m, "weight", None) is not None]
        if not layers:
            raise StraightflowError(f"encoder {type(encoder).__name__}.out has no layer with weights")
        head = layers[-1]
    with torch.no_grad():
        head.weight.zero_()
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


class LearnedGaussianCoupling(Coupling):
    """z ~ q_phi(z|x) = N(mu_phi(x), diag(exp(logvar_phi(x)))) (Eq. 11), around any encoder module."""

    def __init__(self, prior=None, encoder: nn.Module | None = None, beta: float = 10.0):
        super().__init__(prior)
        beta = float(beta)
        if math.isnan(beta) or beta < 0:
            raise StraightflowError(f"beta must be >= 0 (or inf), got {beta}")
        self.beta = beta
        if self.independent:
            encoder = None  # beta -> inf: the independent coupling, no encoder to train
        elif encoder is None:
            raise StraightflowError("a finite beta needs an encoder")
        else:
            zero_init_head(encoder)
        self.encoder = encoder

    @property
    def independent(self) -> bool:
        return math.isinf(self.beta)

    def _prior_std(self, like: torch.Tensor) -> torch.Tensor | None:
        std = self.prior.std
        return None if std is None else std.to(like.device, like.dtype)

    def _standardised_moments(self, x: torch.Tensor,
                              y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu', logvar') of q in the prior's standardised units; x is normalised data, y its labels (conditional)."""
        t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)  # time-independent: t = 1
        h = call_velocity(self.encoder, x, t, y)
        if h.dim() != x.dim() or h.shape[1] != 2 * x.shape[1] or h.shape[2:] != x.shape[2:]:
            raise StraightflowError(f"encoder output {tuple(h.shape)} is not data shape {tuple(x.shape)} with "
                                    "doubled channels")
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q_phi(z|x) (q_phi(z|x, y) given labels) in model units (x normalised)."""
        if self.encoder is None:  # q = p(z)
            std = self._prior_std(x)
            mu = torch.zeros_like(x)
            logvar = torch.zeros_like(x) if std is None else (2 * std.log()).expand_as(x).clone()
            return mu, logvar
        mu, logvar = self._standardised_moments(x, y)
        std = self._prior_std(x)
        if std is not None:
            mu, logvar = mu * std, logvar + 2 * std.log()
        return mu, logvar

    def sample_z(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised z ~ q_phi(z|x); returns (z, per-sample KL per dim, eps scaled to the prior).

        ``eps`` is drawn exactly as :class:`IndependentCoupling` draws z, so at the
        zero-initialised head z equals the independent coupling's noise bit for bit.
        """
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        eps_prior = self.prior.scale_noise(eps)
        if self.encoder is None:
            return eps_prior, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype), eps_prior
        mu_s, logvar_s = self._standardised_moments(x, y)
        z = self.prior.scale_noise(mu_s + torch.exp(0.5 * logvar_s) * eps)
        # KL(N(mu', var') || N(0, I)) per dimension == KL(q || prior) in model units
        kl = 0.5 * (mu_s.pow(2) + logvar_s.exp() - 1.0 - logvar_s)
        return z, kl.flatten(1).mean(dim=1), eps_prior

    def forward(self, batch, generator: torch.Generator, y: torch.Tensor | None = None) -> CoupledBatch:
        x = self.data_of(batch)
        if self.encoder is None:
            # exactly IndependentCoupling: z from the prior, no aux loss
            z = self.noise_like(x, generator)
            norm = z.flatten(1).norm(dim=1).mean().detach()
            zero = torch.zeros((), device=x.device)
            return CoupledBatch(x=x, z=z, y=y, stats={"kl": zero, "z_norm": norm, "z_norm_prior": norm})
        z, kl, eps_prior = self.sample_z(x, generator, y)
        kl_mean = kl.mean()
        stats = {
            "kl": kl_mean.detach(),
            "z_norm": z.detach().flatten(1).norm(dim=1).mean(),
            "z_norm_prior": eps_prior.flatten(1).norm(dim=1).mean(),
        }
        return CoupledBatch(x=x, z=z, y=y, aux_loss=self.beta * kl_mean, stats=stats)

