"""The removed ``FuseAnnotations`` pipeline step, kept as a name that points to its successor."""

from __future__ import annotations

from typing import Any

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ..multi_annotator_coco import MIGRATION

__all__ = ['FuseAnnotations']


@TRANSFORMS.register_module()
class FuseAnnotations(BaseTransform):
    """Deprecated: fusion is a dataset step, ``MultiRaterCocoDataset(fusion=...)``.

    A :class:`~earl_mmdet.datasets.MultiRaterCocoDataset` whose pipeline config still
    holds ``dict(type='FuseAnnotations', ...)`` takes the step out into its ``fusion``
    argument (with a DeprecationWarning) before it builds the pipeline, so this class is
    never built there. Built anywhere else, it raises: see ``docs/migration.md``.

    Raises:
        ValueError: always.
    """

    def __init__(self, **kwargs: Any) -> None:
        raise ValueError(
            f'FuseAnnotations({", ".join(f"{k}={v!r}" for k, v in kwargs.items())}) is no longer '
            'a pipeline step: fusion runs once in the dataset, '
            "MultiRaterCocoDataset(fusion=dict(method='wbf', iou_thr=0.4, "
            "confidence='agreement_ratio')); a MultiRaterCocoDataset converts this step "
            f'in its own pipeline config. For one image use earl_core.fusion. See {MIGRATION}.'
        )

    def transform(self, results: dict) -> dict:  # pragma: no cover - never built
        """Never runs (the constructor raises)."""
        raise NotImplementedError
