"""``EARLStandardRoIHead``: Faster R-CNN's RoI head with EARL (confidence-weighted) losses."""

from __future__ import annotations

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS

from ..earl_convert import register_earl_variant
from .earl_roi_mixin import EARLRoIHeadMixin

__all__ = ['EARLStandardRoIHead']


@MODELS.register_module()
@register_earl_variant(StandardRoIHead)
class EARLStandardRoIHead(EARLRoIHeadMixin, StandardRoIHead):
    """StandardRoIHead whose positive RoIs' losses are weighted by their gt box's confidence.

    Eq. (2) of Pham et al. on the second stage: ``I(t)`` is the RoI assigner's positives
    among the sampled RoIs (``train_cfg.rcnn``: ``MaxIoUAssigner`` with ``pos_iou_thr=0.5``,
    ``RandomSampler`` of 512 RoIs, the gt boxes added as proposals), ``beta`` is the bbox
    head's ``loss_bbox.loss_weight`` and ``c`` is ``gt_instances.confidence``. The bbox
    head (e.g. ``Shared2FCBBoxHead``) becomes its EARL form with the same ``earl_cfg``;
    mask heads are not weighted. Without confidence it equals ``StandardRoIHead``.

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.models.earl_weights.EARLConfig` (terms ``cls``/``bbox``;
            policies ``'earl'``, ``'ignore'``). Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.roi_heads.StandardRoIHead`.

    Example:
        >>> model = dict(
        ...     rpn_head=dict(type='EARLRPNHead', earl_cfg=dict()),
        ...     roi_head=dict(type='EARLStandardRoIHead', earl_cfg=dict()))
    """
