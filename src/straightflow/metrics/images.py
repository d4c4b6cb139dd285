"""Image quality in one named feature space: FD, KID, precision and recall (``docs/evaluation.md``).

:class:`ImageQuality` embeds each image set once (:mod:`.frechet`'s feature spaces) and reports

* ``fd``: the Fréchet distance (:mod:`.frechet`), biased upwards at small n;
* ``kid`` and ``kid_subset_sd``: the unbiased kernel distance and its standard deviation over
  subsets (:mod:`.kernel`). Its cubic kernel (x·y/d + 1)^3 expects features of order 1 (as
  Inception's pool features are); straightflow's own feature nets give features of any scale
  (``digits-classifier-v1``: |x|²/d about 40, where the cubic term swamps the rest and one outlier
  moves KID by hundreds), so in those spaces KID is computed on the features divided by the
  reference set's root mean square ``sqrt(mean |x|²/d)`` (reported as ``kid_scale``). Inception
  features are used as they are: their KID is the standard one;
* ``precision`` and ``recall``: k-NN manifolds, k = 3 (:mod:`.manifold`);
* ``features``: the feature space's name.

``floor`` scores a second sample of the data (training images) against the reference exactly as
``score`` scores the samples, so each metric has its floor at the same sizes (``<key>_floor``).
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from .frechet import FrechetDistance, feature_extractor, frechet_from_stats, gaussian_stats
from .kernel import KID_SUBSET_SIZE, KID_SUBSETS, kernel_distance
from .manifold import PR_K, precision_recall


class ImageQuality(FrechetDistance):
    """``evaluate.QUALITY_METRICS["image"]``: FD, KID (mean and subset sd), precision and recall of
    images in the feature space ``extractor`` (images in [-1, 1] -> (B, F)), named ``features``."""

    name = "fd"

    def __init__(self, extractor: Callable[[torch.Tensor], torch.Tensor], features: str, device="cpu",
                 batch_size: int = 500, k: int = PR_K, kid_subsets: int = KID_SUBSETS,
                 kid_subset_size: int = KID_SUBSET_SIZE, seed: int = 0, kid_rescale: bool = True):
        super().__init__(extractor, features, device, batch_size)
        self.k, self.kid_subsets, self.kid_subset_size, self.seed = k, kid_subsets, kid_subset_size, seed
        self.kid_rescale = kid_rescale
        self._ref_features: tuple | None = None

    def _reference(self, reference: torch.Tensor) -> tuple[torch.Tensor, tuple, float]:
        """The reference's features, Gaussian statistics and KID scale (embedded once: the same tensor comes for every
        NFE)."""
        if self._ref_features is None or self._ref_features[0] is not reference:
            feats = self.embed(reference)
            scale = float(feats.double().pow(2).mean().sqrt()) if self.kid_rescale else 1.0
            self._ref_features = (reference, feats, gaussian_stats(feats), scale if scale > 0 else 1.0)
        return self._ref_features[1:]

    def score(self, samples, reference) -> dict:
        """Every metric of ``samples`` against ``reference`` (precision and recall only with more than k images on each
        side)."""
        fa = self.embed(samples)
        fr, ref_stats, scale = self._reference(reference)
        kid = kernel_distance(fa / scale, fr / scale, self.kid_subsets, self.kid_subset_size, self.seed)
        out = {"fd": frechet_from_stats(gaussian_stats(fa), ref_stats), "kid": kid.mean, "kid_subset_sd": kid.subset_sd}
        if min(fa.shape[0], fr.shape[0]) > self.k:
            pr = precision_recall(fr, fa, self.k)
            out.update(precision=pr.precision, recall=pr.recall)
        out["features"] = self.features
        return out

    def floor(self, reference, floor_reference) -> dict:
        """:meth:`score` of ``floor_reference`` (a second sample of the data), each key as ``<key>_floor``."""
        floor = {f"{k}_floor": v for k, v in self.score(floor_reference, reference).items() if k != "features"}
        return {**floor, "features": self.features, "kid_scale": self._reference(reference)[2]}


def image_metric(run) -> ImageQuality:
    """``QUALITY_METRICS["image"]`` factory; ``run.inception_weights`` (set by
    ``eval --inception-weights``) or ``$STRAIGHTFLOW_INCEPTION_WEIGHTS``
    selects Inception features."""
    weights = getattr(run, "inception_weights", None) or os.environ.get("STRAIGHTFLOW_INCEPTION_WEIGHTS")
    extractor, name = feature_extractor(run.data, weights)
    return ImageQuality(extractor, name, device=run.device, kid_rescale=name != "inception")
