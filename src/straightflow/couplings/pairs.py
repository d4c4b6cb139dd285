"""The teacher-pairs coupling (reflow, distillation, the lines method).

The batch already is ``(x*, z)``: noise and the teacher's deterministic sample
x* = Sampler(z) (lines paper; ``docs/lines.md``); with labels, y is the class
the (guided) teacher was asked for. Given a plain data tensor
instead (no pair for it), it pairs the data with independent prior noise.
"""

from __future__ import annotations

from .base import CoupledBatch, Coupling


class TeacherPairCoupling(Coupling):
    """``(x*, z)`` batches pass through unchanged."""

    def forward(self, batch, generator, y=None):
        if isinstance(batch, (tuple, list)):
            return CoupledBatch(x=batch[0], z=batch[1], y=y)
        return CoupledBatch(x=batch, z=self.noise_like(batch, generator), y=y)
