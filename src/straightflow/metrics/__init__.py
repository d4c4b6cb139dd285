"""Metrics: W2 and energy distance (vectors), curvature, prediction drift."""

from .distances import energy_distance, wasserstein2
from .trajectory import curvature, prediction_drift

__all__ = ["wasserstein2", "energy_distance", "curvature", "prediction_drift"]
