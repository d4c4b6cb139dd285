"""The curvature method ("Minimizing Trajectory Curvature of ODE-based
Generative Models"; METHODS.md 2.2): method ``curvature`` = learned coupling
q_phi(z|x) + the velocity objective, trained jointly (Eq. 11)::

    min_{theta, phi}  E_{t, x, z ~ q_phi(z|x)} ||(z - x) - v_theta(x_t, t)||^2  +  beta * KL(q_phi(z|x) || p(z))

(the unweighted velocity loss equals the 1/t^2-weighted x-loss of Eq. 8/11).
``--beta inf`` is the independent coupling (``--method rectified``).

Evaluation adds, next to the generation quality (z ~ N(0, I)) that ``eval``
already reports, the reconstruction quality of the paper's Fig. 8 (z from
q_phi(z|x), then the same ODE solver and NFE), the KL on held-out data and
the mean ||z|| under q_phi against the prior's. Sampling never uses the encoder.
"""

from __future__ import annotations

import torch

from .couplings.learned import build_learned_coupling
from .methods import METHODS, Method
from .objectives import velocity_loss


def _objective(net, pair, generator, cfg):
    # flow loss of Eq. 11 (the Eq. 8 bound); the coupling adds beta * KL as aux_loss
    return velocity_loss(net, pair, generator, cfg.t_min)


def _reconstruction_source(run, reference: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Data to encode for the reconstruction score (data units).

    A second sample of the data, independent of ``reference`` (the data's
    two-sample-floor sample: fresh draws for built-in sets), so a perfect
    encoder + ODE scores the same two-sample floor as a perfect generator
    rather than 0 (reconstructing the reference itself would be compared with itself).
    """
    src = run.data.floor_reference(reference.shape[0], seed)
    return src[: min(n, src.shape[0])]


@torch.no_grad()
def encode_sample(run, x_data: torch.Tensor, seed: int, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z ~ q_phi(z|x) for data-unit ``x_data`` (model units, CPU), with the per-sample KL per dimension and ||z||.

    The noise is seeded (CPU generator), so the result does not depend on the device or batch size.
    """
    coupling = run.module.coupling
    eps_all = torch.randn(x_data.shape, generator=torch.Generator().manual_seed(seed * 7_919 + 4_242))
    zs, kls = [], []
    for s in range(0, x_data.shape[0], batch_size):
        x = run.data.normalize(x_data[s : s + batch_size].to(run.device))
        mu, logvar = coupling.encode(x)
        eps = eps_all[s : s + batch_size].to(run.device, x.dtype)
        zs.append((mu + torch.exp(0.5 * logvar) * eps).cpu())
        kls.append(run.prior.kl_per_dim(mu, logvar).cpu())
    z = torch.cat(zs)
    return z, torch.cat(kls), z.flatten(1).norm(dim=1)


@torch.no_grad()
def evaluate_extra(run, reference: torch.Tensor, n: int, seed: int, nfes: list[int] | None = None, solver: str | None = None) -> dict:
    """``eval`` keys of a curvature run: kl, z norms, reconstruction quality per NFE (Fig. 8)."""
    from .evaluate import QUALITY_METRICS

    metric = QUALITY_METRICS[run.data.kind](run)
    solver = solver or run.method.default_solver
    nfes = list(nfes or [1])
    coupling = run.module.coupling
    # KL(q_phi(z|x) || p(z)) per dimension on held-out x, and ||z|| under q_phi vs the prior
    _, kl, z_norm = encode_sample(run, reference[:n], seed)
    prior_norm = run.noise(z_norm.shape[0], seed + 3).flatten(1).norm(dim=1)
    out: dict = {
        "kl": float(kl.mean()),
        "z_norm": float(z_norm.mean()),
        "z_norm_prior": float(prior_norm.mean()),
        "encoder_parameters": sum(p.numel() for p in coupling.parameters()),
    }
    # reconstruction: x -> z ~ q_phi(z|x) -> ODE (same solver and NFE) -> x_rec
    src = _reconstruction_source(run, reference, n, seed)
    z, _, _ = encode_sample(run, src, seed + 1)
    rows = []
    for k in nfes:
        res = run.solve_from(z, k, solver)
        row = {"nfe": res.nfe, "nfe_requested": k, "solver": solver}
        row.update({f"recon_{name}": v for name, v in metric.score(res.samples, reference).items()})
        row["recon_mse"] = float((res.samples - src).pow(2).mean())  # per element, data units
        rows.append(row)
    out["recon_results"] = rows
    top = max(rows, key=lambda r: r["nfe_requested"])
    out["recon_nfe"] = top["nfe"]
    out.update({k: v for k, v in top.items() if k.startswith("recon_")})
    return out


METHODS["curvature"] = Method(
    "curvature",
    build_learned_coupling,
    _objective,
    summary="learned Gaussian coupling q_phi(z|x) with beta * KL (curvature paper, Eq. 11)",
    evaluate_extra=evaluate_extra,
)

# plots (trajectories forward + reverse, znorm) and the `sweep` command
from .plots import curvature as _plots  # noqa: E402,F401
from . import sweep as _sweep  # noqa: E402,F401
