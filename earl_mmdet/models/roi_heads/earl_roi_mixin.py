"""EARL for the second stage of two-stage detectors: RoI heads and their bbox heads.

In a two-stage detector the positives of eq. (2) (``I(t)``) are the **sampled RoIs** that
the RoI head's assigner (``MaxIoUAssigner``, ``pos_iou_thr=0.5`` in mmdet's Faster R-CNN)
matches to a gt box; the gt boxes themselves are added as proposals
(``add_gt_as_proposals``). Each positive RoI's classification (term ``cls``) and box
(term ``bbox``) weight is multiplied by the weight of its gt box; sampled negatives keep 1.

mmdet splits the work: the RoI head assigns and samples (it has the gt instances), the
bbox head turns :class:`SamplingResult` s into targets (it does not). Two mixins:

* :class:`EARLRoIHeadMixin` (StandardRoIHead, CascadeRoIHead) changes no computation
  under ``'earl'``: on set-up it wraps each stage's sampler so that every sampling
  result carries its image's gt instances (``earl_gt_instances``), and makes every bbox
  head EARL with the same options via :func:`make_earl_head`.
* :class:`EARLBBoxHeadMixin` (BBoxHead and subclasses keeping its loss code, e.g.
  Shared2FCBBoxHead) scales the positives' rows of ``label_weights`` / ``bbox_weights``
  in :meth:`get_targets` (``pos_assigned_gt_inds`` index the image's gts, also for the gt
  proposals) and keeps the loss normalisers consistent in :meth:`loss_and_target`.

Normalisation: ``BBoxHead.loss`` divides the classification loss by the number of RoIs
with ``label_weight > 0``, so a c = 0 positive would shrink it and rescale every
negative's loss; EARL passes mmdet's count of the unweighted targets instead
(``normalize='num_pos'``: c scales positive terms only), or that count with each positive
counting its weight (``'weight_sum'``; the box loss's normaliser, mmdet's number of
sampled RoIs, likewise).

Policies: ``'earl'`` and ``'ignore'``. Under ``'ignore'`` :meth:`EARLRoIHeadMixin.loss`
hands mmdet's ``loss`` data samples whose gt instances are the kept boxes (the ignored
ones, ``c / scale < ignore_below``, are neither assigned nor added as proposals), with the
ignore regions in their metainfo (``earl_ignore_regions``); the bbox head gives the
sampled negative RoIs that lie in a region (``ignore_iof``) label weight 0, and BBoxHead's
classification normaliser (RoIs with a label weight > 0) no longer counts them.
``'soft'`` is not implemented (softmax classification).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from torch import Tensor, nn

from earl_mmdet.models.earl_weights import (
    EARLConfig,
    box_weights,
    boxes_in_regions,
    scale_rows,
    split_ignored,
    weight_sum_normalizer,
)

from ..earl_convert import (
    EARLHeadMixin,
    RecordingSampler,
    check_earl_head,
    make_earl_head,
    register_earl_mixin,
)

__all__ = ['EARLBBoxHeadMixin', 'EARLRoIHeadMixin']


class EARLBBoxHeadMixin(EARLHeadMixin):
    """EARL for :class:`BBoxHead` subclasses that keep BBoxHead's targets and loss.

    Needs sampling results from an EARL RoI head (:class:`EARLRoIHeadMixin`), which carry
    the gt instances; it raises otherwise rather than weigh every box 1 silently.
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_policies = ('earl', 'ignore')
    _earl_required = {
        'get_targets': (BBoxHead.get_targets,),
        'loss_and_target': (BBoxHead.loss_and_target,),
        'loss': (BBoxHead.loss,),
    }

    #: avg_factor per loss module attribute, set by get_targets inside loss_and_target
    _earl_avg_factors: dict[str, float] | None = None

    def get_targets(
        self, sampling_results: list, rcnn_train_cfg: Any, concat: bool = True
    ) -> tuple:
        """BBoxHead's targets, the positive rows' weights scaled by their gt's weight.

        Args and returns as :meth:`BBoxHead.get_targets`; rows of each image are its
        ``num_pos`` positives followed by its negatives.
        """
        labels, label_weights, bbox_targets, bbox_weights = super().get_targets(
            sampling_results, rcnn_train_cfg, concat=False
        )
        if self.earl_cfg.policy == 'ignore':
            label_weights = [
                self._earl_mask_ignored(lw, res) for lw, res in zip(label_weights, sampling_results)
            ]
        # BBoxHead.loss's classification normaliser, on the unweighted targets
        count = max(float(sum(int((lw > 0).sum()) for lw in label_weights)), 1.0)
        num_rows = float(sum(lw.numel() for lw in label_weights))
        num_pos, weight_sum, weighted = 0, 0.0, False
        for i, res in enumerate(sampling_results):
            n = int(res.pos_inds.numel())
            num_pos += n
            pos_weights = self._earl_pos_weights(res)
            if pos_weights is None or n == 0:
                weight_sum += n
                continue
            weighted = True
            weight_sum += float(pos_weights.sum())
            if 'cls' in self.earl_cfg.terms:
                label_weights[i] = scale_rows(label_weights[i], slice(0, n), pos_weights)
            if 'bbox' in self.earl_cfg.terms:
                bbox_weights[i] = scale_rows(bbox_weights[i], slice(0, n), pos_weights)
        if self._earl_avg_factors is not None and weighted:
            if self.earl_cfg.normalize == 'weight_sum':
                self._earl_avg_factors.update(
                    loss_cls=weight_sum_normalizer(count, num_pos, weight_sum),
                    loss_bbox=weight_sum_normalizer(num_rows, num_pos, weight_sum),
                )
            else:
                self._earl_avg_factors.update(loss_cls=count)
        if concat:
            return tuple(
                torch.cat(t, 0) for t in (labels, label_weights, bbox_targets, bbox_weights)
            )
        return labels, label_weights, bbox_targets, bbox_weights

    def _earl_mask_ignored(self, label_weights: Tensor, sampling_result: Any) -> Tensor:
        """One image's label weights with 0 on the sampled negatives in an ignore region
        (rows: ``num_pos`` positives, then the negatives)."""
        regions = self._earl_gt_instances(sampling_result).metainfo.get('earl_ignore_regions')
        if regions is None:
            return label_weights
        num_pos = int(sampling_result.pos_inds.numel())
        neg_priors = sampling_result.neg_priors
        if num_pos + neg_priors.shape[0] != label_weights.shape[0]:
            raise RuntimeError(
                f'{type(self).__name__}: {label_weights.shape[0]} label weights for '
                f'{num_pos} positive and {neg_priors.shape[0]} negative RoIs'
            )
        ignored = boxes_in_regions(neg_priors, regions, self.earl_cfg.ignore_iof)
        out = label_weights.clone()
        out[num_pos:] = out[num_pos:].masked_fill(ignored, 0.0)
        return out

    def _earl_gt_instances(self, sampling_result: Any) -> Any:
        """The gt instances an EARL RoI head's sampler recorded on the sampling result."""
        gt_instances = getattr(sampling_result, 'earl_gt_instances', None)
        if gt_instances is None:
            raise RuntimeError(
                f'{type(self).__name__} got sampling results without gt instances: its RoI '
                'head is not EARL. Use EARLStandardRoIHead / EARLCascadeRoIHead or '
                'make_earl_head(model.roi_head) (docs/earl_heads.md)'
            )
        return gt_instances

    def _earl_pos_weights(self, sampling_result: Any) -> Tensor | None:
        """(num_pos,) weights of one image's positive RoIs, or None (c absent)."""
        gt_instances = self._earl_gt_instances(sampling_result)
        weights = box_weights(gt_instances, self.earl_cfg)
        if weights is None:
            return None
        return weights[sampling_result.pos_assigned_gt_inds]

    def loss_and_target(
        self,
        cls_score: Tensor,
        bbox_pred: Tensor,
        rois: Tensor,
        sampling_results: list,
        rcnn_train_cfg: Any,
        concat: bool = True,
        reduction_override: str | None = None,
    ) -> dict:
        """BBoxHead's losses and targets, the losses divided by EARL's normalisers."""
        self._earl_avg_factors = {}
        handles = [
            getattr(self, attr).register_forward_pre_hook(
                functools.partial(self._earl_avg_factor_hook, attr), with_kwargs=True
            )
            for attr in ('loss_cls', 'loss_bbox')
        ]
        try:
            return super().loss_and_target(
                cls_score,
                bbox_pred,
                rois,
                sampling_results,
                rcnn_train_cfg,
                concat=concat,
                reduction_override=reduction_override,
            )
        finally:
            for handle in handles:
                handle.remove()
            self._earl_avg_factors = None

    def _earl_avg_factor_hook(
        self, attr: str, module: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        """Forward pre-hook of a loss module: replace BBoxHead's ``avg_factor``."""
        factors = self._earl_avg_factors or {}
        if attr not in factors:
            return None
        if 'avg_factor' not in kwargs:
            raise RuntimeError(
                f'{type(self).__name__}.{attr} was called without avg_factor; '
                'EARLBBoxHeadMixin supports the BBoxHead.loss of mmdet 3.3'
            )
        return args, dict(kwargs, avg_factor=factors[attr])


class EARLRoIHeadMixin(EARLHeadMixin):
    """EARL for :class:`StandardRoIHead` and :class:`CascadeRoIHead` (every stage).

    :meth:`_earl_setup` wraps the sampler(s) and converts the bbox head(s) with
    :func:`make_earl_head`, the same path for a config-built ``EARLStandardRoIHead`` and
    for ``make_earl_head(model.roi_head)`` (the hook). :meth:`loss` is mmdet's, on the
    kept boxes under ``'ignore'``. Mask heads are not weighted (under ``'ignore'`` they
    see the kept boxes only).
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_policies = ('earl', 'ignore')
    _earl_required = {
        # these hand each image's gt instances to the sampler and the sampling results,
        # unchanged, to bbox_head.loss_and_target
        'loss': (StandardRoIHead.loss, CascadeRoIHead.loss),
        'bbox_loss': (StandardRoIHead.bbox_loss, CascadeRoIHead.bbox_loss),
    }

    def _earl_setup(self, earl_cfg: Mapping | EARLConfig | None) -> None:
        super()._earl_setup(earl_cfg)
        for bbox_head in self._earl_bbox_heads(self):
            make_earl_head(bbox_head, self.earl_cfg)
        sampler = self.bbox_sampler  # None / [] on a head built without train_cfg
        if isinstance(sampler, list):
            self.bbox_sampler = [RecordingSampler.wrap(s) for s in sampler]
        else:
            self.bbox_sampler = RecordingSampler.wrap(sampler)

    def loss(self, x: tuple[Tensor], rpn_results_list: list, batch_data_samples: list) -> dict:
        """The RoI head's losses; under ``'ignore'`` on the kept boxes, the ignore regions
        in the gt instances' metainfo for the bbox head.

        Args and returns as :meth:`StandardRoIHead.loss`.
        """
        if self.earl_cfg.policy == 'ignore':
            batch_data_samples = [self._earl_kept_sample(s) for s in batch_data_samples]
        return super().loss(x, rpn_results_list, batch_data_samples)

    def _earl_kept_sample(self, data_sample: Any) -> Any:
        """A shallow copy of ``data_sample`` whose gt instances are the kept boxes, with
        the ignore regions as ``earl_ignore_regions`` in their metainfo (itself if none)."""
        kept, regions = split_ignored(data_sample.gt_instances, self.earl_cfg)
        if regions is None:
            return data_sample
        kept.set_metainfo(dict(earl_ignore_regions=regions))
        out = data_sample.new()  # same metainfo and fields, not copied
        out.gt_instances = kept
        return out

    @staticmethod
    def _earl_bbox_heads(roi_head: nn.Module) -> list[nn.Module]:
        bbox_head = getattr(roi_head, 'bbox_head', None)
        if bbox_head is None:
            raise TypeError(f'EARL needs a bbox head; {type(roi_head).__name__} has none')
        return list(bbox_head) if isinstance(bbox_head, nn.ModuleList) else [bbox_head]

    @classmethod
    def _earl_check_instance(cls, head: nn.Module, cfg: EARLConfig) -> None:
        super()._earl_check_instance(head, cfg)
        for bbox_head in cls._earl_bbox_heads(head):
            check_earl_head(bbox_head, cfg)


register_earl_mixin(StandardRoIHead, EARLRoIHeadMixin)
register_earl_mixin(CascadeRoIHead, EARLRoIHeadMixin)
register_earl_mixin(BBoxHead, EARLBBoxHeadMixin)
