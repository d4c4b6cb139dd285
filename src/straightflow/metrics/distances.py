"""Sample-quality distances for vector data (``docs/api.md``, "Metrics").

* ``wasserstein2``: exact W2 between two empirical samples (POT ``emd2`` on the
  squared Euclidean cost). Biased for finite samples: report it beside the
  two-sample floor, ``wasserstein2(true_a, true_b)``.
* ``energy_distance``: the unbiased U-statistic estimator of the energy
  distance 2E|X-Y| - E|X-X'| - E|Y-Y'|, which is 0 in expectation when the two
  distributions agree and positive in expectation otherwise, so a model that
  shrinks the data's spread cannot score below the truth on average.
"""

from __future__ import annotations

import numpy as np
import ot
import torch


def _flat64(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.detach().reshape(x.shape[0], -1).double().cpu()


def wasserstein2(a, b) -> float:
    """Exact W2 between the empirical measures of ``a`` (n x D) and ``b`` (m x D)."""
    a, b = _flat64(a), _flat64(b)
    cost = torch.cdist(a, b).pow(2).numpy()
    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    return float(np.sqrt(max(ot.emd2(wa, wb, cost, numItermax=10_000_000), 0.0)))


def energy_distance(a, b) -> float:
    """Unbiased (U-statistic) energy distance between samples ``a`` and ``b``."""
    a, b = _flat64(a), _flat64(b)
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError("energy distance needs at least 2 samples on each side")
    cross = torch.cdist(a, b).mean()
    within_a = torch.cdist(a, a).sum() / (n * (n - 1))
    within_b = torch.cdist(b, b).sum() / (m * (m - 1))
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
