"""Class labels and classifier-free guidance (``docs/conditional.md``).

Labels are int64 class indices ``0 .. K-1``. A conditional network takes them
as a third argument, ``net(x_t, t, y)``, and reserves index ``K`` for the
*null* class: trained with labels replaced by the null class at rate
``cond_drop`` (:func:`drop_labels`), its null branch is an unconditional model
of the same data. Guidance (Ho & Salimans, "Classifier-Free Diffusion
Guidance", 2022, their Eq. 6 in velocity form) mixes the two branches::

    v_w(x, t | y) = v(x, t | null) + w * (v(x, t | y) - v(x, t | null))

w = 0 is the unconditional model, w = 1 the plain conditional one, w > 1
guided. A guided step (w not 0 or 1) evaluates the network on both labels:
:class:`GuidedVelocity` runs them as one call on a batch of 2B rows and counts
calls and rows, so the cost of a guided NFE is never hidden.
"""

from __future__ import annotations

import math

import torch


def call_velocity(net, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``net(x, t)`` for unconditional use, ``net(x, t, y)`` with labels."""
    return net(x, t) if y is None else net(x, t, y)


def drop_labels(y: torch.Tensor, p: float, null_label: int, generator: torch.Generator) -> torch.Tensor:
    """Each label replaced by ``null_label`` with probability ``p`` (drawn from ``generator``)."""
    if p <= 0:
        return y
    drop = torch.rand(y.shape[0], generator=generator, device=generator.device) < p
    return torch.where(drop.to(y.device), torch.full_like(y, null_label), y)


def null_labels(n: int, null_label: int, device=None) -> torch.Tensor:
    return torch.full((n,), int(null_label), dtype=torch.long, device=device)


class GuidedVelocity:
    """The velocity ``v_w(x, t | y)`` of a conditional net, as a plain ``fn(x, t)`` for the solvers.

    ``labels``: (B,) class indices of the batch being solved. ``calls`` counts
    network forward passes and ``rows`` the rows of the largest one: a guided
    step is one call on 2B rows (conditional and null stacked), w = 1 and w = 0
    are one call on B rows.
    """

    def __init__(self, net, labels: torch.Tensor, guidance: float = 1.0, null_label: int | None = None):
        if not math.isfinite(guidance):
            raise ValueError(f"guidance must be finite, got {guidance}")
        self.net, self.labels, self.guidance = net, labels.long(), float(guidance)
        self.null_label = null_label
        if self.branches == 2 or self.guidance == 0:
            if null_label is None:
                raise ValueError("guidance other than 1 needs the null label")
        self.calls = 0
        self.rows = 0

    @property
    def branches(self) -> int:
        """Network evaluations per sample per velocity evaluation: 2 when guided, else 1."""
        return 1 if self.guidance in (0.0, 1.0) else 2

    def _net(self, x, t, y):
        self.calls += 1
        self.rows = max(self.rows, x.shape[0])
        return self.net(x, t, y)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.labels.to(x.device)
        if self.guidance == 1.0:
            return self._net(x, t, y)
        null = null_labels(x.shape[0], self.null_label, x.device)
        if self.guidance == 0.0:
            return self._net(x, t, null)
        v_cond, v_null = self._net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return v_null + self.guidance * (v_cond - v_null)


def stratified_labels(n: int, probs: torch.Tensor) -> torch.Tensor:
    """n labels in proportion to ``probs`` (largest remainders; equal counts for uniform classes), class by class."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    exact = probs / probs.sum() * n
    counts = exact.floor().long()
    rest = n - int(counts.sum())
    if rest:
        counts[torch.argsort(exact - counts, descending=True)[:rest]] += 1
    return torch.repeat_interleave(torch.arange(probs.shape[0]), counts)
