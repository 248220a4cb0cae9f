"""EARL-weighted dense heads: the anchor family (RetinaNet, RPN), YOLOX, RTMDet / ATSS / GFL.

The conversion functions (``make_earl_head`` ...) live in
:mod:`earl_mmdet.models.earl_convert`; they are importable from here too.
"""

from ..earl_convert import (
    check_earl_head,
    check_earl_support,
    earl_head_class,
    is_earl_head,
    make_earl_head,
    register_earl_mixin,
    register_earl_variant,
)
from .earl_anchor_heads import EARLAnchorHeadMixin, EARLRetinaHead, EARLRPNHead
from .earl_rtmdet_heads import (
    EARLATSSHead,
    EARLATSSHeadMixin,
    EARLGFLHead,
    EARLGFLHeadMixin,
    EARLRTMDetHead,
    EARLRTMDetHeadMixin,
    EARLRTMDetSepBNHead,
)
from .earl_yolox_head import EARLYOLOXHead, EARLYOLOXHeadMixin

__all__ = [
    'EARLATSSHead',
    'EARLATSSHeadMixin',
    'EARLAnchorHeadMixin',
    'EARLGFLHead',
    'EARLGFLHeadMixin',
    'EARLRTMDetHead',
    'EARLRTMDetHeadMixin',
    'EARLRTMDetSepBNHead',
    'EARLRPNHead',
    'EARLRetinaHead',
    'EARLYOLOXHead',
    'EARLYOLOXHeadMixin',
    # conversion, from earl_convert
    'check_earl_head',
    'check_earl_support',
    'earl_head_class',
    'is_earl_head',
    'make_earl_head',
    'register_earl_mixin',
    'register_earl_variant',
]
