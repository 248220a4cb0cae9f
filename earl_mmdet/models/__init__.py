"""Models: EARL-weighted heads and the mechanism that makes a head EARL-weighted."""

from . import dense_heads, roi_heads  # noqa: F401  (registration)
from .earl_detector import EARL_HEAD_ATTRS, make_earl_detector

__all__ = ['EARL_HEAD_ATTRS', 'make_earl_detector']
