"""``EARLYOLOXHead``: YOLOX's head with EARL (agreement-weighted) losses."""

from __future__ import annotations

from mmdet.models.dense_heads import YOLOXHead
from mmdet.registry import MODELS

from .earl_mixin import EARLYOLOXHeadMixin, register_earl_variant

__all__ = ['EARLYOLOXHead']


@MODELS.register_module()
@register_earl_variant(YOLOXHead)
class EARLYOLOXHead(EARLYOLOXHeadMixin, YOLOXHead):
    """YOLOXHead whose positive priors' losses are weighted by their gt box's confidence.

    Implements eq. (2) of Pham et al., ``L = c * Lcls + c * beta * I(t) * Lloc``, on YOLOX:

    * ``I(t)`` is the assigner's positive set: SimOTA's dynamic-k matching (not a fixed
      IoU threshold eta) decides which priors regress which gt; only they have cls,
      box and L1 losses.
    * ``beta`` is ``loss_bbox.loss_weight`` (5.0 for the IoU loss in mmdet's YOLOX
      configs; ``loss_l1.loss_weight`` for the L1 term of the last epochs).
    * ``c`` is ``gt_instances.confidences`` (float (N,), packed by ``PackMultiRaterInputs``);
      without it every box weighs 1 and the head equals ``YOLOXHead`` exactly. The
      weight is ``w = max(floor, (c / scale) ** gamma)``.

    Term ``cls`` weights the positives' IoU-aware BCE, ``bbox`` their IoU and L1 losses,
    ``obj`` the objectness BCE of positives (negatives keep weight 1). The default
    ``('cls', 'bbox')`` follows the authors' YOLOv5 code, which leaves objectness
    unweighted. ``normalize='num_pos'`` keeps YOLOX's division by the number of
    positives; ``'weight_sum'`` divides every term by the sum of positive weights instead.

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.core.earl_weights.EARLConfig`: ``terms`` (subset of
            ``('cls', 'bbox', 'obj')``, default ``('cls', 'bbox')``), ``scale`` (1.0; R for
            c = T/R), ``gamma`` (1.0), ``floor`` (0.0), ``normalize`` (``'num_pos'``).
            Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.YOLOXHead`.

    Example:
        >>> # in a config based on mmdet::yolox/yolox_s_8xb8-300e_coco.py
        >>> model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(scale=3.0)))
    """
