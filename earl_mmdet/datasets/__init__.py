"""Datasets and transforms for multi-rater box annotations."""

from .multi_annotator_coco import MultiAnnotatorCocoDataset, PackMultiRaterInputs
from .transforms import (  # noqa: F401  (registration)
    ConfidenceFromLabels,
    ConfidenceToLabels,
    FuseAnnotations,
    KeepConfidence,
)

__all__ = [
    'ConfidenceFromLabels',
    'ConfidenceToLabels',
    'FuseAnnotations',
    'KeepConfidence',
    'MultiAnnotatorCocoDataset',
    'PackMultiRaterInputs',
]
