"""``EARLRPNHead``: the RPN of two-stage detectors with EARL (agreement-weighted) losses."""

from __future__ import annotations

from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS

from .earl_mixin import EARLAnchorHeadMixin, register_earl_variant

__all__ = ['EARLRPNHead']


@MODELS.register_module()
@register_earl_variant(RPNHead)
class EARLRPNHead(EARLAnchorHeadMixin, RPNHead):
    """RPNHead whose positive anchors' losses are weighted by their gt box's confidence.

    The RPN's targets come from AnchorHead's path: ``train_cfg.rpn.assigner``
    (``MaxIoUAssigner``, ``pos_iou_thr=0.7`` in mmdet's Faster R-CNN) picks the positive
    anchors, ``RandomSampler`` samples 256 anchors per image, and each sampled positive's
    objectness (term ``cls``) and box-delta (term ``bbox``) weights are multiplied by the
    weight ``w = max(floor, (c / scale) ** gamma)`` of the gt box it is assigned to. The
    sampled negatives keep weight 1. The loss is divided by mmdet's normaliser, the count
    of sampled anchors (``normalize='num_pos'``), or by that count with each positive
    counting ``w`` (``'weight_sum'``). ``TwoStageDetector`` hands the RPN a deep copy of the
    data samples with class-agnostic labels; ``gt_instances.confidences`` comes along.

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.core.earl_weights.EARLConfig` (terms ``cls``/``bbox``).
            Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.RPNHead`.

    Example:
        >>> # in a config based on mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py
        >>> model = dict(rpn_head=dict(type='EARLRPNHead', earl_cfg=dict()))
    """
