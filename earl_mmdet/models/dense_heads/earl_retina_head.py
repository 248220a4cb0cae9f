"""``EARLRetinaHead``: RetinaNet's head with EARL (agreement-weighted) losses."""

from __future__ import annotations

from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS

from .earl_mixin import EARLAnchorHeadMixin, register_earl_variant

__all__ = ['EARLRetinaHead']


@MODELS.register_module()
@register_earl_variant(RetinaHead)
class EARLRetinaHead(EARLAnchorHeadMixin, RetinaHead):
    """RetinaHead whose positive anchors' losses are weighted by their gt box's confidence.

    Implements eq. (2) of Pham et al., ``L = c * Lcls + c * beta * I(t) * Lloc``, on
    RetinaNet:

    * ``I(t)`` is the assigner's positive set: ``train_cfg.assigner`` (mmdet's
      ``MaxIoUAssigner``, ``pos_iou_thr=0.5`` = the paper's eta) marks an anchor positive
      for the gt it overlaps most; only those anchors have a box loss.
    * ``beta`` is ``loss_bbox.loss_weight`` (1.0 in mmdet's RetinaNet configs).
    * ``c`` is ``gt_instances.confidences`` (float (N,), packed by ``PackMultiRaterInputs``);
      without it every box weighs 1 and the head equals ``RetinaHead`` exactly. The
      weight is ``w = max(floor, (c / scale) ** gamma)``.

    Each positive anchor's focal-loss weight (term ``cls``) and smooth-L1/L1 weight (term
    ``bbox``) is multiplied by w of its assigned gt; background anchors keep weight 1, so
    the focal loss's negatives are untouched. Losses are divided by the number of positives
    (``normalize='num_pos'``, as mmdet and the authors' code) or by the sum of the
    positives' weights (``'weight_sum'``).

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.core.earl_weights.EARLConfig`: ``terms`` (subset of
            ``('cls', 'bbox')``, default both), ``scale`` (1.0; R for c = T/R), ``gamma``
            (1.0), ``floor`` (0.0), ``normalize`` (``'num_pos'``). Defaults to None (the
            paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.RetinaHead`.

    Example:
        >>> # in a config based on mmdet::retinanet/retinanet_r50_fpn_1x_coco.py
        >>> model = dict(bbox_head=dict(type='EARLRetinaHead', earl_cfg=dict(scale=3.0)))
    """
