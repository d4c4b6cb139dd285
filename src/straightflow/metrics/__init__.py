"""Metrics: W2 and energy distance (vectors); FD, KID, precision/recall (images, :mod:`.images`); curvature, prediction
drift."""

from .distances import energy_distance, nearest_neighbour_accuracy, wasserstein2
from .kernel import kernel_distance, mmd2_unbiased
from .manifold import precision_recall
from .trajectory import curvature, prediction_drift

__all__ = ["wasserstein2", "energy_distance", "nearest_neighbour_accuracy", "kernel_distance", "mmd2_unbiased",
           "precision_recall", "curvature", "prediction_drift"]
