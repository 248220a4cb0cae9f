"""Models: EARL-weighted heads and the conversion that makes a head EARL-weighted.

* ``dense_heads/earl_anchor_heads.py`` - RetinaNet / RPN (``EARLRetinaHead``, ``EARLRPNHead``);
* ``dense_heads/earl_yolox_head.py`` - YOLOX (``EARLYOLOXHead``);
* ``roi_heads/`` - the second stage of two-stage detectors (``EARLStandardRoIHead`` ...);
* ``earl_convert.py`` - one EARL class per head class, used by the config types and by
  ``EARLLossHook`` alike (:func:`earl_head_class`, :func:`make_earl_detector`).
"""

from . import dense_heads, roi_heads  # noqa: F401  (registration)
from .earl_convert import EARL_HEAD_ATTRS, make_earl_detector

__all__ = ['EARL_HEAD_ATTRS', 'make_earl_detector']
