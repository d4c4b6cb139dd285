"""A trained run, loaded for sampling and evaluation.

``Run.load(RUNDIR)`` rebuilds the data source and the networks from the run's
saved config, loads the EMA weights of the latest (or a chosen) checkpoint
and puts them in eval mode. Samples are returned in the data's own units;
the noise of sample ``i`` is row ``i`` of the ``"sample"`` stream of the seed
(:mod:`straightflow.noise`), whatever the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import latest_checkpoint, load_into, load_weights, read_meta
from .config import TrainConfig, load_run_config
from .data import DataSource, load_data
from .device import resolve_device
from .errors import StraightflowError
from .methods import FlowTrainingModule, Method, build_module
from .noise import seeded_noise
from .solvers import SolveResult, solve


@dataclass
class SampleOutput:
    samples: torch.Tensor  #: (n, ...) in data units, CPU
    nfe: int  #: network evaluations per sample path (max over sampling batches for RK45)
    solver: str  #: the solver that made them
    trajectory: torch.Tensor | None = None  #: (S + 1, n, ...) in data units, t = 1 first
    times: torch.Tensor | None = None
    noise: torch.Tensor | None = None


class Run:
    def __init__(self, run_dir: Path, cfg: TrainConfig, module: FlowTrainingModule, method: Method, data: DataSource, prior, device, checkpoint: Path):
        self.dir, self.cfg, self.module, self.method, self.data, self.prior, self.device = run_dir, cfg, module, method, data, prior, device
        self.checkpoint = checkpoint
        self.meta = read_meta(checkpoint)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", checkpoint: str | Path | None = None,
             velocity_net: nn.Module | None = None, encoder_net: nn.Module | None = None) -> "Run":
        """Load a run; ``velocity_net`` / ``encoder_net``: the user's own modules a run was trained with."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").exists():
            raise StraightflowError(f"{run_dir} is not a run directory (no config.yaml)")
        cfg = load_run_config(run_dir / "config.yaml")
        ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
        if ckpt is None:
            raise StraightflowError(f"{run_dir} has no checkpoint yet")
        dev = resolve_device(device)
        data = load_data(cfg.data, cfg)
        module, method, prior = build_module(cfg, data, velocity_net, encoder_net)
        weights = ckpt / "ema.safetensors"
        state = load_weights(weights)
        broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if broken is not None:
            raise StraightflowError(f"checkpoint {weights} holds non-finite weights ({broken}): the run diverged; nothing to sample from it")
        load_into(module, state, weights)
        module.to(dev).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return cls(run_dir, cfg, module, method, data, prior, dev, ckpt)

    @property
    def velocity(self) -> torch.nn.Module:
        return self.module.velocity

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def noise(self, n: int, seed: int = 0) -> torch.Tensor:
        """The sampling noise of samples 0..n-1 of ``seed`` (model units, CPU)."""
        return seeded_noise(n, tuple(self.data.shape), seed, "sample", self.prior)

    @torch.inference_mode()
    def solve_from(self, z: torch.Tensor, nfe: int, solver: str | None = None, batch_size: int = 4096,
                   return_trajectory: bool = False, progress: bool = False) -> SampleOutput:
        """Integrate the generative ODE from given noise ``z`` (model units, t = 1); ``solver``
        defaults to the method's own (e.g. the line sampler for ``lines`` runs)."""
        solver = solver or self.method.default_solver
        outs, trajs, nfe_used, times = [], [], 0, None
        starts = range(0, z.shape[0], batch_size)
        for s in tqdm(starts, disable=not progress, desc=f"sample {solver}@{nfe}", leave=False):
            res: SolveResult = solve(self.velocity, z[s : s + batch_size].to(self.device), solver, nfe, return_trajectory)
            nfe_used = max(nfe_used, res.nfe)
            outs.append(self.data.denormalize(res.samples).cpu())
            if return_trajectory:
                trajs.append(self.data.denormalize(res.trajectory).cpu())
                times = res.times
        traj = torch.cat(trajs, dim=1) if return_trajectory and solver != "rk45" else (trajs[0] if trajs else None)
        return SampleOutput(torch.cat(outs), nfe_used, solver, traj, times, z)

    def sample(self, n: int, nfe: int = 1, solver: str | None = None, seed: int = 0, batch_size: int = 4096,
               return_trajectory: bool = False, progress: bool = False) -> SampleOutput:
        """Draw ``n`` samples with seeded noise (independent of ``batch_size``); ``solver`` defaults to the method's."""
        if n < 1:
            raise StraightflowError(f"-n must be >= 1, got {n}")
        return self.solve_from(self.noise(n, seed), nfe, solver, batch_size, return_trajectory, progress)
