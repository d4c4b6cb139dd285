"""Training methods = coupling + objective + initialisation (METHODS.md 3, table).

A method is registered once here; the trainer, CLI and evaluation only go
through :class:`Method`. Adding a method is one entry and one test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .couplings import Coupling, IndependentCoupling, MinibatchOTCoupling
from .errors import StraightflowError
from .objectives import velocity_loss


@dataclass(frozen=True)
class Method:
    name: str
    #: (cfg, data, prior) -> Coupling
    build_coupling: Callable[..., Coupling]
    #: (velocity_net, CoupledBatch, generator, cfg) -> (loss, stats)
    objective: Callable[..., tuple[torch.Tensor, dict]]
    #: whether the student starts from a teacher run's weights
    needs_teacher: bool = False
    #: default sampler for runs of this method
    default_solver: str = "euler"
    summary: str = ""
    #: optional (module, cfg, data) -> None run before training (e.g. load a teacher)
    prepare: Callable[..., None] | None = None
    #: optional (run, reference, n, seed) -> dict of extra evaluation keys
    evaluate_extra: Callable[..., dict] | None = None
    #: optional (module, cfg, data, device) -> object with ``step(batch, generator, module) -> stats``,
    #: ``state_dict()`` and ``load_state_dict()``, stepped by the trainer after every optimizer step
    #: and saved in the checkpoint's state.pt (e.g. the lines method's discriminator)
    make_aux_trainer: Callable[..., object] | None = None


def _velocity_objective(net, pair, generator, cfg):
    return velocity_loss(net, pair, generator, cfg.t_min)


METHODS: dict[str, Method] = {
    "rectified": Method(
        "rectified",
        lambda cfg, data, prior: IndependentCoupling(prior),
        _velocity_objective,
        summary="independent coupling (1-rectified flow), the baseline",
    ),
    "ot": Method(
        "ot",
        lambda cfg, data, prior: MinibatchOTCoupling(prior, cfg.ot_solver, cfg.sinkhorn_reg),
        _velocity_objective,
        summary="minibatch optimal-transport pairing (OT-CFM)",
    ),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise StraightflowError(f"unknown method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


class FlowTrainingModule(nn.Module):
    """Velocity net + coupling; ``forward`` returns the training loss.

    Wrapping both in one module lets DDP synchronise every trained parameter
    (the learned coupling's included) and lets one EMA average them all.
    """

    def __init__(self, velocity: nn.Module, coupling: Coupling, method: Method, cfg):
        super().__init__()
        self.velocity = velocity
        self.coupling = coupling
        self.method = method
        self.cfg = cfg

    def forward(self, batch, generator: torch.Generator):
        pair = self.coupling(batch, generator)
        loss, stats = self.method.objective(self.velocity, pair, generator, self.cfg)
        stats = dict(stats)
        stats.update(pair.stats)
        if pair.aux_loss is not None:
            loss = loss + pair.aux_loss
        stats["loss"] = loss.detach()
        return loss, stats
