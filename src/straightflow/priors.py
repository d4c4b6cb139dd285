"""Noise priors p(z).

The standard prior is N(0, I). The curvature paper's 2D toy also uses a wide
diagonal prior N(0, diag(36, 1)); :class:`DiagonalGaussianPrior` covers both.
A curvature run may also sample from :class:`MixturePrior`, a mixture fitted to its
encoder's aggregate posterior after training (:func:`fit_mixture`; ``docs/guide.md``, "A fitted prior").
"""

from __future__ import annotations

import math
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


#: the file, in a checkpoint folder, of a prior fitted to that checkpoint's aggregate posterior (docs/guide.md)
FITTED_PRIOR_FILE = "prior_fit.safetensors"
#: the largest dimension a full-covariance mixture is fitted in (K D x D factors); above it use covariance="diag"
FULL_COVARIANCE_MAX_DIM = 1024


@dataclass
class MixturePrior:
    """A Gaussian mixture sum_k w_k N(mean_k, L_k L_k^T) over flattened samples of ``shape``, for sampling only.

    The curvature method's encoder is trained against N(0, I), but its aggregate posterior q(z) = E_x q(z|x)
    is not N(0, I); one Euler step is trained from q's z, so noise drawn from a mixture fitted to q(z) is what
    the one-step map knows (``docs/guide.md``, "A fitted prior"). ``scale`` holds the Cholesky factors
    (K, D, D) of full covariances or the standard deviations (K, D) of diagonal ones.
    """

    weights: torch.Tensor  #: (K,), summing to 1
    means: torch.Tensor  #: (K, D)
    scale: torch.Tensor  #: (K, D, D) lower-triangular, or (K, D)
    shape: tuple[int, ...]  #: the shape of one sample, prod(shape) == D

    @property
    def components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def covariance(self) -> str:
        return "full" if self.scale.dim() == 3 else "diag"

    def sample(self, shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``shape[0]`` draws of ``shape[1:] == self.shape``: a component per row, then its Gaussian (seeded by
        ``generator`` alone, on the CPU)."""
        n, rest = int(shape[0]), tuple(shape[1:])
        if rest != tuple(self.shape):
            raise ValueError(f"this fitted prior draws samples of shape {tuple(self.shape)}, not {rest}")
        comp = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        scale = self.scale.double()[comp]
        noise = (scale @ eps.unsqueeze(-1)).squeeze(-1) if scale.dim() == 3 else scale * eps
        z = (self.means.double()[comp] + noise).reshape(n, *rest)
        return z.to(device=device, dtype=dtype)

    def describe(self) -> str:
        return f"a fitted mixture of {self.components} Gaussians ({self.covariance} covariance)"

    def save(self, path) -> None:
        """Write the mixture as safetensors, atomically (``path`` holds the old file or the new one, never a part)."""
        from pathlib import Path

        from safetensors.torch import save

        from .files import atomic_write

        data = save({"weights": self.weights.contiguous(), "means": self.means.contiguous(),
                     "scale": self.scale.contiguous()}, metadata={"shape": ",".join(map(str, self.shape))})
        atomic_write(Path(path), data, "nothing was written")

    @classmethod
    def load(cls, path) -> "MixturePrior":
        """Read a prior written by :meth:`save`; a file that is not one gets a one-line error."""
        from safetensors import SafetensorError, safe_open

        from .errors import StraightflowError

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            shape = tuple(int(s) for s in meta["shape"].split(","))
            prior = cls(tensors["weights"], tensors["means"], tensors["scale"], shape)
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise StraightflowError(f"{path} is not a fitted prior straightflow can read ({err}): delete it to sample "
                                    "from N(0, I), or fit it again (straightflow fit-prior)") from None
        k, d = prior.means.shape
        ok = (prior.weights.shape == (k,) and math.prod(shape) == d
              and prior.scale.shape in ((k, d, d), (k, d))
              and all(bool(torch.isfinite(t).all()) for t in tensors.values()))
        if not ok:
            raise StraightflowError(f"{path} holds inconsistent or non-finite mixture parameters: delete it or fit it "
                                    "again (straightflow fit-prior)")
        return prior


def check_mixture(components: int, n: int, dim: int, covariance: str) -> None:
    """The one-line error :func:`fit_mixture` would give for these sizes, without fitting."""
    from .errors import StraightflowError

    if covariance not in ("full", "diag"):
        raise StraightflowError(f"covariance must be full or diag, got {covariance!r}")
    if components < 1 or n < 2 * components:
        raise StraightflowError(f"cannot fit {components} components to {n} points: use components >= 1 and at least "
                                "2 points per component")
    if covariance == "full" and dim > FULL_COVARIANCE_MAX_DIM:
        raise StraightflowError(f"a full covariance in {dim} dimensions is {components} x {dim}^2 numbers: use "
                                "covariance='diag' (--covariance diag)")


def fit_mixture(z: torch.Tensor, components: int = 8, covariance: str = "full", seed: int = 0) -> MixturePrior:
    """A ``components``-Gaussian mixture fitted by EM (scikit-learn) to the rows of ``z`` (n, ...)."""
    flat = z.detach().flatten(1).double().cpu().numpy()
    check_mixture(components, flat.shape[0], flat.shape[1], covariance)
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(components, covariance_type=covariance, random_state=seed, reg_covar=1e-5).fit(flat)
    scale = (torch.linalg.cholesky(torch.as_tensor(gm.covariances_)) if covariance == "full"
             else torch.as_tensor(gm.covariances_).sqrt())
    return MixturePrior(torch.as_tensor(gm.weights_, dtype=torch.float32),
                        torch.as_tensor(gm.means_, dtype=torch.float32), scale.float(), tuple(z.shape[1:]))
