"""The removed ``FuseAnnotations`` pipeline step, kept as a name that points to its successor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from earl_core.deprecation import MIGRATION, fusion_method
from earl_core.fusion.base import LEGACY_CONFIDENCE_MODES, Aggregator

__all__ = ['FuseAnnotations', 'fusion_from_fuse_step']

#: Keys of the removed ``FuseAnnotations`` transform that the dataset no longer needs: an
#: aggregator that learns from the data is fitted on the dataset's own images.
_OBSOLETE_FUSE_KEYS = ('fit_ann_file', 'fit_classes', 'fit_normalize_rater_ids', 'cache')


def fusion_from_fuse_step(step: Mapping) -> dict:
    """The dataset ``fusion`` equivalent to a removed ``FuseAnnotations`` pipeline step.

    The old transform's default confidence was ``score_mode='count'`` (c = T), kept here;
    ``fit_ann_file`` and the other fitting/caching keys are dropped (the dataset fits on
    its own images, once). Used by the dataset's conversion of an old pipeline
    (:func:`earl_mmdet.datasets.multi_rater_coco.lift_fuse_step`).

    Args:
        step (Mapping): the ``dict(type='FuseAnnotations', ...)`` config.

    Returns:
        dict: ``fusion=`` for :class:`~earl_mmdet.datasets.MultiRaterCocoDataset`.
    """
    fusion = {k: v for k, v in step.items() if k != 'type' and k not in _OBSOLETE_FUSE_KEYS}
    fusion.setdefault('method', 'wbf')
    score_mode = fusion.pop('score_mode', 'count')
    method = fusion_method(fusion['method'])
    if method != 'prefused' and not isinstance(method, Aggregator) and score_mode is not None:
        fusion['confidence'] = LEGACY_CONFIDENCE_MODES.get(score_mode, score_mode)
    return fusion


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
