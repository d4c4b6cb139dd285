"""Methods trained on teacher pairs (METHODS.md 2.4 and 3): reflow, distill, lines.

All three read ``(x*, z)`` pairs from ``--pairs PAIRDIR`` (:mod:`straightflow.pairs`)
through :class:`PairCoupling` and differ in the objective and the initialisation:

* ``reflow``  (k-rectified flow): the velocity loss on the straight line between
  the pair, ``mean((z - x*) - v(x_t, t))^2``; fresh init unless ``--init-from-teacher``.
* ``distill`` (one-step distillation, curvature paper Table 1): student starts from
  the teacher, ``x_hat = z - v(z, 1)``, MSE to x*.
* ``lines`` (Lines Matching Model, reconstructed): on ``x_t = (1 - t) x* + t z`` the
  network's endpoint ``x_hat(x_t, t) = x_t - t v(x_t, t)`` is trained with
  ``d(x_hat, x*)`` (``--recon mse | pseudo-huber | lpips``), plus ``--adv W`` times
  an adversarial term against real data; ``--sampler-steps k`` draws t only from
  the k times {1, (k-1)/k, ..., 1/k} the k-step line sampler visits. Student
  starts from the teacher; sampled with the line sampler (``solvers/lines.py``).

``eval`` of any of them adds the distillation error (one-step MSE to x* on the
held-out pairs, model units) and the MSE to x* per NFE of the evaluated solver.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .couplings import CoupledBatch, Coupling
from .errors import StraightflowError
from .methods import METHODS, Method
from .objectives import velocity_loss
from .paths import data_prediction, interpolate, sample_times
from .solvers import lines as _lines_solver  # noqa: F401  (registers SOLVERS["lines"])

RECON_LOSSES = ("mse", "pseudo-huber", "lpips")
#: pseudo-Huber constant c = PSEUDO_HUBER_C * sqrt(D) (improved consistency training's choice for data in [-1, 1])
PSEUDO_HUBER_C = 0.00054


# ------------------------------------------------------------------ coupling
class PairCoupling(Coupling):
    """The teacher-pairs coupling: the batch already is ``(x*, z)``.

    Given a plain data tensor (``eval``'s held-out flow loss) it pairs it with
    independent prior noise, i.e. reports the independent-coupling bound.
    """

    name = "teacher-pairs"

    def forward(self, batch, generator):
        if isinstance(batch, (tuple, list)):
            return CoupledBatch(x=batch[0], z=batch[1])
        z = self.prior.sample(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
        return CoupledBatch(x=batch, z=z)


def _pair_coupling(cfg, data, prior) -> PairCoupling:
    if not cfg.pairs:
        raise StraightflowError(f"--method {cfg.method} trains on teacher pairs: pass --pairs PAIRDIR (make one with `straightflow pairs`)")
    return PairCoupling(prior)


# ------------------------------------------------------------------ teacher init
def _init_from_teacher(module, cfg, data) -> None:
    """Copy the teacher's EMA velocity weights into the student (when ``init_from_teacher``)."""
    if not cfg.init_from_teacher:
        return
    from .training.checkpoint import latest_checkpoint, load_into, load_weights

    teacher = Path(cfg.teacher) if cfg.teacher else None
    if teacher is None or not teacher.is_dir():
        raise StraightflowError(f"--init-from-teacher needs the teacher run ({cfg.teacher or 'none recorded'}): pass --teacher RUNDIR or --init-from-teacher false")
    manifest = getattr(data, "manifest", {}) or {}
    ckpt = None
    if manifest.get("teacher") and Path(manifest["teacher"]).resolve() == teacher.resolve():
        ckpt = teacher / "checkpoints" / manifest.get("teacher_checkpoint", "")  # the checkpoint that made the pairs
    if ckpt is None or not (ckpt / "ema.safetensors").exists():
        ckpt = latest_checkpoint(teacher)
    if ckpt is None:
        raise StraightflowError(f"teacher {teacher} has no checkpoint")
    state = load_weights(ckpt / "ema.safetensors")
    velocity = {k[len("velocity."):]: v for k, v in state.items() if k.startswith("velocity.")}
    load_into(module.velocity, velocity, ckpt / "ema.safetensors")


# ------------------------------------------------------------------ objectives
def _reflow_objective(net, pair, generator, cfg):
    return velocity_loss(net, pair, generator, cfg.t_min)


def one_step(net, z: torch.Tensor) -> torch.Tensor:
    """x_hat(z, 1) = z - v(z, 1): the one-step prediction."""
    return z - net(z, torch.ones(z.shape[0], device=z.device, dtype=z.dtype))


def _distill_objective(net, pair, generator, cfg):
    loss = (one_step(net, pair.z) - pair.x).pow(2).mean()
    return loss, {"distill_loss": loss.detach()}


def sampler_times(n: int, k: int, generator: torch.Generator, device) -> torch.Tensor:
    """t uniform over the k times {1, (k-1)/k, ..., 1/k} a k-step line/Euler sampler evaluates."""
    j = torch.randint(1, k + 1, (n,), generator=generator, device=generator.device)
    return (j.float() / k).to(device)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sqrt(||a - b||^2 + c^2) - c`` with c = 0.00054 sqrt(D), batch mean."""
    d = (a - b).flatten(1)
    c = PSEUDO_HUBER_C * math.sqrt(d.shape[1])
    return (torch.sqrt(d.pow(2).sum(dim=1) + c * c) - c).mean()


def recon_loss(kind: str, x_hat: torch.Tensor, x: torch.Tensor, lpips=None) -> torch.Tensor:
    if kind == "mse":
        return (x_hat - x).pow(2).mean()
    if kind == "pseudo-huber":
        return pseudo_huber(x_hat, x)
    if kind == "lpips":
        return lpips(x_hat, x).mean()
    raise StraightflowError(f"unknown --recon {kind!r}: use one of {', '.join(RECON_LOSSES)}")


def _lines_objective(net, pair, generator, cfg, lpips=None, adversary=None):
    n = pair.x.shape[0]
    if cfg.sampler_steps > 0:
        t = sampler_times(n, cfg.sampler_steps, generator, pair.x.device)
    else:
        t = sample_times(n, generator, cfg.t_min, device=pair.x.device)
    x_t = interpolate(pair.x, pair.z, t)
    x_hat = data_prediction(x_t, t, net(x_t, t))
    rec = recon_loss(cfg.recon, x_hat, pair.x, lpips)
    stats = {"recon_loss": rec.detach()}
    loss = rec
    if adversary is not None:
        g = adversary.generator_loss(x_hat)
        loss = loss + cfg.adv * g
        stats["adv_g_loss"] = g.detach()
    return loss, stats


# ------------------------------------------------------------------ lines: LPIPS and the discriminator
def load_lpips(path: str):
    """LPIPS as a saved module ``d(a, b) -> (B,)`` on images in [-1, 1] (model units):
    TorchScript (``.pt``) or a ``torch.export`` program (``.pt2``).

    No LPIPS weights ship with straightflow (and none are downloaded): export
    one yourself (e.g. the ``lpips`` package's network, traced) and pass its
    file. Only the loading path is tested, with a stand-in distance.
    """
    if not path or not Path(path).is_file():
        raise StraightflowError(
            f"--recon lpips needs LPIPS weights, none found at {path or '(not given)'}: pass --lpips-weights FILE "
            "(a TorchScript .pt or torch.export .pt2 module computing d(a, b) per image) or use --recon pseudo-huber"
        )
    try:
        if path.endswith(".pt2"):  # a torch.export program
            net = torch.export.load(path).module()
        else:
            net = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise StraightflowError(f"--lpips-weights {path} is not a TorchScript (.pt) or torch.export (.pt2) module ({str(exc).splitlines()[0]})") from None
    if hasattr(net, "eval"):
        net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _sn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer)


def build_discriminator(shape: tuple[int, ...], kind: str, width: int = 256) -> nn.Module:
    """A small spectrally normalised critic: an MLP for vectors, a conv net for images."""
    if kind == "image" and len(shape) == 3:
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


class Adversary:
    """Hinge-loss GAN term for the lines method, stabilised by spectral norm.

    The student's objective adds ``adv * generator_loss(x_hat)`` (``-D(x_hat)``);
    after the student's optimizer step the trainer calls :meth:`step`, one
    discriminator update on real data (drawn from the teacher's data with the
    training generator) vs the last x_hat. The discriminator lives outside the
    student (its own Adam, betas (0.5, 0.999)); its state is checkpointed
    through ``state_dict`` and, under DDP, its gradients are averaged here.
    """

    def __init__(self, disc: nn.Module, real_data, lr: float):
        self.disc, self.real = disc, real_data
        self.opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
        self.last_fake: torch.Tensor | None = None

    def _requires_grad(self, flag: bool) -> None:
        for p in self.disc.parameters():
            p.requires_grad_(flag)

    def generator_loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        self.last_fake = x_hat.detach()
        self._requires_grad(False)  # the student's loss must not train the critic
        try:
            return -self.disc(x_hat).mean()
        finally:
            self._requires_grad(True)

    def step(self, batch, generator, module) -> dict:
        fake = self.last_fake
        real = self.real.sample_train(fake.shape[0], generator).to(fake.device, fake.dtype)
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


def _check_lines_config(cfg) -> None:
    if cfg.recon not in RECON_LOSSES:
        raise StraightflowError(f"unknown --recon {cfg.recon!r}: use one of {', '.join(RECON_LOSSES)}")
    if cfg.adv < 0:
        raise StraightflowError(f"--adv must be >= 0, got {cfg.adv}")
    if cfg.sampler_steps < 0:
        raise StraightflowError(f"--sampler-steps must be >= 0, got {cfg.sampler_steps}")


def _lines_prepare(module, cfg, data) -> None:
    _check_lines_config(cfg)
    if cfg.recon == "lpips":
        if data.kind != "image":
            raise StraightflowError("--recon lpips is for images; use mse or pseudo-huber for vector data")
        load_lpips(cfg.lpips_weights)  # fail before training starts
    _init_from_teacher(module, cfg, data)


def _lines_aux(module, cfg, data, device):
    """Bind this run's LPIPS net and discriminator into the module's objective;
    return the discriminator's trainer (None without ``--adv``)."""
    lpips = load_lpips(cfg.lpips_weights).to(device) if cfg.recon == "lpips" else None
    adversary = None
    if cfg.adv > 0:
        real = getattr(data, "base", data)
        adversary = Adversary(build_discriminator(tuple(data.shape), data.kind).to(device), real, cfg.lr)
    if lpips is not None or adversary is not None:
        module.method = dataclasses.replace(module.method, objective=partial(_lines_objective, lpips=lpips, adversary=adversary))
    return adversary


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_pairs(run, reference, n: int, seed: int, nfes: list[int] | None = None, solver: str | None = None) -> dict:
    """Held-out pair errors: ``distill_error`` (one-step MSE to x*) and MSE to x* per NFE."""
    from .pairs import PairData
    from .solvers import solve

    try:
        pairs = PairData.open(run.cfg.pairs, base=run.data)
    except StraightflowError as exc:
        return {"pairs_note": f"held-out pairs unavailable: {exc}"}
    if pairs.heldout == 0:
        return {"pairs_note": "the pairs folder holds no held-out pairs"}
    x, z = pairs.heldout_pairs(max_n=max(n, 1))
    x, z = x.to(run.device), z.to(run.device)
    out = {"heldout_pairs": int(x.shape[0]), "distill_error": float((one_step(run.velocity, z) - x).pow(2).mean())}
    solver = solver or run.method.default_solver
    rows = []
    for k in nfes or []:
        res = solve(run.velocity, z, solver, k)
        rows.append({"nfe": res.nfe, "solver": solver, "pair_mse": float((res.samples - x).pow(2).mean())})
    if rows:
        out["pair_results"] = rows
    return out


METHODS["reflow"] = Method(
    "reflow", _pair_coupling, _reflow_objective, needs_teacher=False, default_solver="euler",
    summary="velocity loss on straight lines between teacher pairs (k-rectified flow)",
    prepare=_init_from_teacher, evaluate_extra=evaluate_pairs,
)
METHODS["distill"] = Method(
    "distill", _pair_coupling, _distill_objective, needs_teacher=True, default_solver="euler",
    summary="one-step distillation: x_hat = z - v(z, 1), MSE to the teacher's x*",
    prepare=_init_from_teacher, evaluate_extra=evaluate_pairs,
)
METHODS["lines"] = Method(
    "lines", _pair_coupling, _lines_objective, needs_teacher=True, default_solver="lines",
    summary="lines matching: endpoint loss d(x_hat(x_t, t), x*) on teacher-pair lines (+ recon, adversarial)",
    prepare=_lines_prepare, evaluate_extra=evaluate_pairs, make_aux_trainer=_lines_aux,
)
