"""Couplings: how a training pair (x, z) is drawn (``docs/api.md``).

=================================  ===========================================
:class:`IndependentCoupling`       z ~ p(z) independent of x (rectified flow)
:class:`MinibatchOTCoupling`       OT re-pairing inside the batch (OT-CFM)
:class:`LearnedGaussianCoupling`   z ~ q_phi(z|x) around any encoder (curvature paper Eq. 11)
:class:`TeacherPairCoupling`       (x*, z) pairs of a teacher (reflow, distill, lines)
=================================  ===========================================

:class:`KLBudget` adapts a learned coupling's beta so that its KL settles at a target
(``--kl-target``, ``docs/kl_target.md``).
"""

from .base import CoupledBatch, Coupling
from .independent import IndependentCoupling
from .kl_budget import KLBudget
from .learned import LearnedGaussianCoupling, zero_init_head
from .minibatch_ot import OT_SOLVERS, MinibatchOTCoupling, ot_plan
from .pairs import TeacherPairCoupling

__all__ = [
    "CoupledBatch", "Coupling", "IndependentCoupling", "KLBudget", "LearnedGaussianCoupling", "MinibatchOTCoupling",
    "TeacherPairCoupling", "OT_SOLVERS", "ot_plan", "zero_init_head",
]
