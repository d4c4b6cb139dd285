"""Image support (issue 3). Importing this module registers:

- datasets ``digits``, ``mnist``, ``cifar10`` and image folders / image ``.npy``
  arrays (:mod:`straightflow.data.images`);
- the ``unet`` model (:mod:`straightflow.models.unet`), picked by ``--model auto``
  for image data;
- the Fréchet distance as the image quality metric (:mod:`straightflow.metrics.frechet`);
- ``plot --kind grid | xhat`` and ``sample --out FILE.png`` grids (:mod:`straightflow.plots.images`).
"""

from __future__ import annotations

from . import evaluate, models, plots
from .data import images as data_images
from .metrics import frechet
from .models import unet
from .plots import images as plot_images

data_images.register()
models.MODELS["unet"] = unet.build_unet
evaluate.QUALITY_METRICS["image"] = frechet.frechet_metric
plots.PLOTS.update({"grid": plot_images.plot_grid, "xhat": plot_images.plot_xhat})
plots.SAMPLE_WRITERS["image"] = plot_images.write_sample_grid
