"""EARL for YOLOX: the mixin of the YOLOXHead family and ``EARLYOLOXHead``.

YOLOXHead calls its losses without ``weight=`` and its targets code does not say which gt
each positive prior was assigned to, so the mixin records the assignment (a
:class:`~earl_mmdet.models.earl_convert.RecordingSampler`) and hands each weighted loss
module per-prior weights: 1 for negatives, the weight of the assigned gt box's confidence
``c`` (``data_sample.gt_instances.confidence``, via
:func:`earl_mmdet.core.earl_weights.box_weights`) for positives.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from mmdet.models.dense_heads import YOLOXHead
from mmdet.registry import MODELS
from mmdet.utils import reduce_mean
from torch import Tensor, nn

from ...core.earl_weights import EARLConfig, box_weights, prior_weights
from ..earl_convert import (
    EARLHeadMixin,
    RecordingSampler,
    register_earl_mixin,
    register_earl_variant,
)

__all__ = ['EARLYOLOXHead', 'EARLYOLOXHeadMixin']


class EARLYOLOXHeadMixin(EARLHeadMixin):
    """EARL for :class:`YOLOXHead` (and subclasses keeping its loss code).

    YOLOXHead calls ``loss_cls`` / ``loss_bbox`` / ``loss_l1`` on the positives and
    ``loss_obj`` on all priors, with ``reduction='sum'`` and no ``weight=``, then divides
    by the number of positives. :meth:`_get_targets_single` calls YOLOXHead's and records
    each prior's weight (1 for negatives, the assigned gt's weight for positives);
    :meth:`loss_by_feat` calls YOLOXHead's with a forward pre-hook on each weighted loss
    module that adds those weights as ``weight=`` (terms: ``cls`` -> loss_cls, ``bbox`` ->
    loss_bbox and loss_l1, ``obj`` -> loss_obj). With ``normalize='weight_sum'`` every
    loss is rescaled from ``/ num_pos`` to ``/ sum of the positives' weights``.
    """

    _earl_allowed_terms = ('cls', 'bbox', 'obj')
    _earl_required = {
        '_get_targets_single': (YOLOXHead._get_targets_single,),
        'loss_by_feat': (YOLOXHead.loss_by_feat,),
    }
    #: loss module attribute -> term
    _earl_loss_terms = (
        ('loss_cls', 'cls'),
        ('loss_bbox', 'bbox'),
        ('loss_l1', 'bbox'),
        ('loss_obj', 'obj'),
    )

    _earl_records: list[tuple[Tensor, Tensor | None]] | None = None

    def _earl_setup(self, earl_cfg: Mapping | EARLConfig | None) -> None:
        super()._earl_setup(earl_cfg)
        if hasattr(self, 'sampler'):  # absent on a head built without train_cfg
            self.sampler = RecordingSampler.wrap(self.sampler)

    @torch.no_grad()
    def _get_targets_single(
        self,
        priors: Tensor,
        cls_preds: Tensor,
        decoded_bboxes: Tensor,
        objectness: Tensor,
        gt_instances: Any,
        img_meta: dict,
        gt_instances_ignore: Any = None,
    ) -> tuple:
        """YOLOXHead's targets of one image (unchanged); records the priors' weights."""
        if not isinstance(self.sampler, RecordingSampler):
            raise RuntimeError(f'{type(self).__name__}.sampler was replaced after EARL set-up')
        self.sampler.last = None
        targets = super()._get_targets_single(
            priors,
            cls_preds,
            decoded_bboxes,
            objectness,
            gt_instances,
            img_meta,
            gt_instances_ignore,
        )
        fg_mask = targets[0]
        weights = box_weights(gt_instances, self.earl_cfg)
        per_prior = None
        sampling_result = self.sampler.last
        if weights is not None and sampling_result is not None:
            # YOLOXHead sets its foreground mask from exactly these pos_inds
            per_prior = prior_weights(
                fg_mask.shape[0],
                sampling_result.pos_inds,
                weights[sampling_result.pos_assigned_gt_inds],
            )
        if self._earl_records is not None:
            self._earl_records.append((fg_mask, per_prior))
        return targets

    def loss_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        objectnesses: list[Tensor],
        batch_gt_instances: list,
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list | None = None,
    ) -> dict:
        """YOLOXHead's losses with each weighted loss module given per-prior weights."""
        self._earl_records = []
        weights_cache: dict[str, Tensor] = {}
        handles = []
        try:
            for attr, term in self._earl_loss_terms:
                if term in self.earl_cfg.terms:
                    hook = functools.partial(
                        self._earl_weight_hook, attr, term != 'obj', weights_cache
                    )
                    module: nn.Module = getattr(self, attr)
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            losses = super().loss_by_feat(
                cls_scores,
                bbox_preds,
                objectnesses,
                batch_gt_instances,
                batch_img_metas,
                batch_gt_instances_ignore,
            )
            records = self._earl_records
        finally:
            for handle in handles:
                handle.remove()
            self._earl_records = None
        if self.earl_cfg.normalize == 'weight_sum':
            losses = self._earl_rescale_to_weight_sum(losses, records)
        return losses

    def _earl_weight_hook(
        self,
        attr: str,
        positives_only: bool,
        cache: dict[str, Tensor],
        module: nn.Module,
        args: tuple,
        kwargs: dict,
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a loss module: add ``weight=`` for its rows of priors."""
        if 'all' not in cache:
            records = self._earl_records or []
            cache['fg'] = torch.cat([fg for fg, _ in records])
            cache['all'] = torch.cat(
                [fg.new_ones(fg.shape, dtype=torch.float) if w is None else w for fg, w in records]
            )
        weights = cache['all'][cache['fg']] if positives_only else cache['all']
        pred = args[0] if args else kwargs.get('pred')
        if len(args) > 2 or 'weight' in kwargs or pred is None or pred.shape[0] != weights.shape[0]:
            raise RuntimeError(
                f'{type(self).__name__}.{attr} was called in an unexpected way '
                f'({weights.shape[0]} weighted rows expected); EARLYOLOXHeadMixin supports '
                'the YOLOXHead.loss_by_feat of mmdet 3.3'
            )
        weights = weights.to(pred.dtype).view(-1, *([1] * (pred.dim() - 1))).expand_as(pred)
        return args, dict(kwargs, weight=weights)

    def _earl_rescale_to_weight_sum(self, losses: dict, records: list) -> dict:
        """Turn YOLOX's ``/ max(mean num_pos, 1)`` into ``/ max(mean weight sum, 1)``."""
        fg = torch.cat([fg for fg, _ in records])
        num_pos = fg.sum().float()
        weight_sum = sum(
            (fg_i.sum().float() if w is None else w[fg_i].sum().float()) for fg_i, w in records
        )
        count_norm = reduce_mean(num_pos).clamp(min=1.0)
        weight_norm = reduce_mean(torch.as_tensor(weight_sum, device=fg.device)).clamp(min=1.0)
        factor = count_norm / weight_norm
        return {k: v * factor for k, v in losses.items()}


register_earl_mixin(YOLOXHead, EARLYOLOXHeadMixin)


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
    * ``c`` is ``gt_instances.confidence`` (float32 (N,), packed by ``PackMultiRaterInputs``);
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
