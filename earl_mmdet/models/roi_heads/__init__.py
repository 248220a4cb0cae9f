"""EARL-weighted RoI heads (second stage of two-stage detectors)."""

from .earl_cascade_roi_head import EARLCascadeRoIHead
from .earl_roi_mixin import EARLBBoxHeadMixin, EARLRoIHeadMixin
from .earl_standard_roi_head import EARLStandardRoIHead

__all__ = [
    'EARLBBoxHeadMixin',
    'EARLCascadeRoIHead',
    'EARLRoIHeadMixin',
    'EARLStandardRoIHead',
]
