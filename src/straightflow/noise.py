"""Seeded random streams with names, so that no two uses of randomness share a seed.

Every random draw outside the training loop (sampling noise, teacher-pair noise,
the curvature path, the encoder's noise in evaluation, reference data of the
built-in sets) comes from a generator seeded by ``stream_seed(purpose, seed,
chunk)``: a hash of the three, so sampling seed 1 and a 2D reference of seed 1
can never draw the same numbers (see ``docs/architecture.md``).

Noise for many samples is drawn in chunks of :data:`NOISE_CHUNK` rows, chunk
``c`` from its own generator, so row ``i`` of seed ``s`` is the same whatever
the batch size, the number of GPUs or the first row asked for.
"""

from __future__ import annotations

import hashlib

import torch

#: rows per noise chunk; chunk c of (purpose, seed) has its own generator
NOISE_CHUNK = 1024

#: the named streams straightflow draws from (a new use of randomness adds a name here)
PURPOSES = (
    "sample",  # generation noise z ~ prior (Run.sample, eval, plots)
    "pairs",  # teacher-pair noise
    "curvature",  # the noise of the curvature metric's paths (eval)
    "encode",  # eps of z ~ q_phi(z|x) in evaluation (curvature method)
    "prior-norm",  # the prior's ||z|| beside q_phi's (eval)
    "heldout-loss",  # noise and t of the held-out flow loss (eval)
    "forward",  # the coupling's z in forward-trajectory plots
    "reference",  # held-out draws of the built-in 2D sets
    "validation",  # validation draws of the built-in 2D sets (model selection, never eval's reference)
    "floor",  # the second, independent draw for two-sample floors
    "labels",  # the class labels of teacher pairs (conditional runs)
    "w2-subsample",  # the rows exact W2 keeps when n x m is above its cap (metrics.distances)
    "epochs",  # the row order of each epoch of a streamed training set (data.stream.EpochSampler)
    "kid-subsets",  # the subsets the kernel distance averages over (metrics.kernel)
)


def stream_seed(purpose: str, seed: int, chunk: int = 0) -> int:
    """A 63-bit generator seed for ``(purpose, seed, chunk)``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown noise stream {purpose!r}: add it to straightflow.noise.PURPOSES")
    digest = hashlib.sha256(f"straightflow-{purpose}/{int(seed)}/{int(chunk)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def stream_generator(purpose: str, seed: int, chunk: int = 0,
                     device: torch.device | str | None = None) -> torch.Generator:
    """A fresh generator on ``device`` (default CPU) seeded for ``(purpose, seed, chunk)``."""
    g = torch.Generator(device=device) if device is not None else torch.Generator()
    return g.manual_seed(stream_seed(purpose, seed, chunk))


def seeded_noise(n: int, shape: tuple[int, ...], seed: int, purpose: str = "sample", prior=None,
                 start: int = 0) -> torch.Tensor:
    """Rows ``start .. start + n - 1`` of the noise stream ``(purpose, seed)`` (CPU, float32).

    ``prior`` (an object with ``sample(shape, generator=...)``, e.g.
    :class:`~straightflow.priors.DiagonalGaussianPrior`) shapes the noise;
    ``None`` draws N(0, I). Row ``i`` depends on ``(purpose, seed, i)`` only.
    """
    shape = tuple(shape)
    if n <= 0:
        return torch.empty(0, *shape)
    stop = start + n
    chunks = []
    for c in range(start // NOISE_CHUNK, (stop - 1) // NOISE_CHUNK + 1):
        g = stream_generator(purpose, seed, c)
        size = (NOISE_CHUNK, *shape)
        chunks.append(prior.sample(size, generator=g) if prior is not None else torch.randn(size, generator=g))
    offset = (start // NOISE_CHUNK) * NOISE_CHUNK
    return torch.cat(chunks)[start - offset : stop - offset].contiguous()


def seeded_labels(n: int, probs: torch.Tensor, seed: int, purpose: str = "labels", start: int = 0) -> torch.Tensor:
    """Rows ``start .. start + n - 1`` of a stream of class labels drawn from ``probs`` (CPU, int64).

    Chunked like :func:`seeded_noise`: label ``i`` depends on ``(purpose, seed, i)`` and ``probs`` only.
    """
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if n <= 0:
        return torch.empty(0, dtype=torch.long)
    stop = start + n
    chunks = [torch.multinomial(probs, NOISE_CHUNK, replacement=True, generator=stream_generator(purpose, seed, c))
              for c in range(start // NOISE_CHUNK, (stop - 1) // NOISE_CHUNK + 1)]
    offset = (start // NOISE_CHUNK) * NOISE_CHUNK
    return torch.cat(chunks)[start - offset : stop - offset].contiguous()
