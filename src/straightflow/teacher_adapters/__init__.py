"""Teachers from pretrained diffusion models: diffusers pipelines and EDM denoisers (lines paper: x* = Sampler(z)).

The lines paper's teachers are pretrained diffusion models with deterministic samplers. Two
routes turn one into pairs (``docs/teachers.md``):

* **sampler** - the model's own deterministic sampler, run from the pair's noise z:
  :class:`DiffusersSamplerTeacher` (the scheduler's loop: DDIM with eta = 0, DPM-Solver
  multistep, Euler; Song et al. 2021, Lu et al. 2022, Karras et al. 2022) and
  :class:`EDMSamplerTeacher` (EDM's deterministic Heun sampler, Karras et al. 2022 Alg. 1
  with S_churn = 0). Both count the network calls they really make.
* **velocity** - the same network as a velocity in straightflow's convention (t = 0 data,
  t = 1 noise, ``docs/api.md``), solved by our solvers with an honest NFE:
  :class:`DiffusersVelocity` (VP models: epsilon / v / sample prediction) and
  :class:`EDMVelocity` (VE denoisers D(x, sigma)).

The change of variables. A VP state x = alpha x0 + sigma eps (alpha = sqrt(alphas_cumprod[t]),
sigma = sqrt(1 - alphas_cumprod[t])) divided by alpha + sigma is
y = (1 - s) x0 + s eps with the **rectified time** s = sigma / (alpha + sigma): the straight
line of rectified flow. A VE state x = x0 + sigma eps is the case alpha = 1 (s = sigma / (1 + sigma)).
The probability-flow ODE in (y, s) is dy/ds = eps_hat - x0_hat, so ``v = eps_hat - x0_hat``;
one DDIM step (eta = 0) is exactly one Euler step of it between the two noise levels
(``tests/teachers/test_ddim_is_euler.py``).

Nothing here imports diffusers at module import: it is imported inside the functions that
need it (``pip install straightflow[diffusers]``), and its logging is set to errors only.
"""

from __future__ import annotations

from .common import Denoiser
from .diffusers_models import (
    DIFFUSERS_SCHEDULERS,
    PREDICTION_TYPES,
    DiffusersModel,
    DiffusersSamplerTeacher,
    DiffusersVelocity,
    VPSchedule,
    euler_on_grid,
    import_diffusers,
    load_diffusers,
    weights_digest,
)
from .edm import EDMSamplerTeacher, EDMVelocity, karras_sigmas

__all__ = [
    "DIFFUSERS_SCHEDULERS", "PREDICTION_TYPES", "Denoiser", "DiffusersModel", "DiffusersSamplerTeacher",
    "DiffusersVelocity", "EDMSamplerTeacher", "EDMVelocity", "VPSchedule", "euler_on_grid", "import_diffusers",
    "karras_sigmas", "load_diffusers", "weights_digest",
]
