"""EARL for anchor heads: the mixin of the AnchorHead family, EARLRetinaHead, EARLRPNHead.

EARL (Pham et al., eq. (2)) is ``L = c * Lcls + c * beta * I(t) * Lloc``: every anchor that
the assigner makes a positive for a ground-truth box has its classification and
localisation losses multiplied by the weight of that box's confidence ``c``. On mmdet's
:class:`~mmdet.models.dense_heads.AnchorHead` path:

* ``I(t)`` - the assigner's positives (RetinaNet: ``MaxIoUAssigner`` with
  ``pos_iou_thr`` = eta; RPN: the sampled positives);
* ``beta`` - the ``loss_weight`` of the head's ``loss_bbox``;
* ``c`` - ``data_sample.gt_instances.confidence`` (float32 (N,)), turned into per-box
  weights by :func:`earl_mmdet.core.earl_weights.box_weights`; absent -> every box
  weighs 1 and the heads equal mmdet's exactly.

Negatives (background anchors) are assigned to no box, so they keep weight 1.
"""

from __future__ import annotations

from typing import Any

from mmdet.models.dense_heads import AnchorHead, RetinaHead, RPNHead, SSDHead
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.registry import MODELS
from torch import Tensor

from ...core.earl_weights import (
    box_weights,
    inside_to_full_index,
    scale_rows,
    weight_sum_normalizer,
)
from ..earl_convert import EARLHeadMixin, register_earl_mixin, register_earl_variant

__all__ = ['EARLAnchorHeadMixin', 'EARLRPNHead', 'EARLRetinaHead']


class EARLAnchorHeadMixin(EARLHeadMixin):
    """EARL for :class:`AnchorHead` subclasses on AnchorHead's standard targets path.

    Put it before the head class: ``class EARLSSDHead(EARLAnchorHeadMixin, SSDHead)``,
    then construct with the head's arguments plus ``earl_cfg=dict(...)``.

    :meth:`_get_targets_single` calls AnchorHead's and multiplies the
    ``label_weights`` (term ``cls``) and ``bbox_weights`` (term ``bbox``) of each positive
    anchor by the weight of the gt box it is assigned to. The sampling result's
    ``pos_inds`` index the anchors *inside* the image (``train_cfg.allowed_border``), so
    they are mapped through the inside flags onto the unmapped outputs. With
    ``normalize='weight_sum'``, :meth:`get_targets` replaces each positive's count of 1
    in ``avg_factor`` by its weight.
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_required = {
        '_get_targets_single': (AnchorHead._get_targets_single,),
        'get_targets': (AnchorHead.get_targets,),
        # loss_by_feat implementations known to feed label/bbox weights and avg_factor
        # from get_targets() unchanged into their losses
        'loss_by_feat': (AnchorHead.loss_by_feat, RPNHead.loss_by_feat, SSDHead.loss_by_feat),
        'loss_by_feat_single': (AnchorHead.loss_by_feat_single, SSDHead.loss_by_feat_single),
    }

    _earl_pos_stats: list[tuple[int, float]] | None = None

    def _get_targets_single(
        self,
        flat_anchors: Tensor,
        valid_flags: Tensor,
        gt_instances: Any,
        img_meta: dict,
        gt_instances_ignore: Any = None,
        unmap_outputs: bool = True,
    ) -> tuple:
        """AnchorHead's targets of one image, positives' weights scaled by their gt's weight.

        Args and returns as :meth:`AnchorHead._get_targets_single`.
        """
        results = super()._get_targets_single(
            flat_anchors, valid_flags, gt_instances, img_meta, gt_instances_ignore, unmap_outputs
        )
        labels, label_weights, bbox_targets, bbox_weights, pos_inds = results[:5]
        sampling_result = results[6]
        num_pos = int(pos_inds.numel())
        weights = box_weights(gt_instances, self.earl_cfg)
        if weights is None or num_pos == 0:
            self._earl_note_positives(num_pos, None)
            return results
        pos_weights = weights[sampling_result.pos_assigned_gt_inds]
        if unmap_outputs:
            # pos_inds index anchors[inside_flags]; the outputs were unmapped to all anchors
            inside_flags = anchor_inside_flags(
                flat_anchors,
                valid_flags,
                img_meta['img_shape'][:2],
                self.train_cfg['allowed_border'],
            )
            rows = inside_to_full_index(inside_flags, pos_inds)
        else:
            rows = pos_inds
        if 'cls' in self.earl_cfg.terms:
            label_weights = scale_rows(label_weights, rows, pos_weights)
        if 'bbox' in self.earl_cfg.terms:
            bbox_weights = scale_rows(bbox_weights, rows, pos_weights)
        self._earl_note_positives(num_pos, pos_weights)
        return (labels, label_weights, bbox_targets, bbox_weights) + tuple(results[4:])

    def _earl_note_positives(self, num_pos: int, pos_weights: Tensor | None) -> None:
        """Record one image's positives for ``weight_sum`` (None: each weighs 1)."""
        if self._earl_pos_stats is not None:  # only while get_targets() collects them
            weight_sum = float(num_pos) if pos_weights is None else float(pos_weights.sum())
            self._earl_pos_stats.append((num_pos, weight_sum))

    def get_targets(
        self,
        anchor_list: list,
        valid_flag_list: list,
        batch_gt_instances: list,
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list | None = None,
        unmap_outputs: bool = True,
        return_sampling_results: bool = False,
    ) -> tuple:
        """AnchorHead's targets; with ``weight_sum``, avg_factor counts positives by weight."""
        collect = self.earl_cfg.normalize == 'weight_sum'
        self._earl_pos_stats = [] if collect else None
        try:
            res = super().get_targets(
                anchor_list,
                valid_flag_list,
                batch_gt_instances,
                batch_img_metas,
                batch_gt_instances_ignore=batch_gt_instances_ignore,
                unmap_outputs=unmap_outputs,
                return_sampling_results=return_sampling_results,
            )
            stats = self._earl_pos_stats
        finally:
            self._earl_pos_stats = None
        if not collect:
            return res
        avg_factor = weight_sum_normalizer(
            res[4], sum(s[0] for s in stats), sum(s[1] for s in stats)
        )
        return res[:4] + (avg_factor,) + res[5:]


register_earl_mixin(AnchorHead, EARLAnchorHeadMixin)


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
    * ``c`` is ``gt_instances.confidence`` (float32 (N,), packed by
      ``PackMultiRaterInputs``); without it every box weighs 1 and the head equals
      ``RetinaHead`` exactly. The weight is ``w = max(floor, (c / scale) ** gamma)``.

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
    data samples with class-agnostic labels; ``gt_instances.confidence`` comes along.

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.core.earl_weights.EARLConfig` (terms ``cls``/``bbox``).
            Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.RPNHead`.

    Example:
        >>> # in a config based on mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py
        >>> model = dict(rpn_head=dict(type='EARLRPNHead', earl_cfg=dict()))
    """
