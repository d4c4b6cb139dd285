"""``ot``: minibatch optimal-transport pairing with the velocity objective (OT-CFM, a peer baseline).

The lines paper argues this needs batch sizes exponential in the dimension
(``docs/experiments-full.md``, OT vs dimension).
"""

from __future__ import annotations

from ..couplings import OT_SOLVERS, MinibatchOTCoupling
from ..errors import StraightflowError
from .base import Method


class MinibatchOT(Method):
    name = "ot"
    description = "flow matching with a minibatch optimal-transport coupling (OT-CFM, Tong et al. 2023)"

    def validate(self, cfg) -> None:
        if cfg.ot_solver not in OT_SOLVERS:
            raise StraightflowError(f"unknown ot_solver {cfg.ot_solver!r}: use {' or '.join(OT_SOLVERS)}")
        if not cfg.sinkhorn_reg > 0:
            raise StraightflowError(f"sinkhorn_reg must be > 0, got {cfg.sinkhorn_reg}")

    def build_coupling(self, cfg, data, prior, encoder=None):
        return MinibatchOTCoupling(prior, cfg.ot_solver, cfg.sinkhorn_reg)
