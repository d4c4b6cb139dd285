"""Minibatch optimal-transport coupling (OT-CFM, a peer baseline).

Inside each batch, x and independent noise z are re-paired by the OT plan of
the squared Euclidean cost, computed with POT: exact (``ot.emd``; for equal
uniform batches the plan is a permutation) or entropic (``ot.sinkhorn``, pairs
then drawn from the plan).

With labels (a class-conditional run) the re-pairing happens *within each
class*: the data of class c are coupled, by OT, to as many noise draws, so the
noise a class-c sample is trained from stays N(0, I) distributed and the model
learns the OT map from the prior to p(x | c) (``docs/conditional.md``).
torchcfm's OT matcher instead solves one plan over the whole batch, ignoring
the labels, and carries each data point's label along.

POT's convergence warnings (``ot.emd`` reaching ``numItermax``, Sinkhorn not
converging) are caught, not printed: every batch reports the fraction of its
OT solves that stopped early as the training stat ``ot_unconverged``
(``stats.jsonl``; 0 when every plan converged).
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import torch

from ..errors import StraightflowError
from ..metrics.distances import call_pot
from .base import CoupledBatch, Coupling

OT_SOLVERS = ("exact", "sinkhorn")
#: iteration limits of the exact (network simplex) and entropic (Sinkhorn) plans
EMD_NUM_ITERMAX = 1_000_000
SINKHORN_NUM_ITERMAX = 5000


def ot_plan(x: torch.Tensor, z: torch.Tensor, solver: str = "exact", reg: float = 0.05, notes: list[str] | None = None) -> np.ndarray:
    """The OT plan between the rows of ``x`` and ``z`` for the squared Euclidean cost (POT).

    POT's warnings (the iteration limit reached before convergence) are appended to ``notes``
    when given, else re-issued as a ``UserWarning``."""
    cost = torch.cdist(x.flatten(1).double(), z.flatten(1).double()).pow(2).cpu().numpy()
    n, m = cost.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    if solver == "exact":
        plan, messages = call_pot(ot.emd, a, b, cost, numItermax=EMD_NUM_ITERMAX)
    else:
        scale = cost.mean() if cost.mean() > 0 else 1.0
        plan, messages = call_pot(ot.sinkhorn, a, b, cost / scale, reg, numItermax=SINKHORN_NUM_ITERMAX)
    for message in messages:
        text = f"minibatch OT ({solver}): POT: {message}"
        if notes is None:
            warnings.warn(text, UserWarning, stacklevel=2)
        else:
            notes.append(text)
    return plan


class MinibatchOTCoupling(Coupling):
    """x and independent z re-paired inside the batch by the OT plan (OT-CFM)."""

    def __init__(self, prior=None, solver: str = "exact", reg: float = 0.05):
        super().__init__(prior)
        if solver not in OT_SOLVERS:
            raise StraightflowError(f"unknown OT solver {solver!r}: use {' or '.join(OT_SOLVERS)}")
        if not reg > 0:
            raise StraightflowError(f"the Sinkhorn regularisation must be > 0, got {reg}")
        self.solver, self.reg = solver, reg

    def _match(self, x: torch.Tensor, z: torch.Tensor, generator, notes: list[str] | None = None) -> torch.Tensor:
        """Index j into z of the noise paired with each row of x (POT's warnings appended to ``notes``)."""
        plan = ot_plan(x, z, self.solver, self.reg, notes)
        if self.solver == "exact":
            return torch.from_numpy(plan.argmax(axis=1))
        rows = torch.from_numpy(plan).float()
        rows = rows / rows.sum(dim=1, keepdim=True).clamp_min(1e-30)
        cpu_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()))
        return torch.multinomial(rows, 1, generator=cpu_gen).squeeze(1)

    def forward(self, batch, generator, y=None):
        x = self.data_of(batch)
        z = self.noise_like(x, generator)
        solves, unconverged = 0, 0
        if y is None:
            notes: list[str] = []
            j = self._match(x, z, generator, notes).to(x.device)
            solves, unconverged = 1, int(bool(notes))
        else:  # one plan per class: a sample is paired only with noise drawn for its own class
            j = torch.arange(x.shape[0], device=x.device)
            for c in torch.unique(y).tolist():
                rows = torch.nonzero(y == c).squeeze(1)
                if rows.numel() > 1:
                    notes = []
                    j[rows] = rows[self._match(x[rows], z[rows], generator, notes).to(x.device)]
                    solves, unconverged = solves + 1, unconverged + int(bool(notes))
        # the fraction of this batch's OT solves POT stopped at numItermax (its warnings are caught)
        stats = {"ot_unconverged": torch.tensor(unconverged / max(solves, 1), device=x.device)}
        return CoupledBatch(x=x, z=z[j], y=y, stats=stats)
