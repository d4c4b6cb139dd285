"""Noise priors p(z).

The standard prior is N(0, I). The curvature paper's 2D toy also uses a wide
diagonal prior N(0, diag(36, 1)); :class:`DiagonalGaussianPrior` covers both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DiagonalGaussianPrior:
    """N(0, diag(std^2)); ``std`` is None for the standard normal."""

    std: torch.Tensor | None = None

    def sample(self, shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
        eps = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if self.std is not None:
            eps = eps * self.std.to(eps.device, eps.dtype)
        return eps

    def scale_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """Map standard normal noise to this prior."""
        return eps if self.std is None else eps * self.std.to(eps.device, eps.dtype)

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || prior) per sample, averaged over dimensions.

        Closed form for diagonal Gaussians, divided by D (curvature paper Eq. 11; a
        summed KL would silently multiply beta by D).
        """
        if self.std is None:
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
        else:
            var_p = self.std.to(mu.device, mu.dtype).pow(2)
            kl = 0.5 * ((mu.pow(2) + logvar.exp()) / var_p - 1.0 - logvar + var_p.log())
        return kl.flatten(1).mean(dim=1)

    def describe(self) -> str:
        return ("N(0, I)" if self.std is None
                else f"N(0, diag({', '.join(f'{s*s:g}' for s in self.std.flatten().tolist())}))")


def make_prior(name: str, dim_shape: tuple[int, ...]) -> DiagonalGaussianPrior:
    """``standard`` -> N(0, I); ``wide`` -> N(0, diag(36, 1)) for 2D data."""
    from .errors import StraightflowError

    if name == "standard":
        return DiagonalGaussianPrior(None)
    if name == "wide":
        if tuple(dim_shape) != (2,):
            raise StraightflowError("prior 'wide' is N(0, diag(36, 1)) and needs 2D data, got data of shape "
                                    f"{tuple(dim_shape)}")
        return DiagonalGaussianPrior(torch.tensor([6.0, 1.0]))
    raise StraightflowError(f"unknown prior {name!r}: use standard or wide")
