"""Kernel distance (KID; Bińkowski et al. 2018, "Demystifying MMD GANs").

The squared maximum mean discrepancy between two feature sets under the cubic
polynomial kernel k(x, y) = (x·y / d + 1)^3 (d the feature dimension), by its
unbiased estimator

    MMD²_u = mean_{i≠j} k(a_i, a_j) + mean_{i≠j} k(b_i, b_j) - 2 mean_{i,j} k(a_i, b_j),

which is 0 in expectation when the two distributions agree (single values can be
negative) whatever the set sizes: unlike the Fréchet distance it has no
small-sample bias, so numbers at different n, and a model against its floor, compare
directly. As in the paper it is averaged over ``subsets`` random subsets of
``subset_size`` points of each set (drawn without replacement; all points of a set
smaller than that), and the standard deviation over those subsets is reported with
it. The subsets are drawn from the ``"kid-subsets"`` stream of ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..noise import stream_generator

#: subsets averaged over, and points per subset, as in Bińkowski et al. (2018)
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


@dataclass(frozen=True)
class KernelDistance:
    """KID: the mean of the unbiased MMD² over subsets, its standard deviation over them, and the sizes."""

    mean: float
    subset_sd: float
    subsets: int
    subset_size_a: int
    subset_size_b: int


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a·b / d + 1)^3 for every pair of rows of ``a`` (n x d) and ``b`` (m x d)."""
    return (a @ b.T / a.shape[1] + 1.0).pow(3)


def mmd2_unbiased(a, b) -> float:
    """The unbiased MMD² of feature sets ``a`` (n x d) and ``b`` (m x d), n, m >= 2, under :func:`polynomial_kernel`."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the kernel distance needs at least 2 points on each side")
    k_aa, k_bb = polynomial_kernel(a, a), polynomial_kernel(b, b)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return float(within_a + within_b - 2 * polynomial_kernel(a, b).mean())


def kernel_distance(a, b, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                    seed: int = 0) -> KernelDistance:
    """KID of feature sets ``a`` and ``b``: :func:`mmd2_unbiased` on ``subsets`` seeded subsets of
    ``min(subset_size, len)`` points of each, averaged, with the standard deviation over subsets."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    size_a, size_b = min(subset_size, a.shape[0]), min(subset_size, b.shape[0])
    g = stream_generator("kid-subsets", seed)
    values = []
    for _ in range(subsets):
        ia = torch.randperm(a.shape[0], generator=g)[:size_a]
        ib = torch.randperm(b.shape[0], generator=g)[:size_b]
        values.append(mmd2_unbiased(a[ia], b[ib]))
    v = torch.tensor(values, dtype=torch.float64)
    sd = float(v.std()) if subsets > 1 else 0.0
    return KernelDistance(float(v.mean()), sd, subsets, size_a, size_b)
