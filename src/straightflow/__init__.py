"""straightflow: ODE generative models with straight trajectories.

Conventions (METHODS.md): t = 0 is data, t = 1 is noise, x_t = (1 - t) x + t z,
velocity target z - x, generation integrates from t = 1 down to 0.

Quick start::

    import straightflow as sf
    run_dir = sf.train(data="moons", steps=3000, out="runs/moons")
    run = sf.Run.load(run_dir)
    out = run.sample(1000, nfe=4, solver="euler")      # out.samples, out.nfe
    report = sf.evaluate(run, nfes=[1, 2, 4, 8])        # W2, energy, curvature
"""

from . import extensions  # noqa: F401  (registers optional pieces)
from .config import TrainConfig
from .errors import StraightflowError
from .evaluate import evaluate, format_table
from .run import Run
from .solvers import SolveResult, solve
from .training import train

__version__ = "0.1.0"

__all__ = ["train", "Run", "evaluate", "format_table", "solve", "SolveResult", "TrainConfig", "StraightflowError", "__version__"]
