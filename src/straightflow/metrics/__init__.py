"""Metrics: W2 and energy distance (vectors), curvature, prediction drift."""

from .distances import energy_distance, nearest_neighbour_accuracy, wasserstein2
from .trajectory import curvature, prediction_drift

__all__ = ["wasserstein2", "energy_distance", "nearest_neighbour_accuracy", "curvature", "prediction_drift"]
