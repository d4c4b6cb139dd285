"""Objectives: what the network is asked to predict on the line between x and z.

Every objective is a small object that owns its hyperparameters and is called as
``loss, stats = objective(net, x, z, generator)`` for any ``net(x_t, t)``
(``docs/api.md``).
"""

from .adversarial import AdversarialTerm, build_discriminator
from .distill import DistillObjective, one_step
from .endpoint import (
    RECON_LOSSES,
    LinesObjective,
    check_t1_fraction,
    load_lpips,
    pseudo_huber,
    sampler_times,
    training_times,
)
from .velocity import VelocityObjective

__all__ = [
    "VelocityObjective", "LinesObjective", "DistillObjective", "AdversarialTerm",
    "build_discriminator", "load_lpips", "one_step", "pseudo_huber", "sampler_times", "training_times",
    "check_t1_fraction", "RECON_LOSSES",
]
