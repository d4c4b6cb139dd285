"""Couplings (METHODS.md section 2)."""

from .base import CoupledBatch, Coupling
from .independent import IndependentCoupling
from .minibatch_ot import MinibatchOTCoupling, ot_plan

__all__ = ["CoupledBatch", "Coupling", "IndependentCoupling", "MinibatchOTCoupling", "ot_plan"]
