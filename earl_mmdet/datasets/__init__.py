"""Datasets and transforms for multi-rater box annotations."""

from .deprecated import MultiAnnotatorCocoDataset
from .multi_rater_coco import MultiRaterCocoDataset, PackMultiRaterInputs
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
    'MultiRaterCocoDataset',
    'PackMultiRaterInputs',
]
