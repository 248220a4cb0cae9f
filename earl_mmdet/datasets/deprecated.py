"""Registered names renamed in 0.2 that keep working until 0.3 (``docs/migration.md``)."""

from __future__ import annotations

from typing import Any

from mmdet.registry import DATASETS

from earl_core.deprecation import warn_renamed

from .multi_rater_coco import MultiRaterCocoDataset

__all__ = ['MultiAnnotatorCocoDataset']


@DATASETS.register_module()
class MultiAnnotatorCocoDataset(MultiRaterCocoDataset):
    """Deprecated name of :class:`MultiRaterCocoDataset` (until 0.3); warns when built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warn_renamed("dataset type 'MultiAnnotatorCocoDataset'", "'MultiRaterCocoDataset'")
        super().__init__(*args, **kwargs)
