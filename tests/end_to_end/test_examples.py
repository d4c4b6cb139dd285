"""examples/own_loop.py: a user's own loop on a user's point cloud, run as a script."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from straightflow.data import PointCloud
from straightflow.metrics import wasserstein2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own_loop.py"
FORBIDDEN = ("straightflow.training", "straightflow.cli", "straightflow.run", "straightflow.experiments",
             "straightflow.models")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from straightflow import training
    return names


def test_example_uses_only_the_library_parts():
    names = imported_modules(EXAMPLE)
    assert "straightflow.objectives" in names and "straightflow.teachers" in names
    bad = sorted(n for n in names if n.startswith(".") or any(n == f or n.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"examples/own_loop.py imports {bad}"
    assert "class VelocityNet(nn.Module)" in EXAMPLE.read_text()  # its own network


def helix(n: int, seed: int) -> np.ndarray:
    """A noisy 3-D helix far from the origin, in units that are not standardised."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([2 * np.cos(theta), 2 * np.sin(theta), theta / np.pi], axis=1) + [10.0, -5.0, 3.0]
    return points + 0.05 * rng.standard_normal((n, 3))


def test_own_loop_on_a_3d_point_cloud(tmp_path):
    data_file, out = tmp_path / "helix.npy", tmp_path / "samples.npy"
    np.save(data_file, helix(2500, seed=7))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # small MLPs: threads only contend on a shared CPU
    cmd = [sys.executable, str(EXAMPLE), "--data", str(data_file), "--out", str(out),
           "--steps", "800", "--student-steps", "500", "--pairs", "5000", "--width", "128", "--seed", "3"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    samples = np.load(out)
    assert samples.shape == (2000, 3) and np.isfinite(samples).all()
    data = PointCloud(data_file, heldout_fraction=0.2, split_seed=0)
    mean, std = data.heldout.mean(0).numpy(), data.heldout.std(0).numpy()
    # the file's units, not standardised ones
    assert np.all(np.abs(samples.mean(0) - mean) < 0.2 * std), (samples.mean(0), mean)

    w2 = dict(re.findall(r"^\s+(?:two-sample )?(floor|teacher|student)\b.*\s([\d.]+)$", proc.stdout, re.M))
    assert set(w2) == {"floor", "teacher", "student"}, proc.stdout
    n = data.heldout.shape[0]
    reference, _ = data.reference(n, 3)
    student = wasserstein2(reference, torch.from_numpy(samples[:n]))
    assert abs(student - float(w2["student"])) < 1e-3  # the printed number is the student's W2 on the written samples
    noise = wasserstein2(reference, data.denormalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(0))))
    # noise: W2 ~1.2, teacher ~0.41, student ~0.56
    assert student < 2 * float(w2["teacher"]) and student < 0.6 * noise, (proc.stdout, noise)
