"""Registered evaluation metrics."""

from .detection_map import DetectionMAPMetric

__all__ = ['DetectionMAPMetric']
