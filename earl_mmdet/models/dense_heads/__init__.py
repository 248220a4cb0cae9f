"""EARL-weighted dense heads and the mechanism that makes a head EARL-weighted."""

from .earl_mixin import (
    EARLAnchorHeadMixin,
    EARLYOLOXHeadMixin,
    check_earl_head,
    check_earl_support,
    earl_head_class,
    is_earl_head,
    make_earl_head,
    register_earl_mixin,
    register_earl_variant,
)
from .earl_retina_head import EARLRetinaHead
from .earl_rpn_head import EARLRPNHead
from .earl_yolox_head import EARLYOLOXHead

__all__ = [
    'EARLAnchorHeadMixin',
    'EARLRPNHead',
    'EARLRetinaHead',
    'EARLYOLOXHead',
    'EARLYOLOXHeadMixin',
    'check_earl_head',
    'check_earl_support',
    'earl_head_class',
    'is_earl_head',
    'make_earl_head',
    'register_earl_mixin',
    'register_earl_variant',
]
