"""EARL for the quality-aware dense heads: RTMDet, ATSS and GFL (all three loss policies).

These heads weight their box losses by a per-positive quality (RTMDet: the assigner's IoU
``s``, which is also the quality-focal classification target; ATSS: the centerness target;
GFL: the predicted class score) and normalise them by the sum of that quality. EARL keeps
all of it and multiplies each positive prior's terms by the weight ``w`` of the gt box it
is assigned to (``gt_instances.confidence`` through
:func:`earl_mmdet.models.earl_weights.box_weights`); the equations are in
``docs/earl_heads.md`` (section "RTMDet, ATSS and GFL").

Where the weights enter, without copying mmdet code:

* ``_get_targets_single`` calls the head's own, with the ignore regions removed from the
  gt first (``policy='ignore'``); it scales the positives' ``label_weights`` by w (term
  ``cls``), zeroes the ``label_weights`` of the non-positive priors inside an ignore region,
  and records every prior's w (1 for non-positives);
* ``get_targets`` turns those records into per-level tensors, keyed by the level's
  ``labels`` tensor that ``loss_by_feat`` hands to ``loss_by_feat_single``, and (ATSS, GFL,
  ``normalize='weight_sum'``) counts the positives by weight in ``avg_factor``;
* ``loss_by_feat_single`` calls the head's own with forward pre-hooks on its loss modules:
  the positives' box losses (``loss_bbox``, ATSS ``loss_centerness``, GFL ``loss_dfl``) get
  their weight multiplied by w (term ``bbox``), and under ``policy='soft'`` the positives'
  classification target is multiplied by q = min(1, w) (``loss_cls``): the quality target
  of a ``QualityFocalLoss`` (a pre-hook), or, for ATSS's sigmoid ``FocalLoss``, the loss
  of the one-hot target times q with
  :func:`~earl_mmdet.models.earl_weights.soft_focal_loss` in place of the focal loss (a
  forward hook, :func:`~earl_mmdet.models.dense_heads.earl_anchor_heads.soft_focal_hook`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from mmdet.models.dense_heads import AnchorHead, ATSSHead, GFLHead, RTMDetHead, RTMDetSepBNHead
from mmdet.models.losses import FocalLoss, QualityFocalLoss
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.registry import MODELS
from torch import Tensor, nn

from earl_mmdet.models.earl_weights import (
    EARL_POLICIES,
    EARLConfig,
    box_weights,
    boxes_in_regions,
    inside_to_full_index,
    points_in_regions,
    prior_weights,
    soft_targets,
    split_ignored,
    weight_sum_normalizer,
)

from ..earl_convert import EARLHeadMixin, register_earl_mixin, register_earl_variant
from .earl_anchor_heads import is_sigmoid_focal, soft_focal_hook

__all__ = [
    'EARLATSSHead',
    'EARLATSSHeadMixin',
    'EARLGFLHead',
    'EARLGFLHeadMixin',
    'EARLRTMDetHead',
    'EARLRTMDetHeadMixin',
    'EARLRTMDetSepBNHead',
]


class _EARLQualityHeadMixin(EARLHeadMixin):
    """What the RTMDet, ATSS and GFL mixins share (not a family mixin on its own).

    Its generic methods carry ``_earl_`` names; the :func:`_family` decorator binds them to
    the head's method names in each family mixin's own namespace, so that the support check
    sees the family's methods and ``super()`` in them reaches the mmdet head.
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_policies = EARL_POLICIES
    #: whether the head's priors are points (x, y, stride_w, stride_h) rather than boxes
    _earl_point_priors = False
    #: whether ``get_targets`` returns mmdet's positive-count normaliser last (ATSS, GFL)
    _earl_count_normalizer = False
    #: classification losses whose target ``policy='soft'`` knows how to soften (exact
    #: types, sigmoid on logits)
    _earl_soft_losses: tuple[type, ...] = (QualityFocalLoss,)
    #: loss module -> rows per positive, for the positives-only losses of term ``bbox``
    _earl_box_losses: Mapping[str, int] = {'loss_bbox': 1}

    #: per-batch records while ``loss_by_feat`` runs: ``images`` (one (per-prior weights or
    #: None, number of positives, sum of their weights) per image), ``levels`` (pairs of a
    #: level's labels tensor and its (N, P_level) prior weights) or None
    _earl_state: dict[str, Any] | None = None

    @classmethod
    def _earl_check_modules(cls, head: nn.Module, cfg: EARLConfig) -> None:
        """Refuse ``policy='soft'`` with a classification loss it cannot soften."""
        if cfg.policy != 'soft' or 'cls' not in cfg.terms:
            return
        loss = getattr(head, 'loss_cls', None)
        if not (
            type(loss) in cls._earl_soft_losses
            and getattr(loss, 'use_sigmoid', False)
            and not getattr(loss, 'activated', False)
        ):
            names = ', '.join(t.__name__ for t in cls._earl_soft_losses)
            raise ValueError(
                f"earl_cfg.policy 'soft' on {type(head).__name__} needs loss_cls to be a "
                f'sigmoid {names} on logits, got {type(loss).__name__}'
            )

    # -- generic bodies, bound to the mmdet names by the family mixins ------------------

    def _earl_loss_by_feat(self, *args: Any, **kwargs: Any) -> dict:
        """The head's ``loss_by_feat`` (same arguments), with its positives EARL-weighted."""
        self._earl_state = dict(images=[], levels=None)
        try:
            return super().loss_by_feat(*args, **kwargs)
        finally:
            self._earl_state = None

    def _earl_get_targets(self, *args: Any, **kwargs: Any) -> tuple | None:
        """The head's ``get_targets`` (same arguments and results); inside ``loss_by_feat``
        it also keeps each level's prior weights, and under ``normalize='weight_sum'`` (ATSS,
        GFL) the positives count by weight in the returned ``avg_factor``."""
        res = super().get_targets(*args, **kwargs)
        state = self._earl_state
        if state is None or res is None:
            return res
        images, state['images'] = state['images'], []
        if all(weights is None for weights, _, _ in images):
            return res
        labels_list = res[1]
        if len(images) != labels_list[0].shape[0]:
            raise RuntimeError(
                f'{type(self).__name__}: {len(images)} images recorded for a batch of '
                f'{labels_list[0].shape[0]}; the EARL mixin supports the get_targets of mmdet 3.3'
            )
        sizes = [labels.shape[1] for labels in labels_list]
        ones = labels_list[0].new_ones(sum(sizes), dtype=torch.float)
        per_prior = torch.stack([ones if w is None else w.to(ones) for w, _, _ in images])
        state['levels'] = list(zip(labels_list, per_prior.split(sizes, dim=1)))
        if self._earl_count_normalizer and self.earl_cfg.normalize == 'weight_sum':
            avg_factor = weight_sum_normalizer(
                res[-1], sum(n for _, n, _ in images), sum(s for _, _, s in images)
            )
            res = res[:-1] + (avg_factor,)
        return res

    def _earl_get_targets_single(self, *args: Any, **kwargs: Any) -> tuple:
        """The head's ``_get_targets_single`` (same arguments and results), computed on the
        kept boxes (``policy='ignore'``) and EARL-adjusted (:meth:`_earl_adjust_targets`)."""
        parent = super()._get_targets_single
        bound = _signature(parent).bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        kept, regions = split_ignored(given['gt_instances'], self.earl_cfg)
        given['gt_instances'] = kept
        results = parent(*bound.args, **bound.kwargs)
        if results[1] is None:  # RTMDet: no prior inside the image, mmdet gives up the batch
            return results
        where = (given['flat_anchors'], given['valid_flags'], given['img_meta'])
        return self._earl_adjust_targets(
            results, results[-1], kept, regions, where + (given['unmap_outputs'],)
        )

    def _earl_loss_by_feat_single(self, *args: Any, **kwargs: Any) -> tuple:
        """The head's ``loss_by_feat_single`` (same arguments and results) with the loss
        modules hooked (:meth:`_earl_hooks`) and the normalisers per ``earl_cfg.normalize``."""
        parent = super().loss_by_feat_single
        given = _signature(parent).bind(*args, **kwargs).arguments
        weights = self._earl_level_weights(given['labels'])
        if weights is None:
            return parent(*args, **kwargs)
        with self._earl_hooks(given['labels'], weights) as record:
            results = parent(*args, **kwargs)
        return self._earl_normalizers(tuple(results), given, weights, record)

    # -- helpers -----------------------------------------------------------------------

    def _earl_adjust_targets(
        self, results: tuple, sampling_result: Any, kept: Any, regions: Tensor | None, where: tuple
    ) -> tuple:
        """One image's targets ``(priors, labels, label_weights, ...)`` with EARL applied.

        The positives' label weights are scaled by their gt's weight (term ``cls``, not
        under ``'soft'``), the non-positive priors inside an ignore region get label weight
        0, and the priors' weights are recorded for :meth:`_earl_get_targets`.

        Args:
            results (tuple): the parent's ``_get_targets_single`` results.
            sampling_result (Any): their sampling result (positives index the priors inside
                the image, ``train_cfg.allowed_border``).
            kept (Any): the gt boxes the targets were computed on.
            regions (Tensor | None): (K, 4) ignore regions of the image.
            where (tuple): ``(flat_anchors, valid_flags, img_meta, unmap_outputs)``.
        """
        priors, labels, label_weights = results[:3]
        cfg = self.earl_cfg
        weights = box_weights(kept, cfg)
        num_pos = int(sampling_result.pos_inds.numel())
        per_prior, weight_sum = None, float(num_pos)
        if weights is not None:
            rows = self._earl_full_rows(sampling_result.pos_inds, *where)
            pos_weights = weights[sampling_result.pos_assigned_gt_inds]
            per_prior = prior_weights(labels.shape[0], rows, pos_weights)
            weight_sum = pos_weights.sum()  # a tensor: read (host sync) only under weight_sum
            if 'cls' in cfg.terms and cfg.policy != 'soft':
                label_weights = label_weights * per_prior.to(label_weights.dtype)
        if regions is not None:
            if self._earl_point_priors:
                inside = points_in_regions(priors, regions)
            else:
                inside = boxes_in_regions(priors, regions, cfg.ignore_iof)
            label_weights = label_weights.masked_fill(inside & ~self._earl_fg(labels), 0.0)
        if self._earl_state is not None:
            self._earl_state['images'].append((per_prior, num_pos, weight_sum))
        return (priors, labels, label_weights) + tuple(results[3:])

    def _earl_full_rows(
        self,
        pos_inds: Tensor,
        flat_anchors: Tensor,
        valid_flags: Tensor,
        img_meta: dict,
        unmap_outputs: bool,
    ) -> Tensor:
        """Rows of the (unmapped) targets that ``pos_inds`` (inside priors) point at."""
        if not unmap_outputs:
            return pos_inds
        inside_flags = anchor_inside_flags(
            flat_anchors, valid_flags, img_meta['img_shape'][:2], self.train_cfg['allowed_border']
        )
        return inside_to_full_index(inside_flags, pos_inds)

    def _earl_fg(self, labels: Tensor) -> Tensor:
        """Which priors are positive (labels in [0, num_classes)), as the heads count them."""
        return (labels >= 0) & (labels < self.num_classes)

    def _earl_level_weights(self, labels: Tensor) -> Tensor | None:
        """Flat prior weights of the level whose targets hold ``labels`` (None: all 1)."""
        state = self._earl_state
        if state is None or state['levels'] is None:
            return None
        for level_labels, weights in state['levels']:
            if level_labels is labels:
                return weights.reshape(-1)
        raise RuntimeError(
            f'{type(self).__name__}.loss_by_feat_single got labels that get_targets did not '
            'return; the EARL mixin supports the loss_by_feat of mmdet 3.3'
        )

    @contextlib.contextmanager
    def _earl_hooks(self, labels: Tensor, weights: Tensor) -> Iterator[list[Tensor]]:
        """Hooks on the loss modules while the parent computes one level's losses.

        Yields:
            list[Tensor]: filled with the positives' ``loss_bbox`` weights times w, summed
            (the ``weight_sum`` box normaliser), when ``loss_bbox`` is called.
        """
        cfg = self.earl_cfg
        pos_weights = weights[self._earl_fg(labels.reshape(-1))]
        record: list[Tensor] = []
        handles = []
        try:
            if cfg.policy == 'soft' and 'cls' in cfg.terms:
                q = soft_targets(weights)
                if is_sigmoid_focal(self.loss_cls):  # ATSS: the soft focal loss's output
                    hook = functools.partial(soft_focal_hook, q)
                    handles.append(self.loss_cls.register_forward_hook(hook, with_kwargs=True))
                else:
                    hook = functools.partial(self._earl_soft_target_hook, q)
                    handles.append(self.loss_cls.register_forward_pre_hook(hook, with_kwargs=True))
            for attr, repeat in self._earl_box_losses.items():
                keep = record if attr == 'loss_bbox' and cfg.normalize == 'weight_sum' else None
                if 'bbox' in cfg.terms or keep is not None:
                    rows = pos_weights.repeat_interleave(repeat) if repeat > 1 else pos_weights
                    hook = functools.partial(
                        self._earl_weight_hook, attr, rows, 'bbox' in cfg.terms, keep
                    )
                    module: nn.Module = getattr(self, attr)
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            yield record
        finally:
            for handle in handles:
                handle.remove()

    def _earl_unexpected(self, attr: str, detail: str) -> RuntimeError:
        return RuntimeError(
            f'{type(self).__name__}.{attr} was called in an unexpected way ({detail}); the '
            f'EARL mixin supports the loss_by_feat_single of mmdet 3.3'
        )

    def _earl_weight_hook(
        self,
        attr: str,
        rows: Tensor,
        scale: bool,
        record: list[Tensor] | None,
        module: nn.Module,
        args: tuple,
        kwargs: dict,
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a positives-only loss: its ``weight=`` times the rows' w."""
        pred = args[0] if args else kwargs.get('pred')
        if len(args) > 2 or pred is None or pred.shape[0] != rows.shape[0]:
            raise self._earl_unexpected(attr, f'{rows.shape[0]} positive rows expected')
        weight = kwargs.get('weight')
        if weight is None:
            weighted = rows.to(pred.dtype)
        else:
            weighted = weight * rows.to(weight.dtype).view(-1, *([1] * (weight.dim() - 1)))
        if record is not None:
            record.append(weighted.sum())
        return (args, dict(kwargs, weight=weighted)) if scale else (args, kwargs)

    def _earl_soft_target_hook(
        self, q: Tensor, module: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a ``QualityFocalLoss``: the positives' target times q.

        The quality-focal target ``(labels, score)`` becomes ``(labels, score * q)``, q =
        min(1, w) per prior (1 for the negatives, whose score is 0 anyway).
        """
        pred = args[0] if args else kwargs.get('pred')
        target = args[1] if len(args) > 1 else kwargs.get('target')
        if pred is None or pred.shape[0] != q.shape[0]:
            raise self._earl_unexpected('loss_cls', f'{q.shape[0]} rows expected')
        if isinstance(target, tuple) and len(target) == 2 and target[1].shape == q.shape:
            soft = (target[0], target[1] * q.to(target[1].dtype))
        else:
            raise self._earl_unexpected('loss_cls', 'unknown target form')
        if len(args) > 1:
            return (args[0], soft) + tuple(args[2:]), kwargs
        return args, dict(kwargs, target=soft)

    def _earl_normalizers(
        self, results: tuple, given: dict, weights: Tensor, record: list[Tensor]
    ) -> tuple:
        """A level's ``loss_by_feat_single`` results with, under ``weight_sum``, the box
        normaliser (last) replaced by the sum of the positives' box weights times w."""
        if self.earl_cfg.normalize != 'weight_sum' or not record:
            return results
        return results[:-1] + (record[0],)


_WRAPPED = ('_get_targets_single', 'get_targets', 'loss_by_feat', 'loss_by_feat_single')


def _signature(method: Any) -> inspect.Signature:
    """The signature of a bound mmdet method (without ``self``), cached per function."""
    return _function_signature(method.__func__)


@functools.cache
def _function_signature(func: Callable) -> inspect.Signature:
    signature = inspect.signature(func)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _family(head: type, anchors_from: type) -> Callable[[type], type]:
    """Class decorator of a family mixin of :class:`_EARLQualityHeadMixin`.

    Binds the generic bodies to the mmdet method names in the mixin's own namespace
    (``_get_targets_single = _earl_get_targets_single`` ...) and pins what they call:
    ``head``'s own ``_get_targets_single``, ``get_targets``, ``loss_by_feat``,
    ``loss_by_feat_single`` and ``anchors_from``'s ``get_anchors`` (the priors' form).
    """

    def wrap(cls: type) -> type:
        required = {name: (vars(head)[name],) for name in _WRAPPED}
        required['get_anchors'] = (vars(anchors_from)['get_anchors'],)
        cls._earl_required = required
        for name in _WRAPPED:
            setattr(cls, name, vars(_EARLQualityHeadMixin)[f'_earl_{name.lstrip("_")}'])
        return cls

    return wrap


@_family(RTMDetHead, RTMDetHead)
class EARLRTMDetHeadMixin(_EARLQualityHeadMixin):
    """EARL for :class:`RTMDetHead` (and ``RTMDetSepBNHead``, which keeps its loss code).

    RTMDet trains with ``DynamicSoftLabelAssigner``: each positive prior i gets the IoU
    ``s_i`` of its prediction with the assigned gt as quality-focal target and as weight
    of its GIoU loss; both losses are divided by ``max(1, sum_i s_i)``. EARL multiplies the
    positives' QFL weight (term ``cls``) and GIoU weight (term ``bbox``) by w;
    ``normalize='weight_sum'`` divides by ``max(1, sum_i w_i s_i)`` instead. The priors are
    points (x, y, stride, stride), so an ignore region covers the priors whose centre lies
    inside it.
    """

    _earl_point_priors = True

    def _earl_normalizers(
        self, results: tuple, given: dict, weights: Tensor, record: list[Tensor]
    ) -> tuple:
        """Under ``weight_sum`` also the cls normaliser (third) is ``sum_i w_i s_i``."""
        results = super()._earl_normalizers(results, given, weights, record)
        if self.earl_cfg.normalize != 'weight_sum':
            return results
        cls_norm = (given['assign_metrics'].reshape(-1) * weights).sum()
        return results[:2] + (cls_norm,) + results[3:]


@_family(ATSSHead, AnchorHead)
class EARLATSSHeadMixin(_EARLQualityHeadMixin):
    """EARL for :class:`ATSSHead` (and subclasses keeping its targets and loss code).

    ATSS's losses: sigmoid focal loss over all priors and centerness BCE over the
    positives, both divided by the number of positives N; GIoU over the positives weighted
    by their centerness target ``t_i`` and divided by ``max(1, sum_i t_i)``. EARL multiplies
    the positives' focal weight (term ``cls``), GIoU weight and centerness loss (term
    ``bbox``) by w; ``normalize='weight_sum'`` replaces N by ``sum_i w_i`` and
    ``sum_i t_i`` by ``sum_i w_i t_i``. Under ``policy='soft'`` a positive's target is the
    one-hot vector with q at its class and the focal loss becomes
    :func:`~earl_mmdet.models.earl_weights.soft_focal_loss` (``loss_cls`` must be mmdet's
    ``FocalLoss(use_sigmoid=True, activated=False)``): the focal loss on the negatives and
    at q = 1, minimised at ``p = q`` on a positive's class.
    """

    _earl_count_normalizer = True
    _earl_soft_losses = (FocalLoss,)
    _earl_box_losses = {'loss_bbox': 1, 'loss_centerness': 1}


@_family(GFLHead, AnchorHead)
class EARLGFLHeadMixin(_EARLQualityHeadMixin):
    """EARL for :class:`GFLHead` (and subclasses keeping its targets and loss code).

    GFL's losses: quality focal loss over all priors, the positives' target being the IoU
    ``s_i`` of the decoded box with its gt, divided by the number of positives N; GIoU and
    distribution focal loss over the positives weighted by the predicted score ``p_i``
    (detached) and divided by ``max(1, sum_i p_i)``. EARL multiplies the positives' QFL
    weight (term ``cls``), GIoU and DFL weights (term ``bbox``) by w; ``weight_sum``
    replaces N by ``sum_i w_i`` and ``sum_i p_i`` by ``sum_i w_i p_i``.
    """

    _earl_count_normalizer = True
    _earl_box_losses = {'loss_bbox': 1, 'loss_dfl': 4}  # DFL: one row per box side


# the most specific family wins (earl_convert._family_mixin): RTMDetHead < ATSSHead < AnchorHead
register_earl_mixin(RTMDetHead, EARLRTMDetHeadMixin)
register_earl_mixin(ATSSHead, EARLATSSHeadMixin)
register_earl_mixin(GFLHead, EARLGFLHeadMixin)


@MODELS.register_module()
@register_earl_variant(RTMDetHead)
class EARLRTMDetHead(EARLRTMDetHeadMixin, RTMDetHead):
    """RTMDetHead whose positive priors' losses are weighted by their gt box's confidence.

    See :class:`EARLRTMDetHeadMixin` and ``docs/earl_heads.md``; arguments: RTMDetHead's
    plus ``earl_cfg`` (as :class:`EARLRTMDetSepBNHead`). Without ``gt_instances.confidence``
    (or with c = 1 and nothing ignored) it equals RTMDetHead.
    """


@MODELS.register_module()
@register_earl_variant(RTMDetSepBNHead)
class EARLRTMDetSepBNHead(EARLRTMDetHeadMixin, RTMDetSepBNHead):
    """RTMDetSepBNHead (the head of mmdet's RTMDet configs) with EARL loss weighting.

    See :class:`EARLRTMDetHeadMixin` and ``docs/earl_heads.md``.

    Args:
        earl_cfg (dict, optional): EARL options
            (:class:`earl_mmdet.models.earl_weights.EARLConfig`),
            terms ``cls`` / ``bbox``, policies ``'earl'``, ``'soft'``, ``'ignore'``.
            Defaults to None (the paper's settings).
        *args, **kwargs: arguments of the mmdet head.

    Example:
        >>> # in a config based on mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py
        >>> model = dict(bbox_head=dict(type='EARLRTMDetSepBNHead', earl_cfg=dict(scale=3.0)))
    """


@MODELS.register_module()
@register_earl_variant(ATSSHead)
class EARLATSSHead(EARLATSSHeadMixin, ATSSHead):
    """ATSSHead whose positive priors' losses are weighted by their gt box's confidence.

    See :class:`EARLATSSHeadMixin` and ``docs/earl_heads.md``; arguments: ATSSHead's plus
    ``earl_cfg`` (as :class:`EARLRTMDetSepBNHead`; ``policy='soft'`` needs a ``FocalLoss``).
    """


@MODELS.register_module()
@register_earl_variant(GFLHead)
class EARLGFLHead(EARLGFLHeadMixin, GFLHead):
    """GFLHead whose positive priors' losses are weighted by their gt box's confidence.

    See :class:`EARLGFLHeadMixin` and ``docs/earl_heads.md``; arguments: GFLHead's plus
    ``earl_cfg`` (as :class:`EARLRTMDetSepBNHead`).
    """
