"""Sample-quality distances for vector data (``docs/api.md``, "Data, metrics, models").

* ``wasserstein2``: exact W2 between two empirical samples (POT ``emd2`` on the
  squared Euclidean cost). Biased for finite samples: report it beside the
  two-sample floor, ``wasserstein2(true_a, true_b)``. The n x m float64 cost
  matrix is capped at :data:`W2_MAX_ENTRIES` entries: above it W2 is that of a
  seeded subsample of both sets (same fraction of each), and a note says so.
  POT stopping at its iteration limit (``numItermax``) is a note too, not a
  warning lost in a log.
* ``energy_distance``: the unbiased U-statistic estimator of the energy
  distance 2E|X-Y| - E|X-X'| - E|Y-Y'|, which is 0 in expectation when the two
  distributions agree and positive in expectation otherwise, so a model that
  shrinks the data's spread cannot score below the truth on average. Summed in
  blocks of at most :data:`ENERGY_BLOCK` distances, so memory stays bounded at
  any n.

Notes (subsampling, POT not converging) are appended to a ``notes`` list when
the caller passes one (``eval`` reports them as ``w2_note``); without one they
are issued as a ``UserWarning``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..noise import stream_generator

#: most entries of the n x m cost matrix exact W2 solves (float64: 200 MB, and POT's plan as much again)
W2_MAX_ENTRIES = 25_000_000
#: POT ``emd2``'s iteration limit; reaching it is reported as a note (the value is then an upper bound)
W2_NUM_ITERMAX = 10_000_000
#: most pairwise distances ``energy_distance`` holds at once (float64: 32 MiB)
ENERGY_BLOCK = 2048 * 2048


def _flat64(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.detach().reshape(x.shape[0], -1).double().cpu()


def _note(notes: list[str] | None, text: str) -> None:
    if notes is None:
        warnings.warn(text, UserWarning, stacklevel=3)
    else:
        notes.append(text)


def call_pot(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` (a POT solver) and the messages of the warnings it raised
    (``numItermax`` reached, Sinkhorn not converged), caught instead of printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in caught]


def w2_subsample_sizes(n: int, m: int, max_entries: int) -> tuple[int, int]:
    """(n', m') <= (n, m), the same fraction of each, with n' m' <= ``max_entries`` (each at least 1)."""
    if n * m <= max_entries:
        return n, m
    scale = math.sqrt(max_entries / (n * m))
    return max(1, math.floor(n * scale)), max(1, math.floor(m * scale))


def wasserstein2(a, b, notes: list[str] | None = None, seed: int = 0) -> float:
    """Exact W2 between the empirical measures of ``a`` (n x D) and ``b`` (m x D).

    Above :data:`W2_MAX_ENTRIES` cost entries it is W2 between seeded subsamples (rows drawn
    without replacement from the ``"w2-subsample"`` stream of ``seed``; sizes from
    :func:`w2_subsample_sizes`); that, and POT reaching :data:`W2_NUM_ITERMAX`, go to ``notes``.
    """
    import ot  # POT (with scikit-learn and scipy.stats) loads on the first W2, not with the package

    a, b = _flat64(a), _flat64(b)
    n, m = a.shape[0], b.shape[0]
    n2, m2 = w2_subsample_sizes(n, m, W2_MAX_ENTRIES)
    if (n2, m2) != (n, m):
        g = stream_generator("w2-subsample", seed)
        a, b = a[torch.randperm(n, generator=g)[:n2]], b[torch.randperm(m, generator=g)[:m2]]
        _note(notes, f"w2 on a seeded subsample of {n2} of {n} x {m2} of {m} points (exact W2 is limited to "
                     f"{W2_MAX_ENTRIES:,} cost entries)")
    # direct differences, not the matmul shortcut: its cancellation leaves ~1e-16 |x|^2 on the cost
    # of coinciding points, so W2 of a set against its own permutation came out ~1e-9, not 0
    cost = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2).numpy()
    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    value, messages = call_pot(ot.emd2, wa, wb, cost, numItermax=W2_NUM_ITERMAX)
    for message in messages:
        _note(notes,
              f"w2: POT: {message} (numItermax {W2_NUM_ITERMAX:,}; the plan is not optimal, so w2 is overestimated)")
    return float(np.sqrt(max(float(value), 0.0)))


def _distance_sum(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """sum_ij |a_i - b_j| (``b=None``: of ``a`` against itself, i != j), in blocks of at most
    :data:`ENERGY_BLOCK` distances; the zero diagonal is exact (not matmul rounding)."""
    side = max(1, math.isqrt(ENERGY_BLOCK))
    other = a if b is None else b
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, a.shape[0], side):
        for j in range(i if b is None else 0, other.shape[0], side):
            d = torch.cdist(a[i : i + side], other[j : j + side])
            if b is None and i == j:
                d.fill_diagonal_(0.0)
            total += d.sum() * (2.0 if b is None and j > i else 1.0)  # a against itself: each off-diagonal block twice
    return total


def energy_distance(a, b) -> float:
    """Unbiased (U-statistic) energy distance between samples ``a`` and ``b`` (bounded memory at any size)."""
    a, b = _flat64(a), _flat64(b)
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError("energy distance needs at least 2 samples on each side")
    cross = _distance_sum(a, b) / (n * m)
    within_a = _distance_sum(a, None) / (n * (n - 1))
    within_b = _distance_sum(b, None) / (m * (m - 1))
    return float(2 * cross - within_a - within_b)


def nearest_neighbour_accuracy(samples, labels, reference, reference_labels) -> float:
    """Fraction of ``samples`` whose nearest ``reference`` point (Euclidean) carries the sample's own label:
    the class accuracy of conditional samples for vector data, judged by a 1-NN classifier on labelled data."""
    a, b = _flat64(samples), _flat64(reference)
    hits = 0
    ref_labels = torch.as_tensor(reference_labels).cpu()
    labels = torch.as_tensor(labels).cpu()
    for s in range(0, a.shape[0], 4096):  # bounded memory: 4096 x m distances at a time
        nearest = torch.cdist(a[s : s + 4096], b).argmin(dim=1)
        hits += int((ref_labels[nearest] == labels[s : s + 4096]).sum())
    return hits / max(1, a.shape[0])
