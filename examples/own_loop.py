"""Teacher -> pairs -> lines student, in your own PyTorch loop, on your own point cloud.

This example uses straightflow only as a library of small parts: the objectives
(``VelocityObjective``, ``LinesObjective``), a coupling, a teacher wrapper, the
solvers and the W2 metric. The network, the optimiser, the EMA and the training
loops are plain PyTorch written here; nothing comes from ``straightflow.training``
or the CLI, and no run directory is created.

It shows the lines method end to end:

1. train a velocity teacher with flow matching on (x, z ~ N(0, I)) pairs;
2. integrate it with 100 Euler steps from noise z to its samples x* (teacher pairs);
3. train a student, started from the teacher's weights, to predict the endpoint x*
   anywhere on the straight line between z and x*;
4. sample the student with the line sampler at NFE 1 and compare W2 to held-out
   points against the teacher's W2 at Euler NFE 100 and the two-sample floor.

    python examples/own_loop.py --data points.npy --out samples.npy
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch
from torch import nn

from straightflow.couplings import IndependentCoupling
from straightflow.data import PointCloud
from straightflow.metrics import wasserstein2
from straightflow.noise import seeded_noise
from straightflow.objectives import LinesObjective, VelocityObjective
from straightflow.solvers import solve
from straightflow.teachers import VelocityTeacher


class VelocityNet(nn.Module):
    """v(x, t) for x of shape (B, D) and t of shape (B,): an MLP on [x, Fourier features of t]."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, n_freqs: int = 16):
        super().__init__()
        self.register_buffer("freqs", math.pi * torch.logspace(0, 2.5, n_freqs))
        layers, size = [], dim + 2 * n_freqs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        self.mlp = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([x, angles.cos(), angles.sin()], dim=1))


def train(net: nn.Module, objective, batches, steps: int, lr: float, seed: int, ema_decay: float = 0.999) -> nn.Module:
    """Adam on ``objective(net, x, z, generator)`` over ``batches(generator) -> (x, z)``; returns the EMA of ``net``."""
    generator = torch.Generator().manual_seed(seed)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        x, z = batches(generator)
        loss, _ = objective(net, x, z, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # EMA with a warm-up: the average covers the run so far early on
            weight = 1.0 - min(ema_decay, (1.0 + step) / (10.0 + step))
            for e, p in zip(ema.parameters(), net.parameters()):
                e.lerp_(p, weight)
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.4f}")
    return ema


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="point cloud, .npy of shape (N, D)")
    parser.add_argument("--out", required=True, help="where to write 2000 student samples (.npy, data units)")
    parser.add_argument("--steps", type=int, default=3000, help="teacher training steps")
    parser.add_argument("--student-steps", type=int, default=3000, help="student training steps")
    parser.add_argument("--pairs", type=int, default=50_000, help="teacher pairs for the student")
    parser.add_argument("--width", type=int, default=256, help="MLP width")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = PointCloud(args.data, heldout_fraction=0.2, split_seed=0)  # standardised train split, held-out in data units
    dim, batch = data.shape[0], 256

    print(f"teacher: flow matching on {data.train.shape[0]} points of dimension {dim}")
    coupling, flow = IndependentCoupling(), VelocityObjective(t_min=1e-5)

    def data_batches(generator):
        x, _ = data.sample_train(batch, generator)
        pair = coupling(x, generator)
        return pair.x, pair.z

    teacher = train(VelocityNet(dim, args.width), flow, data_batches, args.steps, 1e-3, args.seed)

    print(f"pairs: {args.pairs} teacher samples x* = Euler-100(z)")
    z_pairs = seeded_noise(args.pairs, (dim,), args.seed, "pairs")
    x_star = torch.cat([VelocityTeacher(teacher, solver="euler", nfe=100)(z).samples for z in z_pairs.split(10_000)])

    def pair_batches(generator):
        idx = torch.randint(0, args.pairs, (batch,), generator=generator)
        return x_star[idx], z_pairs[idx]

    print("student: lines objective on the pairs, started from the teacher")
    student = train(copy.deepcopy(teacher).requires_grad_(True), LinesObjective(recon="mse"), pair_batches,
                    args.student_steps, 1e-4, args.seed + 1)

    with torch.no_grad():
        z = seeded_noise(2000, (dim,), args.seed, "sample")
        result = solve(student, z, "lines", nfe=1)
        samples = data.denormalize(result.samples)
        np.save(args.out, samples.numpy())
        print(f"wrote {samples.shape[0]} samples (line sampler, NFE {result.nfe}) to {args.out}")

        n = min(data.heldout.shape[0], 2000)
        reference, _ = data.reference(n, args.seed)
        floor = wasserstein2(reference, data.floor_reference(n, args.seed)[0])
        w2_teacher = wasserstein2(reference, data.denormalize(solve(teacher, z[:n], "euler", 100).samples))
        w2_student = wasserstein2(reference, samples[:n])
    print(f"W2 against {n} held-out points:")
    print(f"  two-sample floor           {floor:.4f}")
    print(f"  teacher (Euler, NFE 100)   {w2_teacher:.4f}")
    print(f"  student (lines, NFE 1)     {w2_student:.4f}")
    print(f"  ratio student / teacher    {w2_student / w2_teacher:.3f}")


if __name__ == "__main__":
    main()
