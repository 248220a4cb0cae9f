"""Datasets and transforms for multi-rater box annotations."""

from . import transforms  # noqa: F401  (registration)
from .multi_annotator_coco import MultiAnnotatorCocoDataset
from .transforms import (
    ConfidenceFromLabels,
    ConfidenceToLabels,
    FuseAnnotations,
    KeepConfidence,
    PackMultiRaterInputs,
)

__all__ = [
    'ConfidenceFromLabels',
    'ConfidenceToLabels',
    'FuseAnnotations',
    'KeepConfidence',
    'MultiAnnotatorCocoDataset',
    'PackMultiRaterInputs',
]
