"""Both routes of the teacher adapters on Gaussian data, where the denoiser and the transport map are known.

For data N(m, c^2 I) every probability-flow ODE maps its noise to the data by the same affine map:
in rectified coordinates y_s = (1 - s) m + sqrt((1 - s)^2 c^2 + s^2) z, so x0 = m + c z from z at s = 1
(``docs/teachers.md``). E[x0 | x] is closed-form: VP x = alpha x0 + sigma eps gives
m + alpha c^2 / (alpha^2 c^2 + sigma^2) (x - alpha m); VE (alpha = 1) gives m + c^2 / (c^2 + sigma^2) (x - m).
"""

from types import SimpleNamespace

import pytest
import torch

from straightflow.solvers import solve
from straightflow.teacher_adapters import (
    DiffusersSamplerTeacher,
    DiffusersVelocity,
    EDMSamplerTeacher,
    EDMVelocity,
    VPSchedule,
    karras_sigmas,
)
from straightflow.teachers import VelocityTeacher

M, C = 0.5, 0.3


def _z(n=256, seed=0):
    return torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _err(a, b) -> float:
    return float((a - b).abs().max())


def _linear_acp(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    return torch.cumprod(1 - betas, 0)


class GaussianVP(torch.nn.Module):
    """A fake diffusers UNet: the exact epsilon / v / x0 prediction of N(m, c^2 I) data on a VP table.

    A continuous timestep reads log(sigma / alpha) off the table by linear interpolation, as
    :class:`VPSchedule` maps it back."""

    def __init__(self, acp, prediction_type):
        super().__init__()
        self.schedule, self.prediction_type = VPSchedule(acp), prediction_type

    def forward(self, x, timestep, class_labels=None):
        t = torch.as_tensor(timestep, dtype=torch.float64).expand(x.shape[0])
        s = self.schedule.s_of_timestep(t)
        lam = torch.logit(s)
        alpha = torch.sigmoid(-2 * lam).sqrt().view(-1, 1, 1, 1).to(x)
        sigma = torch.sigmoid(2 * lam).sqrt().view(-1, 1, 1, 1).to(x)
        x0 = M + alpha * C**2 / (alpha**2 * C**2 + sigma**2) * (x - alpha * M)
        eps = (x - alpha * x0) / sigma
        out = {"epsilon": eps, "v_prediction": alpha * eps - sigma * x0, "sample": x0}[self.prediction_type]
        return SimpleNamespace(sample=out)


def gaussian_denoiser(x, sigma):
    sigma = sigma.view(-1, *([1] * (x.dim() - 1))).to(x)
    return M + C**2 / (C**2 + sigma**2) * (x - M)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("solver,nfes", [("euler", (8, 32, 200)), ("heun", (9, 33, 201))])
def test_vp_velocity_route_reaches_the_transport_map(prediction_type, solver, nfes):
    z = _z()
    velocity = DiffusersVelocity(GaussianVP(_linear_acp(), prediction_type), _linear_acp(), prediction_type)
    errs = [_err(solve(velocity, z, solver, nfe).samples, M + C * z) for nfe in nfes]
    assert errs[0] > errs[1] > errs[2], errs
    # Euler is first order (error x NFE about constant: 1.6, 1.8, 1.9 here); Heun second order
    assert errs[2] < (2e-2 if solver == "euler" else 1e-3), errs


def test_vp_velocity_route_rk45_with_honest_nfe():
    z = _z(64)
    velocity = DiffusersVelocity(GaussianVP(_linear_acp(), "epsilon"), _linear_acp(), "epsilon")
    calls = []
    res = VelocityTeacher(lambda x, t: calls.append(1) or velocity(x, t), "rk45")(z)
    assert res.nfe == len(calls) > 10
    assert _err(res.samples, M + C * z) < 1e-3


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_vp_ddim_sampler_route_reaches_the_transport_map(prediction_type):
    diffusers = pytest.importorskip("diffusers")
    acp = _linear_acp()
    unet = GaussianVP(acp, prediction_type)
    z, errs = _z(), []
    for steps in (10, 50, 200):
        sch = diffusers.DDIMScheduler(prediction_type=prediction_type, clip_sample=False)
        res = DiffusersSamplerTeacher(unet, sch, steps)(z)
        assert res.nfe == steps
        a0 = float(acp[int(sch.timesteps[0])]) ** 0.5  # DDIM starts x = z at its first timestep, not at pure noise
        exact = M + C * (z - a0 * M) / (a0**2 * C**2 + 1 - a0**2) ** 0.5
        errs.append(_err(res.samples, exact))
    # DDIM is Euler on its grid: first order (0.35, 0.079, 0.021 here)
    assert errs[0] > errs[1] > errs[2] and errs[1] / errs[2] > 3 and errs[2] < 3e-2, errs
    assert _err(res.samples, M + C * z) < 3e-2


@pytest.mark.parametrize("solver,nfes", [("euler", (8, 32, 200)), ("heun", (9, 33, 201))])
def test_edm_velocity_route_reaches_the_transport_map(solver, nfes):
    z = _z()
    velocity = EDMVelocity(gaussian_denoiser)
    errs = [_err(solve(velocity, z, solver, nfe).samples, M + C * z) for nfe in nfes]
    assert errs[0] > errs[1] > errs[2], errs
    # Euler is first order (error x NFE about constant: 1.6, 1.8, 1.9 here); Heun second order
    assert errs[2] < (2e-2 if solver == "euler" else 1e-3), errs


def test_edm_heun_sampler_reaches_the_transport_map():
    z, errs = _z(), []
    exact = M + C * (80 * z - M) / (C**2 + 80**2) ** 0.5  # the exact end of the ODE from x = sigma_max z
    for steps in (4, 8, 18, 64):
        calls = []
        res = EDMSamplerTeacher(lambda x, s: calls.append(1) or gaussian_denoiser(x, s), steps)(z)
        assert res.nfe == len(calls) == 2 * steps - 1
        errs.append(_err(res.samples, exact))
    # second order: 18 -> 64 steps divides the error by about 15 (0.061 -> 0.004 here)
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-2 and errs[2] / errs[3] > 8, errs
    assert _err(res.samples, M + C * z) < 1e-2


def test_karras_sigmas_are_edms():
    s = karras_sigmas(18)
    assert len(s) == 19 and s[0] == pytest.approx(80.0) and s[17] == pytest.approx(0.002) and s[18] == 0.0
    assert all(a > b for a, b in zip(s[:-1], s[1:]))


def test_velocity_is_clamped_outside_the_schedule():
    # s = 1 (pure noise) is the last timestep's level, s = 0 the first's: finite, and constant beyond the ends
    acp = _linear_acp()
    velocity = DiffusersVelocity(GaussianVP(acp, "sample"), acp, "sample")
    lo, hi = velocity.schedule.s_range
    z = _z(4)
    for outside, end in ((1.0, hi), (0.0, lo)):
        a, b = velocity(z, torch.full((4,), outside)), velocity(z, torch.full((4,), end, dtype=torch.float64))
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    edm = EDMVelocity(gaussian_denoiser)
    assert torch.isfinite(edm(z, torch.ones(4))).all() and torch.isfinite(edm(z, torch.zeros(4))).all()


def test_import_straightflow_does_not_import_diffusers():
    import subprocess
    import sys

    code = "import straightflow, sys; print(straightflow.DiffusersVelocity.__name__, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "DiffusersVelocity False"
