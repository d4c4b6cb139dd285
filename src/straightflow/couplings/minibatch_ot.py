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

Under DDP (torch.distributed initialised with more than one rank, module in
training mode) the plan is solved over the *global* batch, so adding ranks does
not shrink the OT batch: every rank draws its local x and z as before, x, z (and
y) are all-gathered from all ranks (equal local batch sizes required), rank 0
solves one plan over the gathered batch (within each class with labels) and
broadcasts the assignment, and each rank keeps its own rows of x paired with the
noise the plan gives them, which may have been drawn on another rank. The
pairing of rank r is rows r*n .. (r+1)*n - 1 of the single-process pairing of
the concatenated batch (with rank 0's generator for the Sinkhorn draw).
``global_batch=False`` pairs within each rank's share instead (as before); in
eval mode (``evaluate``, plots, possibly run on one rank only) the coupling
always pairs rank-locally and calls no collective.

POT's convergence warnings (``ot.emd`` reaching ``numItermax``, Sinkhorn not
converging) are caught, not printed: every batch reports the fraction of its
OT solves that stopped early as the training stat ``ot_unconverged``
(``stats.jsonl``; 0 when every plan converged).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..distributed import all_gather_rows, broadcast_from_main, process_group_rank, process_group_size
from ..errors import StraightflowError
from ..metrics.distances import call_pot
from .base import CoupledBatch, Coupling

OT_SOLVERS = ("exact", "sinkhorn")
#: iteration limits of the exact (network simplex) and entropic (Sinkhorn) plans
EMD_NUM_ITERMAX = 1_000_000
SINKHORN_NUM_ITERMAX = 5000


def ot_plan(x: torch.Tensor, z: torch.Tensor, solver: str = "exact", reg: float = 0.05,
            notes: list[str] | None = None) -> np.ndarray:
    """The OT plan between the rows of ``x`` and ``z`` for the squared Euclidean cost (POT).

    POT's warnings (the iteration limit reached before convergence) are appended to ``notes``
    when given, else re-issued as a ``UserWarning``."""
    import ot  # POT (with scikit-learn and scipy.stats) loads on the first plan, not with the package

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
    """x and independent z re-paired inside the batch by the OT plan (OT-CFM).

    ``global_batch``: under DDP (training mode), solve one plan over all ranks' batches (the module docstring)."""

    def __init__(self, prior=None, solver: str = "exact", reg: float = 0.05, global_batch: bool = True):
        super().__init__(prior)
        if solver not in OT_SOLVERS:
            raise StraightflowError(f"unknown OT solver {solver!r}: use {' or '.join(OT_SOLVERS)}")
        if not reg > 0:
            raise StraightflowError(f"the Sinkhorn regularisation must be > 0, got {reg}")
        self.solver, self.reg, self.global_batch = solver, reg, bool(global_batch)

    def _match(self, x: torch.Tensor, z: torch.Tensor, generator, notes: list[str] | None = None) -> torch.Tensor:
        """Index j into z of the noise paired with each row of x (POT's warnings appended to ``notes``)."""
        plan = ot_plan(x, z, self.solver, self.reg, notes)
        if self.solver == "exact":
            return torch.from_numpy(plan.argmax(axis=1))
        rows = torch.from_numpy(plan).float()
        rows = rows / rows.sum(dim=1, keepdim=True).clamp_min(1e-30)
        cpu_gen = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()))
        return torch.multinomial(rows, 1, generator=cpu_gen).squeeze(1)

    def _pairing(self, x: torch.Tensor, z: torch.Tensor, generator, y=None) -> tuple[torch.Tensor, int, int]:
        """(j, solves, unconverged): row i of x is paired with z[j[i]]; the number of OT solves and of
        those POT stopped at its iteration limit."""
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
        return j, solves, unconverged

    def _global_pairing(self, x: torch.Tensor, z: torch.Tensor, generator,
                        y=None) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(j, z_global, solves, unconverged): this rank's rows of one plan over every rank's batch;
        row i of x is paired with z_global[j[i]]. A collective: every rank calls it at the same step."""
        # x is data and z noise: neither carries a gradient here, so gathering detached copies loses nothing
        gathered = all_gather_rows(x, z, *(() if y is None else (y,)), what="minibatch OT's local batch")
        xg, zg, yg = gathered[0], gathered[1], (gathered[2] if y is not None else None)
        # Rank 0 solves and broadcasts the assignment rather than every rank solving the same plan: the ranks
        # cannot then disagree (a cost matrix that differs in the last bit on another device, a tie broken
        # differently), which would pair a noise draw twice and another never; the Sinkhorn draw uses rank
        # 0's generator only; and a failure on rank 0 reaches every rank instead of leaving them waiting.
        # message: [ok, solves, unconverged, j over the global batch]
        message = torch.zeros(3 + xg.shape[0], dtype=torch.int64, device=x.device)
        error = None
        if process_group_rank() == 0:
            try:
                j, solves, unconverged = self._pairing(xg, zg, generator, yg)
                message[3:] = j
                message[:3] = torch.tensor([1, solves, unconverged], dtype=torch.int64)
            except Exception as exc:  # re-raised below, after the other ranks have been told
                error = exc
        broadcast_from_main(message)
        if error is not None:
            raise error
        ok, solves, unconverged = message[:3].tolist()
        if not ok:
            raise StraightflowError("minibatch OT over the global batch failed on rank 0 (its error is in rank "
                                    "0's output)")
        n = x.shape[0]
        start = process_group_rank() * n
        return message[3 + start : 3 + start + n], zg, solves, unconverged

    def forward(self, batch, generator, y=None):
        x = self.data_of(batch)
        z = self.noise_like(x, generator)
        if self.global_batch and self.training and process_group_size() > 1:
            j, z, solves, unconverged = self._global_pairing(x, z, generator, y)
        else:
            j, solves, unconverged = self._pairing(x, z, generator, y)
        # the fraction of this batch's OT solves POT stopped at numItermax (its warnings are caught)
        stats = {"ot_unconverged": torch.tensor(unconverged / max(solves, 1), device=x.device)}
        return CoupledBatch(x=x, z=z[j], y=y, stats=stats)
