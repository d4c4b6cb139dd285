"""Independent coupling q(x, z) = p(x) p(z): 1-rectified flow, the baseline."""

from __future__ import annotations

from .base import CoupledBatch, Coupling


class IndependentCoupling(Coupling):
    name = "independent"

    def forward(self, batch, generator):
        x = self.data_of(batch)
        z = self.prior.sample(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return CoupledBatch(x=x, z=z)
