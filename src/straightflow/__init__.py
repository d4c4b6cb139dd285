"""straightflow: ODE generative models with straight trajectories.

Conventions (``docs/api.md``): t = 0 is data, t = 1 is noise, x_t = (1 - t) x + t z,
velocity target z - x, generation integrates from t = 1 down to 0.

Quick start::

    import straightflow as sf
    run_dir = sf.train(data="moons", steps=3000, out="runs/moons")
    run = sf.load(run_dir)                              # a run directory or an exported model folder
    out = run.sample(1000, nfe=4)                       # out.samples, out.nfe
    report = sf.evaluate(run, nfes=[1, 2, 4, 8])        # W2, energy, curvature
    report = sf.score("samples.npy", "moons")           # any samples, scored as evaluate scores
    sf.export(run_dir, "models/moons")                  # weights, config.json, model card (docs/portable.md)

The components (couplings, objectives, solvers, teachers, metrics) work on their
own in any training loop; see ``docs/api.md``.

The names below are imported on first use (``sf.train``, ``from straightflow import load``):
``import straightflow`` alone loads no torch, so the command line (``straightflow.cli``, inside
this package) builds its parser and answers ``--help`` without it. Loading the whole API imports
torch but neither matplotlib, POT, scikit-learn, scipy.stats, huggingface_hub nor the command
line: they load where first used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and editors
    from . import hub
    from .config import TrainConfig
    from .couplings import IndependentCoupling, LearnedGaussianCoupling, MinibatchOTCoupling, TeacherPairCoupling
    from .errors import StraightflowError, TrainingInterrupted
    from .evaluate import evaluate, format_table, score
    from .export import export
    from .objectives import AdversarialTerm, DistillObjective, LinesObjective, VelocityObjective
    from .run import Run, load
    from .solvers import SolveResult, solve
    from .teacher_adapters import DiffusersSamplerTeacher, DiffusersVelocity, EDMSamplerTeacher, EDMVelocity
    from .teachers import SamplerTeacher, VelocityTeacher, from_peer_velocity, generate_pairs
    from .training import train

#: public name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {
    "TrainConfig": "config",
    "IndependentCoupling": "couplings", "LearnedGaussianCoupling": "couplings", "MinibatchOTCoupling": "couplings",
    "TeacherPairCoupling": "couplings", "StraightflowError": "errors", "TrainingInterrupted": "errors",
    "evaluate": "evaluate", "format_table": "evaluate", "score": "evaluate",
    "export": "export",
    "AdversarialTerm": "objectives", "DistillObjective": "objectives", "LinesObjective": "objectives",
    "VelocityObjective": "objectives", "Run": "run", "load": "run",
    "SolveResult": "solvers", "solve": "solvers",
    "SamplerTeacher": "teachers", "VelocityTeacher": "teachers", "from_peer_velocity": "teachers",
    "generate_pairs": "teachers", "DiffusersSamplerTeacher": "teacher_adapters",
    "DiffusersVelocity": "teacher_adapters", "EDMSamplerTeacher": "teacher_adapters", "EDMVelocity": "teacher_adapters",
    "train": "training",
}

__all__ = [
    "train", "Run", "load", "export", "hub", "evaluate", "score", "format_table", "solve", "SolveResult", "TrainConfig",
    "StraightflowError", "TrainingInterrupted", "IndependentCoupling", "MinibatchOTCoupling", "LearnedGaussianCoupling",
    "TeacherPairCoupling", "VelocityObjective", "LinesObjective", "DistillObjective", "AdversarialTerm",
    "VelocityTeacher", "SamplerTeacher", "from_peer_velocity", "generate_pairs", "__version__",
    "DiffusersSamplerTeacher", "DiffusersVelocity", "EDMSamplerTeacher", "EDMVelocity",
]


def __getattr__(name: str):
    """A public name (imported from its module, then kept here) or a submodule (``sf.hub``, ``sf.training``)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``sf.evaluate`` and ``sf.export`` stay the functions once their modules (of the same names) load:
    the import system binds a loaded submodule on its package, which would hide the function."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
