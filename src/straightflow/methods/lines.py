"""``lines``: the Lines Matching Model ("Generative Lines Matching Models"; ``docs/lines.md``).

On ``x_t = (1 - t) x* + t z`` between teacher pairs the endpoint
``x_hat(x_t, t) = x_t - t v(x_t, t)`` is trained with ``d(x_hat, x*)``
(``--recon mse | pseudo-huber | lpips``), plus ``--adv W`` times an adversarial
term against real data; ``--sampler-steps k`` trains only at the k times the
k-step line sampler visits and ``--t1-fraction f`` draws a share f of them at
t = 1, the first step (``docs/lines.md``). The student starts from the teacher and samples
with the line sampler (:func:`straightflow.solvers.lines`).
"""

from __future__ import annotations

from ..errors import StraightflowError
from ..objectives import (
    RECON_LOSSES,
    AdversarialTerm,
    LinesObjective,
    build_discriminator,
    check_t1_fraction,
    load_lpips,
)
from .teacher import PairMethod


class Lines(PairMethod):
    name = "lines"
    description = "Lines Matching (*Generative Lines Matching Models*) on a teacher's pairs"
    default_solver = "lines"
    starts_from_teacher = True
    #: measured best at 3000 steps and 100,000 pairs (docs/student_gap.md): the times of the 2-step line sampler,
    #: 90% of them at its first (t = 1), and the paper's pseudo-Huber endpoint distance; images (digits, batch 128)
    #: keep the base learning rate
    image_pair_defaults = {"sampler_steps": 2, "t1_fraction": 0.9, "recon": "pseudo-huber"}
    #: the same recipe at three times the base learning rate, best on vectors (batch 256)
    vector_pair_defaults = {**image_pair_defaults, "lr": 3e-3}

    def pair_defaults(self, shape: tuple, explicit: set[str]) -> dict:
        """The measured recipe; its t = 1 share belongs to its sampler times, so a student given its own
        ``--sampler-steps`` keeps uniform times unless it also gives ``--t1-fraction``."""
        defaults = super().pair_defaults(shape, explicit)
        if "sampler_steps" in explicit:
            defaults.pop("t1_fraction", None)
        return defaults

    def default_nfe(self, cfg) -> int:
        return cfg.sampler_steps or 1  # trained for the k-step line sampler: k steps

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if cfg.recon not in RECON_LOSSES:
            raise StraightflowError(f"unknown --recon {cfg.recon!r}: use one of {', '.join(RECON_LOSSES)}")
        if cfg.adv < 0:
            raise StraightflowError(f"--adv must be >= 0, got {cfg.adv}")
        if cfg.sampler_steps < 0:
            raise StraightflowError(f"--sampler-steps must be >= 0, got {cfg.sampler_steps}")
        check_t1_fraction(cfg.t1_fraction)

    def prepare(self, module, cfg, data) -> None:
        if cfg.recon == "lpips":
            if data.kind != "image":
                raise StraightflowError("--recon lpips is for images; use mse or pseudo-huber for vector data")
            load_lpips(cfg.lpips_weights)  # fail before training starts
        super().prepare(module, cfg, data)

    def build_objective(self, cfg, data, device):
        """The endpoint objective; with ``--adv`` its critic (trained on the base data; a projection critic on the
        labels for a conditional student) is the aux trainer."""
        lpips = load_lpips(cfg.lpips_weights).to(device) if cfg.recon == "lpips" else None
        adversary = None
        if cfg.adv > 0:
            real = getattr(data, "base", data)  # real data, not pairs
            k = real.num_classes if cfg.conditional else 0
            disc = build_discriminator(tuple(data.shape), data.kind, num_classes=k).to(device)
            adversary = AdversarialTerm(disc, real.sample_train, cfg.lr, num_classes=k,
                                        cond_drop=cfg.cond_drop)
        objective = LinesObjective(recon=cfg.recon, sampler_steps=cfg.sampler_steps, t1_fraction=cfg.t1_fraction,
                                   t_min=cfg.t_min, adv_weight=cfg.adv, adversary=adversary, lpips=lpips)
        return objective, adversary
