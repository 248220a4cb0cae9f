"""EARL for YOLOX: the mixin of the YOLOXHead family and ``EARLYOLOXHead``.

YOLOXHead calls its losses without ``weight=`` and its targets code does not say which gt
each positive prior was assigned to, so the mixin records the assignment (a
:class:`~earl_mmdet.models.earl_convert.RecordingSampler`) and hands each weighted loss
module per-prior weights: 1 for negatives, the weight of the assigned gt box's confidence
``c`` (``data_sample.gt_instances.confidence``, via
:func:`earl_mmdet.models.earl_weights.box_weights`) for positives.

The loss policies (``earl_cfg.policy``; equations in ``docs/earl_heads.md``):

* ``'earl'`` - the above;
* ``'soft'`` - YOLOX's classification target of a positive is already IoU x one-hot; it
  becomes IoU x q x one-hot, ``q = min(1, w)``, and the positive's cls loss is not
  weighted (terms ``bbox`` / ``obj`` are, as under ``'earl'``);
* ``'ignore'`` - boxes with ``c / scale < ignore_below`` are removed before SimOTA and
  become ignore regions: priors that are not foreground and whose cell centre lies in
  one get objectness weight 0 (YOLOX's cls and box losses are on foreground priors only).
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

from earl_mmdet.models.earl_weights import (
    EARLConfig,
    box_weights,
    points_in_regions,
    prior_weights,
    soft_targets,
    split_ignored,
)

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

    Under ``'soft'`` the positives' rows of the cls target are multiplied by q and
    ``loss_cls`` gets no weight; under ``'ignore'`` the kept boxes are assigned and
    ``loss_obj`` always gets a weight, 0 on the ignored priors.
    """

    _earl_allowed_terms = ('cls', 'bbox', 'obj')
    _earl_policies = ('earl', 'soft', 'ignore')
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

    #: per image while loss_by_feat() runs: foreground mask, per-prior weights (None: all
    #: 1), ignored priors (None: none)
    _earl_records: list[tuple[Tensor, Tensor | None, Tensor | None]] | None = None

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
        """YOLOXHead's targets of one image; records the priors' weights.

        Under ``'ignore'`` YOLOXHead assigns the kept boxes only and the non-foreground
        priors whose cell centre ``(x + stride / 2, y + stride / 2)`` (the point SimOTA
        uses) lies in an ignore region are recorded; under ``'soft'`` the positives' cls
        targets are multiplied by their box's q. Args and returns as
        :meth:`YOLOXHead._get_targets_single`.
        """
        if not isinstance(self.sampler, RecordingSampler):
            raise RuntimeError(f'{type(self).__name__}.sampler was replaced after EARL set-up')
        self.sampler.last = None
        cfg = self.earl_cfg
        kept, regions = split_ignored(gt_instances, cfg)
        targets = super()._get_targets_single(
            priors,
            cls_preds,
            decoded_bboxes,
            objectness,
            kept,
            img_meta,
            gt_instances_ignore,
        )
        fg_mask, cls_target = targets[:2]
        weights = box_weights(kept, cfg)
        per_prior = None
        sampling_result = self.sampler.last
        if weights is not None and sampling_result is not None:
            pos_weights = weights[sampling_result.pos_assigned_gt_inds]
            # YOLOXHead sets its foreground mask from exactly these pos_inds
            per_prior = prior_weights(fg_mask.shape[0], sampling_result.pos_inds, pos_weights)
            if cfg.policy == 'soft' and 'cls' in cfg.terms:
                # cls_target's rows are the positives in the order of pos_inds
                if cls_target.shape[0] != pos_weights.shape[0]:
                    raise RuntimeError(
                        f'{type(self).__name__}: {cls_target.shape[0]} cls targets for '
                        f'{pos_weights.shape[0]} positives'
                    )
                soft = soft_targets(pos_weights).to(cls_target.dtype)
                targets = (fg_mask, cls_target * soft[:, None]) + tuple(targets[2:])
        ignored = None
        if regions is not None:
            centres = priors[:, :2] + priors[:, 2:] * 0.5
            ignored = points_in_regions(centres, regions) & ~fg_mask
        if self._earl_records is not None:
            self._earl_records.append((fg_mask, per_prior, ignored))
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
            for attr in self._earl_weighted_losses():
                hook = functools.partial(self._earl_weight_hook, attr, weights_cache)
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

    def _earl_weighted_losses(self) -> list[str]:
        """The loss modules that get ``weight=``: those of the weighted terms (not
        ``loss_cls`` under ``'soft'``), and ``loss_obj`` under ``'ignore'``."""
        cfg = self.earl_cfg
        out = []
        for attr, term in self._earl_loss_terms:
            weighted = term in cfg.terms and not (attr == 'loss_cls' and cfg.policy == 'soft')
            if weighted or (attr == 'loss_obj' and cfg.policy == 'ignore'):
                out.append(attr)
        return out

    def _earl_loss_weights(self, attr: str, cache: dict[str, Tensor]) -> Tensor:
        """Weights of the rows ``attr`` is called on: the foreground priors' EARL weights,
        or for ``loss_obj`` every prior's (1 unless term ``obj``) times 0 if ignored."""
        if 'all' not in cache:
            records = self._earl_records or []
            cache['fg'] = torch.cat([fg for fg, _, _ in records])
            ones = [fg.new_ones(fg.shape, dtype=torch.float) for fg, _, _ in records]
            cache['all'] = torch.cat([o if w is None else w for o, (_, w, _) in zip(ones, records)])
            cache['keep'] = torch.cat(
                [o if i is None else o.masked_fill(i, 0.0) for o, (_, _, i) in zip(ones, records)]
            )
        if attr != 'loss_obj':
            return cache['all'][cache['fg']]
        if 'obj' in self.earl_cfg.terms:
            return cache['all'] * cache['keep']
        return cache['keep']

    def _earl_weight_hook(
        self,
        attr: str,
        cache: dict[str, Tensor],
        module: nn.Module,
        args: tuple,
        kwargs: dict,
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a loss module: add ``weight=`` for its rows of priors."""
        weights = self._earl_loss_weights(attr, cache)
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
        fg = torch.cat([fg for fg, _, _ in records])
        num_pos = fg.sum().float()
        weight_sum = sum(
            (fg_i.sum().float() if w is None else w[fg_i].sum().float()) for fg_i, w, _ in records
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
            :class:`earl_mmdet.models.earl_weights.EARLConfig`: ``terms`` (subset of
            ``('cls', 'bbox', 'obj')``, default ``('cls', 'bbox')``), ``scale`` (1.0; R for
            c = T/R), ``gamma`` (1.0), ``floor`` (0.0), ``normalize`` (``'num_pos'``),
            ``policy`` (``'earl'``, ``'soft'`` or ``'ignore'``, with ``ignore_below``,
            ``weight_kept``). Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.YOLOXHead`.

    Example:
        >>> # in a config based on mmdet::yolox/yolox_s_8xb8-300e_coco.py
        >>> model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(scale=3.0)))
    """
