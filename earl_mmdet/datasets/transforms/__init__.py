"""Transforms for multi-rater boxes: fusion, confidence alignment, packing."""

from .confidence_from_labels import ConfidenceFromLabels
from .confidence_to_labels import ConfidenceToLabels
from .formatting import PackMultiRaterInputs
from .fuse_annotations import FuseAnnotations
from .keep_confidence import KeepConfidence

__all__ = [
    'ConfidenceFromLabels',
    'ConfidenceToLabels',
    'FuseAnnotations',
    'KeepConfidence',
    'PackMultiRaterInputs',
]
