"""straightflow: ODE generative models with straight trajectories.

Conventions (``docs/api.md``): t = 0 is data, t = 1 is noise, x_t = (1 - t) x + t z,
velocity target z - x, generation integrates from t = 1 down to 0.

Quick start::

    import straightflow as sf
    run_dir = sf.train(data="moons", steps=3000, out="runs/moons")
    run = sf.load(run_dir)                              # a run directory or an exported model folder
    out = run.sample(1000, nfe=4)                       # out.samples, out.nfe
    report = sf.evaluate(run, nfes=[1, 2, 4, 8])        # W2, energy, curvature
    sf.export(run_dir, "models/moons")                  # weights, config.json, model card (docs/portable.md)

The components (couplings, objectives, solvers, teachers, metrics) work on their
own in any training loop; see ``docs/api.md``. Importing straightflow imports
neither matplotlib nor the command line.
"""

from . import hub
from .config import TrainConfig
from .couplings import IndependentCoupling, LearnedGaussianCoupling, MinibatchOTCoupling, TeacherPairCoupling
from .errors import StraightflowError, TrainingInterrupted
from .evaluate import evaluate, format_table
from .export import export
from .objectives import AdversarialTerm, DistillObjective, LinesObjective, VelocityObjective
from .run import Run, load
from .solvers import SolveResult, solve
from .teacher_adapters import DiffusersSamplerTeacher, DiffusersVelocity, EDMSamplerTeacher, EDMVelocity
from .teachers import SamplerTeacher, VelocityTeacher, from_peer_velocity, generate_pairs
from .training import train
from .version import __version__

__all__ = [
    "train", "Run", "load", "export", "hub", "evaluate", "format_table", "solve", "SolveResult", "TrainConfig", "StraightflowError", "TrainingInterrupted",
    "IndependentCoupling", "MinibatchOTCoupling", "LearnedGaussianCoupling", "TeacherPairCoupling",
    "VelocityObjective", "LinesObjective", "DistillObjective", "AdversarialTerm",
    "VelocityTeacher", "SamplerTeacher", "from_peer_velocity", "generate_pairs", "__version__",
    "DiffusersSamplerTeacher", "DiffusersVelocity", "EDMSamplerTeacher", "EDMVelocity",
]
