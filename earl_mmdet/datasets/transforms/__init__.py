"""Transforms for multi-rater boxes: confidence alignment and packing."""

from ..multi_rater_coco import PackMultiRaterInputs
from .fuse_annotations import FuseAnnotations
from .keep_confidence import ConfidenceFromLabels, ConfidenceToLabels, KeepConfidence

__all__ = [
    'ConfidenceFromLabels',
    'ConfidenceToLabels',
    'FuseAnnotations',
    'KeepConfidence',
    'PackMultiRaterInputs',
]
