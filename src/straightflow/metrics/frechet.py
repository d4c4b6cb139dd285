"""Fréchet distance between image sets in a *named* feature space.

FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians
fitted to the features of two image sets (Heusel et al. 2017), in float64;
Tr (S_a S_b)^(1/2) from the eigenvalues of the symmetric PSD matrix
S_a^(1/2) S_b S_a^(1/2), which has those of S_a S_b (:func:`trace_sqrt_product`).
The FD of finite samples is biased upwards (more so the smaller the sets): report
it beside its floor at the same sizes, and beside the unbiased kernel distance
(:mod:`.kernel`). The other image metrics are in :mod:`.images`.

Feature spaces (the name goes into every report, so nobody mistakes one for
another):

- ``inception``: the standard FID Inception-v3 pool features, only when the
  user supplies the weights file (``eval --inception-weights PATH`` or
  ``$STRAIGHTFLOW_INCEPTION_WEIGHTS``); needs ``torch-fidelity`` (the
  ``fidelity`` extra: ``pip install 'straightflow[fidelity]'``). Never
  downloads anything.
- ``<dataset>-classifier-v1``: for labelled sets (``digits``, ``mnist``,
  ``cifar10``) a small CNN classifier trained by straightflow, seeded and on
  the CPU, on the dataset's own training split; its 64-d pooled penultimate
  features are used. Trained once and cached under ``$STRAIGHTFLOW_CACHE``
  (default ``~/.cache/straightflow``) keyed by the dataset and its split.
- ``random-conv-v1``: for unlabelled data (folders, arrays) the same CNN with
  fixed seeded random weights: deterministic, but only comparable between
  runs on the same data.

Images are clipped to [-1, 1] (the valid pixel range) before featurisation.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..cache import cache_dir
from ..errors import StraightflowError

FEATURE_VERSION = "v1"
FEATURE_DIM = 64


class FeatureCNN(nn.Module):
    """Small resolution-adaptive CNN: 3x3 convs, stride-2 until <= 4 px, global average pool."""

    def __init__(self, in_channels: int, size: int, n_classes: int = 10, width: int = 32):
        super().__init__()
        layers, ch, res = [nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU()], width, size
        while res > 4:
            layers += [nn.Conv2d(ch, min(2 * ch, FEATURE_DIM * 2), 3, stride=2, padding=1), nn.SiLU()]
            ch, res = min(2 * ch, FEATURE_DIM * 2), (res + 1) // 2
        layers += [nn.Conv2d(ch, FEATURE_DIM, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def _seeded_cnn(shape, n_classes: int, seed: int) -> FeatureCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureCNN(shape[0], max(shape[1], shape[2]), n_classes)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, steps: int = 600, batch_size: int = 64, seed: int = 0,
                     progress: bool = False) -> FeatureCNN:
    """Train the feature CNN as a classifier, deterministically on the CPU
    (Adam, cosine-decayed learning rate, seeded batches); ``progress``: a bar counting the images seen."""
    images, labels = images.cpu().float(), labels.cpu().long()
    net = _seeded_cnn(tuple(images.shape[1:]), int(labels.max()) + 1, seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    with tqdm(total=steps * batch_size, disable=not progress, desc="feature net", unit="img", mininterval=0.5,
              file=sys.stderr) as bar:
        for _ in range(steps):
            idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(batch_size)
    return net.eval()


def classifier_features(data, seed: int = 0) -> tuple[FeatureCNN, str]:
    """The cached (or freshly trained) classifier of a labelled image source."""
    from safetensors.torch import load_file, save_file

    name = f"{data.name}-classifier-{FEATURE_VERSION}"
    key = getattr(data, "key", data.name)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:60]
    path = (cache_dir() / "features"
            / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:10]}-classifier-{FEATURE_VERSION}.safetensors")
    images, labels = data.train_images(), data.labels
    n_classes = int(labels.max()) + 1
    if path.exists():
        net = _seeded_cnn(tuple(images.shape[1:]), n_classes, seed)
        try:
            net.load_state_dict(load_file(str(path)))
            return net.eval(), name
        except Exception:
            pass  # stale or corrupt cache entry: retrain and overwrite
    print(f"straightflow: training the {name} feature network (once; cached in {path.parent})", file=sys.stderr)
    net = train_classifier(images, labels, steps=600 if images.shape[0] < 10_000 else 3000, seed=seed, progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"features": name, "key": key})
    os.replace(tmp, path)
    return net, name


@torch.inference_mode()
def classifier_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 500) -> float:
    """Fraction of ``images`` (in [-1, 1], clipped) that ``classifier`` assigns to their ``labels``."""
    classifier = classifier.cpu().eval()
    hits = 0
    for s in range(0, images.shape[0], batch_size):
        logits = classifier(images[s : s + batch_size].cpu().float().clamp(-1, 1))
        hits += int((logits.argmax(dim=1) == labels[s : s + batch_size].cpu()).sum())
    return hits / max(1, images.shape[0])


def random_features(shape) -> tuple[FeatureCNN, str]:
    """The feature CNN with seeded He-normal weights (scale-preserving, so
    features respond to pixel shifts at every depth) and zero biases."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = FeatureCNN(shape[0], max(shape[1], shape[2]))
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return net.eval(), f"random-conv-{FEATURE_VERSION}"


#: what to install for Inception features (the ``fidelity`` extra in pyproject.toml)
FIDELITY_EXTRA = "pip install 'straightflow[fidelity]'"


class InceptionFeatures(nn.Module):
    """torch-fidelity's FID Inception-v3 (2048-d pool features) from a local weights file."""

    def __init__(self, weights_path: str):
        super().__init__()
        if not os.path.exists(weights_path):
            raise StraightflowError(f"Inception weights file {weights_path} does not exist")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as exc:
            raise StraightflowError("Inception features need torch-fidelity, in the 'fidelity' extra: "
                                    f"{FIDELITY_EXTRA} ({exc})") from None
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=weights_path)
        except Exception as exc:
            raise StraightflowError(f"could not load Inception weights from {weights_path}: {exc}") from None

    def forward(self, x):  # x in [-1, 1]
        u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        out = self.net(u8)
        return (out[0] if isinstance(out, (tuple, list)) else out).reshape(x.shape[0], -1)


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased, n - 1) covariance of ``features`` (n x d), in float64."""
    f = features.double()
    if f.shape[0] < 2:
        raise StraightflowError("the Fréchet distance needs at least 2 images per set")
    return f.mean(0), torch.atleast_2d(torch.cov(f.T))


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (eigenvalues below 0, rounding, set to 0)."""
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def trace_sqrt_product(s_a: torch.Tensor, s_b: torch.Tensor) -> float:
    """Tr (S_a S_b)^(1/2) for symmetric PSD S_a, S_b: the sum of the square roots of the eigenvalues
    of S_a^(1/2) S_b S_a^(1/2) (symmetric PSD, with the eigenvalues of S_a S_b), in float64.
    Singular covariances (fewer images than feature dimensions) are fine."""
    a = _psd_sqrt(s_a.double())
    m = a @ s_b.double() @ a
    return float(torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum())


def frechet_distance(mu_a, s_a, mu_b, s_b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)): the Fréchet (W2^2) distance of two Gaussians."""
    mu_a, mu_b, s_a, s_b = (torch.as_tensor(t).double() for t in (mu_a, mu_b, s_a, s_b))
    value = float((mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b)) - 2 * trace_sqrt_product(s_a, s_b)
    return max(value, 0.0)  # a rounding error below 0 for identical statistics


def frechet_from_stats(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """:func:`frechet_distance` of two ``(mean, covariance)`` pairs (:func:`gaussian_stats`)."""
    return frechet_distance(a[0], a[1], b[0], b[1])


class FrechetDistance:
    """The Fréchet distance alone as a quality metric (``eval`` uses :class:`~straightflow.metrics.images.ImageQuality`,
    which adds the kernel distance and precision/recall in the same features).

    ``extractor`` maps a batch of images in [-1, 1] to feature vectors;
    ``features`` is its name, reported beside every number.
    """

    name = "fd"

    def __init__(self, extractor: Callable[[torch.Tensor], torch.Tensor], features: str, device="cpu",
                 batch_size: int = 500):
        self.extractor, self.features, self.device, self.batch_size = (
            extractor, features, torch.device(device), batch_size)
        if isinstance(extractor, nn.Module):
            extractor.to(self.device).eval()
        self._ref: tuple[torch.Tensor, tuple] | None = None

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            x = images[s : s + self.batch_size].to(self.device, torch.float32).clamp(-1, 1)
            out.append(self.extractor(x).float().cpu())
        return torch.cat(out)

    def stats(self, images: torch.Tensor):
        return gaussian_stats(self.embed(images))

    def _reference_stats(self, reference: torch.Tensor):
        if self._ref is None or self._ref[0] is not reference:  # same tensor for every NFE: embed once
            self._ref = (reference, self.stats(reference))
        return self._ref[1]

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return frechet_from_stats(self.stats(a), self.stats(b))

    def floor(self, reference, floor_reference) -> dict:
        return {"fd_floor": frechet_from_stats(self.stats(floor_reference), self._reference_stats(reference)),
                "features": self.features}

    def score(self, samples, reference) -> dict:
        return {"fd": frechet_from_stats(self.stats(samples), self._reference_stats(reference)),
                "features": self.features}


def feature_extractor(data, inception_weights: str | None = None) -> tuple[Callable, str]:
    """Pick the feature space for ``data``: Inception if weights are given,
    else the dataset's own classifier if it has labels, else random-conv."""
    if inception_weights:
        return InceptionFeatures(inception_weights), "inception"
    if getattr(data, "labels", None) is not None:
        return classifier_features(data)
    return random_features(data.shape)
