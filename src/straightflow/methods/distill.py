"""``distill``: one-step distillation (curvature paper, Table 1). The student starts
from the teacher; ``x_hat = z - v(z, 1)`` is trained with the MSE to the teacher's x*."""

from __future__ import annotations

from ..objectives import DistillObjective
from .teacher import PairMethod


class Distill(PairMethod):
    name = "distill"
    description = "one-step distillation of a teacher's (noise, sample) pairs"
    starts_from_teacher = True

    def default_nfe(self, cfg) -> int:
        return 1

    def build_objective(self, cfg, data, device):
        return DistillObjective(), None
