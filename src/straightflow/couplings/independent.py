"""Independent coupling q(x, z) = p(x) p(z): 1-rectified flow, the baseline."""

from __future__ import annotations

from .base import CoupledBatch, Coupling


class IndependentCoupling(Coupling):
    """z ~ p(z) independently of x."""

    def forward(self, batch, generator, y=None):
        x = self.data_of(batch)
        return CoupledBatch(x=x, z=self.noise_like(x, generator), y=y)
