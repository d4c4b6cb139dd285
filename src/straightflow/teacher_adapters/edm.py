"""EDM-style denoisers D(x, sigma) as teachers: EDM's deterministic Heun sampler and D as a velocity in
rectified time (Karras et al. 2022; ``docs/teachers.md``)."""

from __future__ import annotations

import torch

from ..errors import StraightflowError
from ..solvers import SolveResult
from .common import Denoiser, _batch_times, _per_row


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """EDM's noise levels (Karras et al. 2022, Eq. 5): ``steps`` levels from sigma_max down to sigma_min, then 0."""
    if steps < 1:
        raise StraightflowError(f"the EDM sampler needs >= 1 step, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise StraightflowError(f"EDM needs 0 < sigma_min < sigma_max, got {sigma_min:g} and {sigma_max:g}")
    if steps == 1:
        return [float(sigma_max), 0.0]
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma, labels: torch.Tensor | None) -> torch.Tensor:
    sig = _batch_times(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x).to(x.dtype)
    out = denoiser(x, sig) if labels is None else denoiser(x, sig, labels)
    if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise StraightflowError(f"the EDM denoiser returned {got} for x of shape {tuple(x.shape)}; D(x, sigma) must "
                                "return x0_hat of the same shape")
    return out


class EDMVelocity:
    """An EDM denoiser D(x, sigma) (VE, x = x0 + sigma eps) as a velocity in straightflow's convention.

    Rectified time s = sigma / (1 + sigma), state y = x / (1 + sigma) = (1 - s) x0 + s eps;
    x0_hat = D(x, sigma), eps_hat = (x - x0_hat) / sigma, v = eps_hat - x0_hat. s is clamped to
    [s(sigma_min), s(sigma_max)] (s = 1 is evaluated at sigma_max, where EDM's sampler starts).
    ``D`` gets sigma as a (B,) tensor (EDM's ``EDMPrecond`` reshapes it); with labels it is called
    as D(x, sigma, labels).
    """

    def __init__(self, denoiser: Denoiser, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise StraightflowError(f"EDM needs 0 < sigma_min < sigma_max, got {sigma_min:g} and {sigma_max:g}")
        self.denoiser, self.sigma_min, self.sigma_max = denoiser, float(sigma_min), float(sigma_max)

    @property
    def s_range(self) -> tuple[float, float]:
        return self.sigma_min / (1 + self.sigma_min), self.sigma_max / (1 + self.sigma_max)

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = self.s_range
        s = _batch_times(t, y).detach().to("cpu", torch.float64).clamp(lo, hi)
        sigma = s / (1 - s)
        x = _per_row(1 + sigma, y) * y
        x0 = _denoise(self.denoiser, x, sigma, labels)
        eps = (x - x0) / _per_row(sigma, y)
        return eps - x0


class EDMSamplerTeacher:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1 with S_churn = 0) from x = z * sigma_max.

    ``steps`` noise levels (:func:`karras_sigmas`) then 0; a Heun step between levels, the last
    step to sigma = 0 plain Euler: NFE = 2 steps - 1 (EDM's 18 steps: 35).
    """

    def __init__(self, denoiser: Denoiser, steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0):
        self.denoiser, self.steps = denoiser, int(steps)
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.sigmas = karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)

    @property
    def nfe(self) -> int:
        return 2 * self.steps - 1

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> SolveResult:
        x = z * self.sigmas[0]
        calls = 0
        for cur, nxt in zip(self.sigmas[:-1], self.sigmas[1:]):
            d = (x - _denoise(self.denoiser, x, cur, y)) / cur
            calls += 1
            x_next = x + (nxt - cur) * d
            if nxt > 0:
                d_next = (x_next - _denoise(self.denoiser, x_next, nxt, y)) / nxt
                calls += 1
                x_next = x + (nxt - cur) * 0.5 * (d + d_next)
            x = x_next
        return SolveResult(x, calls)

    def settings(self) -> dict:
        return {"solver": "edm-heun", "nfe": self.nfe,
                "edm": {"steps": self.steps, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho}}
