"""Training methods, one file each; :data:`METHODS` is the static table of them.

``build_module(cfg, data)`` assembles a method's velocity net and coupling;
the trainer adds the objective (``Method.build_objective``). Adding a method
to the package is one file, one entry here and one test; a method of your own,
in your own module, is a :class:`Method` subclass passed as
``sf.train(method=MyMethod(), ...)``, recorded as ``method: custom`` and passed
again to resume, load or export the run (``docs/architecture.md``).
"""

from __future__ import annotations

from torch import nn

from ..errors import StraightflowError
from ..models import build_model
from ..priors import make_prior
from .base import FlowTrainingModule, Method
from .curvature import Curvature
from .distill import Distill
from .lines import Lines
from .ot import MinibatchOT
from .rectified import Rectified
from .reflow import Reflow

METHODS: dict[str, Method] = {m.name: m
                              for m in (Rectified(), MinibatchOT(), Curvature(), Reflow(), Distill(), Lines())}


#: ``method`` of a run trained with a user's own :class:`Method` (``sf.train(method=MyMethod())``)
CUSTOM_METHOD = "custom"


def get_method(name: str) -> Method:
    if name == CUSTOM_METHOD:
        raise StraightflowError("this run's method is a user's own (method: custom): pass it again, e.g. "
                                "sf.load(RUNDIR, method=MyMethod())")
    if name not in METHODS:
        raise StraightflowError(f"unknown method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def resolve_method(cfg, method: Method | None = None) -> Method:
    """The method of ``cfg``: a built-in one by name, or ``method`` (a user's own instance) for ``method: custom``."""
    if method is None:
        return get_method(cfg.method)
    if not isinstance(method, Method):
        raise StraightflowError("method= must be an instance of straightflow.methods.Method, got "
                                f"{type(method).__name__}")
    if cfg.method != CUSTOM_METHOD:
        raise StraightflowError(f"method= is a user's own method, but this run's method is {cfg.method!r}")
    return method


def build_module(cfg, data, velocity_net: nn.Module | None = None, encoder: nn.Module | None = None,
                 method: Method | None = None):
    """``(module, method, prior)`` for ``cfg``: the velocity net (``velocity_net`` or one built from
    the config) and the method's coupling (a method that takes one wraps ``encoder`` if given);
    ``method``: a user's own method instance for a run recorded as ``method: custom``."""
    method = resolve_method(cfg, method)
    method.validate(cfg)
    if cfg.conditional and data.num_classes < 2:
        why = "has no class labels" if not data.num_classes else "has a single class"
        raise StraightflowError(f"--conditional needs labelled data with at least 2 classes; {data.name} {why} (see "
                                "docs/conditional.md)")
    prior = make_prior(cfg.prior, data.shape)
    velocity = velocity_net if velocity_net is not None else build_model(cfg, data)
    coupling = method.build_coupling(cfg, data, prior, encoder)
    num_classes = data.num_classes if cfg.conditional else 0
    return FlowTrainingModule(velocity, coupling, num_classes=num_classes, cond_drop=cfg.cond_drop), method, prior


__all__ = ["METHODS", "CUSTOM_METHOD", "Method", "FlowTrainingModule", "get_method", "resolve_method", "build_module"]
