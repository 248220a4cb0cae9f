"""Fusion: the raters' boxes of an image into fused boxes with agreement T and confidence c.

Importing the package registers the built-in aggregators in
:data:`~earl_core.fusion.base.AGGREGATORS`, where
:func:`~earl_core.fusion.base.build_aggregator` finds them, and does nothing else.
"""

from earl_core.fusion import aggregators, bayes, em_aggregators, wbf  # noqa: F401  (registration)
