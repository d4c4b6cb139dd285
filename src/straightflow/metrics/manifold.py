"""Precision and recall of k-NN manifolds (Kynkäänniemi et al. 2019, "Improved Precision and
Recall Metric for Assessing Generative Models").

A set's manifold is the union of balls around its points, each with the radius of the
distance to its ``k``-th nearest neighbour in the set (k = 3 by default, as in the paper).
Precision is the fraction of generated points inside the real manifold (how many samples
look real); recall the fraction of real points inside the generated manifold (how much of
the data the model covers). Both are in [0, 1]; 1 and 1 for identical sets.

Both depend on the set sizes: a set's radii shrink as it grows, so recall (radii of the
generated set) rises with more samples. The paper compares sets of equal size; so does
:func:`precision_recall`: recall is averaged over disjoint chunks of the generated set of
the real set's size (the rest of the generated points are left out of recall), while
precision, which depends on the real set only, uses every generated point. A floor at the
same sizes (training against held-out images) says what a perfect model scores.
Distances are computed in blocks of at most :data:`KNN_BLOCK` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: the k of the k-NN radii (Kynkäänniemi et al. 2019)
PR_K = 3
#: most pairwise distances held at once (float64: 32 MiB)
KNN_BLOCK = 2048 * 2048


@dataclass(frozen=True)
class PrecisionRecall:
    """Precision (generated points in the real manifold), recall (real points in the generated
    manifold, averaged over ``recall_chunks`` chunks of ``chunk_size`` generated points) and ``k``."""

    precision: float
    recall: float
    k: int
    chunk_size: int
    recall_chunks: int


def _rows_per_block(m: int) -> int:
    return max(1, KNN_BLOCK // max(1, m))


def knn_radii(x: torch.Tensor, k: int = PR_K) -> torch.Tensor:
    """The distance from each row of ``x`` to its ``k``-th nearest other row."""
    x = torch.as_tensor(x).double()
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k-NN radii need 1 <= k < the number of points ({n}), got k = {k}")
    out = []
    step = _rows_per_block(n)
    for s in range(0, n, step):
        d = torch.cdist(x[s : s + step], x, compute_mode="donot_use_mm_for_euclid_dist")
        rows = torch.arange(d.shape[0])
        d[rows, rows + s] = float("inf")  # not its own neighbour
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out)


def manifold_coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The fraction of ``points`` within ``radii[j]`` of some ``centres[j]`` (boundary included)."""
    points, centres, radii = (torch.as_tensor(t).double() for t in (points, centres, radii))
    inside = 0
    step = _rows_per_block(centres.shape[0])
    for s in range(0, points.shape[0], step):
        d = torch.cdist(points[s : s + step], centres, compute_mode="donot_use_mm_for_euclid_dist")
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / max(1, points.shape[0])


def precision_recall(real, fake, k: int = PR_K) -> PrecisionRecall:
    """Precision and recall of the ``fake`` feature set against the ``real`` one (both n x d, more than
    ``k`` points each). Recall: the mean over ``len(fake) // c`` disjoint chunks of ``c = min(len(real), len(fake))``
    generated points, so each chunk is the size of the real set when there are at least as many generated points."""
    real, fake = torch.as_tensor(real).double(), torch.as_tensor(fake).double()
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"precision and recall with k = {k} need more than {k} points on each side")
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    chunk = min(real.shape[0], fake.shape[0])
    chunks = fake.shape[0] // chunk
    recalls = [manifold_coverage(real, part, knn_radii(part, k)) for part in fake[: chunks * chunk].split(chunk)]
    return PrecisionRecall(precision, sum(recalls) / chunks, k, chunk, chunks)
