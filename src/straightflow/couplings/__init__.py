"""Couplings (METHODS.md section 2)."""

from .base import CoupledBatch, Coupling
from .independent import IndependentCoupling
from .learned import LearnedGaussianCoupling
from .minibatch_ot import MinibatchOTCoupling, ot_plan

__all__ = ["CoupledBatch", "Coupling", "IndependentCoupling", "LearnedGaussianCoupling", "MinibatchOTCoupling", "ot_plan"]
