"""Imports the modules that register optional methods, datasets, models,
plots and commands into the core registries. Import this module (the CLI and
the package root do) to get everything."""

from . import curvature  # noqa: E402,F401  (method "curvature", plots trajectories/znorm, command sweep)
from . import images  # noqa: E402,F401  (datasets digits/mnist/cifar10/folders, model unet, metric fd, plots grid/xhat)
from . import methods_pairs, pairs  # noqa: E402,F401  (methods reflow/distill/lines, solver "lines", command pairs)
