"""``curvature``: the learned coupling q_phi(z|x) trained jointly with the velocity net
("Minimizing Trajectory Curvature of ODE-based Generative Models", Eq. 11)::

    min_{theta, phi}  E_{t, x, z ~ q_phi(z|x)} ||(z - x) - v_theta(x_t, t)||^2  +  beta * KL(q_phi(z|x) || p(z))

(the unweighted velocity loss equals the 1/t^2-weighted x-loss of Eq. 8/11).
``--beta inf`` is the independent coupling (``--method rectified``).

``eval`` adds, next to the generation quality (z ~ N(0, I)), the reconstruction
quality of the paper's Fig. 8 (z from q_phi(z|x), then the same solver and NFE),
the KL on held-out data and the mean ||z|| under q_phi against the prior's.
Sampling never uses the encoder.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..couplings import KLBudget, LearnedGaussianCoupling
from ..errors import StraightflowError
from ..formatting import significant_or_str
from ..models import build_model
from ..noise import seeded_noise
from .base import Method

ENCODER_SIZES = ("small", "same", "custom")


class Curvature(Method):
    name = "curvature"
    description = ("the curvature method: a learned forward coupling q_phi(z|x) (Lee et al., *Minimizing Trajectory "
                   "Curvature of ODE-based Generative Models*)")
    accepts_encoder = True

    def validate(self, cfg) -> None:
        if cfg.encoder not in ENCODER_SIZES:
            raise StraightflowError(f"unknown encoder {cfg.encoder!r}: use small or same (custom: a module given as "
                                    "encoder_net=...)")
        if cfg.beta == "auto":
            raise StraightflowError("--beta auto is resolved by train() (a pilot picks --kl-target); build the module "
                                    "from the resolved config")
        if math.isnan(cfg.beta) or cfg.beta < 0:
            raise StraightflowError(f"--beta must be >= 0 (or inf), got {cfg.beta}")

    def coupling_label(self, cfg) -> str:
        if cfg.kl_target is not None:  # beta adapted during training (docs/kl_target.md)
            return f"KL target {cfg.kl_target:.3g}"
        return "beta = inf" if math.isinf(cfg.beta) else f"beta = {cfg.beta:g}"

    def card_note(self, cfg) -> str:
        if cfg.kl_target is not None:
            return (f" (KL target {significant_or_str(cfg.kl_target)} nats per dimension, beta adapted from "
                    f"{significant_or_str(cfg.beta)})")
        return f" (beta {significant_or_str(cfg.beta)})"

    def uses_custom_encoder(self, cfg) -> bool:
        return cfg.encoder == "custom" and not math.isinf(cfg.beta)

    def set_beta(self, module, beta: float) -> None:
        module.coupling.beta = beta

    def build_kl_budget(self, cfg):
        """``--kl-target K``: dual ascent on log beta from ``--beta`` (``couplings/kl_budget.py``)."""
        if cfg.kl_target is None:
            return None
        return KLBudget(cfg.kl_target, beta=cfg.beta, lr=cfg.kl_target_lr)

    def build_coupling(self, cfg, data, prior, encoder=None):
        """The learned coupling around ``encoder`` (default: a ``small`` or ``same``-size net of the
        velocity net's kind with twice the output channels); beta = inf builds none."""
        if encoder is None and cfg.encoder == "custom" and not math.isinf(cfg.beta):
            raise StraightflowError("this run's encoder is a user's own module (encoder: custom): pass it again, e.g. "
                                    "Run.load(RUNDIR, encoder_net=MyEncoder(...))")
        if encoder is None and not math.isinf(cfg.beta):
            # a user velocity net: our encoder
            arch = dataclasses.replace(cfg, model="auto") if cfg.model == "custom" else cfg
            encoder = build_model(arch, data, out_mult=2, size="small" if cfg.encoder == "small" else "full")
        return LearnedGaussianCoupling(prior, None if math.isinf(cfg.beta) else encoder, cfg.beta)

    @torch.no_grad()
    def evaluate_extra(self, run, reference, n, seed, nfes, solver, metric, labels=None, guidance=None) -> dict:
        """kl, z norms and the reconstruction quality per NFE (Fig. 8), solved at ``guidance`` (conditional runs)."""
        coupling = run.module.coupling
        _, kl, z_norm = encode_sample(run, reference[:n], seed, labels=None if labels is None else labels[:n])
        prior_norm = seeded_noise(z_norm.shape[0], tuple(run.data.shape), seed, "prior-norm",
                                  run.prior).flatten(1).norm(dim=1)
        out: dict = {
            "kl": float(kl.mean()),
            "z_norm": float(z_norm.mean()),
            "z_norm_prior": float(prior_norm.mean()),
            "encoder_parameters": sum(p.numel() for p in coupling.parameters()),
        }
        # reconstruction: x -> z ~ q_phi(z|x) -> ODE (same solver and NFE) -> x_rec, on a second
        # sample of the data (independent of ``reference``), so a perfect encoder + ODE scores the
        # two-sample floor rather than 0
        src, src_labels = run.data.floor_reference(reference.shape[0], seed)
        src, src_labels = src[:n], (src_labels[:n] if run.conditional else None)
        z, _, _ = encode_sample(run, src, seed + 1, labels=src_labels)
        rows = []
        for k in nfes:
            res = run.solve_from(z, k, solver, labels=src_labels, guidance=guidance)
            row = {"nfe": res.nfe, "nfe_requested": k, "solver": solver, **({"note": res.note} if res.note else {})}
            row.update({f"recon_{name}": v for name, v in metric.score(res.samples, reference).items()})
            row["recon_mse"] = float((res.samples - src).pow(2).mean())  # per element, data units
            rows.append(row)
        out["recon_results"] = rows
        top = max(rows, key=lambda r: r["nfe_requested"])
        out["recon_nfe"] = top["nfe"]
        if top.get("note"):
            out["recon_note"] = top["note"]
        out.update({k: v for k, v in top.items() if k.startswith("recon_")})
        return out


@torch.no_grad()
def encode_sample(run, x_data: torch.Tensor, seed: int, batch_size: int = 4096,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z ~ q_phi(z|x) (q_phi(z|x, y) given ``labels``) for data-unit ``x_data`` (model units, CPU), with the per-sample
    KL per dimension and ||z||.

    The noise is the ``"encode"`` stream of ``seed``, so the result does not depend on the device or batch size.
    """
    coupling = run.module.coupling
    eps_all = seeded_noise(x_data.shape[0], tuple(x_data.shape[1:]), seed, "encode")
    zs, kls = [], []
    for s in range(0, x_data.shape[0], batch_size):
        x = run.data.normalize(x_data[s : s + batch_size].to(run.device))
        mu, logvar = coupling.encode(x, None if labels is None else labels[s : s + batch_size].to(run.device))
        eps = eps_all[s : s + batch_size].to(run.device, x.dtype)
        zs.append((mu + torch.exp(0.5 * logvar) * eps).cpu())
        kls.append(run.prior.kl_per_dim(mu, logvar).cpu())
    z = torch.cat(zs)
    return z, torch.cat(kls), z.flatten(1).norm(dim=1)
