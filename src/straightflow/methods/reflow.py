"""``reflow`` (k-rectified flow): the velocity loss on the straight lines between
teacher pairs, ``mean((z - x*) - v(x_t, t))^2``; fresh weights unless ``--init-from-teacher``."""

from __future__ import annotations

from .teacher import PairMethod


class Reflow(PairMethod):
    name = "reflow"
    description = "reflow: flow matching on a teacher's (noise, sample) pairs"

    def default_nfe(self, cfg) -> int:
        return 2
