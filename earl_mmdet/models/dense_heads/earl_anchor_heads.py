"""EARL for anchor heads: the mixin of the AnchorHead family, EARLRetinaHead, EARLRPNHead.

EARL (Pham et al., eq. (2)) is ``L = c * Lcls + c * beta * I(t) * Lloc``: every anchor that
the assigner makes a positive for a ground-truth box has its classification and
localisation losses multiplied by the weight of that box's confidence ``c``. On mmdet's
:class:`~mmdet.models.dense_heads.AnchorHead` path:

* ``I(t)`` - the assigner's positives (RetinaNet: ``MaxIoUAssigner`` with
  ``pos_iou_thr`` = eta; RPN: the sampled positives);
* ``beta`` - the ``loss_weight`` of the head's ``loss_bbox``;
* ``c`` - ``data_sample.gt_instances.confidence`` (float32 (N,)), turned into per-box
  weights by :func:`earl_mmdet.models.earl_weights.box_weights`; absent -> every box
  weighs 1 and the heads equal mmdet's exactly.

Negatives (background anchors) are assigned to no box, so they keep weight 1.

The loss policies (``earl_cfg.policy``; equations in ``docs/earl_heads.md``):

* ``'earl'`` - the above;
* ``'soft'`` - a positive anchor's classification target is ``q = min(1, w)`` in its
  class's column instead of 1; its label weight is not multiplied, its box weight is
  (term ``bbox``). A sigmoid ``FocalLoss`` is replaced by
  :func:`~earl_mmdet.models.earl_weights.soft_focal_loss` (the focal loss at ``q = 1``,
  minimised at ``p = q``; :func:`soft_focal_hook`), a ``CrossEntropyLoss(use_sigmoid=True)``
  gets the one-hot target times q (BCE, already minimised at ``p = q``);
* ``'ignore'`` - boxes with ``c / scale < ignore_below`` are removed before assignment
  and become ignore regions: anchors that are not positive and lie in one
  (:func:`~earl_mmdet.models.earl_weights.boxes_in_regions`, ``ignore_iof``) get label
  weight 0.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch.nn.functional as F
from mmdet.models.dense_heads import AnchorHead, RetinaHead, RPNHead, SSDHead
from mmdet.models.losses import CrossEntropyLoss, FocalLoss
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.models.utils import images_to_levels
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor, nn

from earl_mmdet.models.earl_weights import (
    EARLConfig,
    box_weights,
    boxes_in_regions,
    inside_to_full_index,
    prior_weights,
    scale_rows,
    soft_focal_loss,
    soft_targets,
    split_ignored,
    weight_sum_normalizer,
)

from ..earl_convert import EARLHeadMixin, register_earl_mixin, register_earl_variant

__all__ = [
    'EARLAnchorHeadMixin',
    'EARLRPNHead',
    'EARLRetinaHead',
    'is_sigmoid_focal',
    'soft_focal_forward',
    'soft_focal_hook',
    'takes_soft_targets',
]


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

    Policies ``'soft'`` and ``'ignore'`` need AnchorHead's ``loss_by_feat_single`` (not
    SSD's hard-negative mining); ``'soft'`` also a ``loss_cls`` that takes a one-hot
    target (:func:`takes_soft_targets`). Under ``'soft'``, :meth:`get_targets` keeps each
    anchor's target q per level and, in :meth:`loss_by_feat_single`, a hook on
    ``loss_cls`` makes it the loss of the one-hot target times q: a sigmoid ``FocalLoss``'s
    output is replaced by :func:`soft_focal_forward` of the same call (a forward hook),
    a sigmoid ``CrossEntropyLoss`` gets the soft target in place of the labels (a forward
    pre-hook). When every q is 1 the labels go to mmdet's loss unchanged.
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_policies = ('earl', 'soft', 'ignore')
    _earl_required = {
        '_get_targets_single': (AnchorHead._get_targets_single,),
        'get_targets': (AnchorHead.get_targets,),
        # loss_by_feat implementations known to feed label/bbox weights and avg_factor
        # from get_targets() unchanged into their losses
        'loss_by_feat': (AnchorHead.loss_by_feat, RPNHead.loss_by_feat, SSDHead.loss_by_feat),
        'loss_by_feat_single': (AnchorHead.loss_by_feat_single, SSDHead.loss_by_feat_single),
    }

    _earl_pos_stats: list[tuple[int, float]] | None = None
    #: 'soft': each image's (A,) targets q (None: all 1), while get_targets() collects them
    _earl_soft_images: list[Tensor | None] | None = None
    #: 'soft': the (N, A_l) targets q of the levels not yet in a loss, during loss_by_feat()
    _earl_soft_levels: list[Tensor] | None = None

    @classmethod
    def _earl_check_terms(cls, cfg: EARLConfig) -> None:
        super()._earl_check_terms(cfg)
        single = super().loss_by_feat_single
        if cfg.policy != 'earl' and single is not AnchorHead.loss_by_feat_single:
            raise ValueError(
                f'earl_cfg.policy {cfg.policy!r} is not implemented for {cls.__name__}: it '
                "needs AnchorHead's loss_by_feat_single (label weights of every anchor in "
                "the loss), its policies are ('earl',)"
            )

    @classmethod
    def _earl_check_modules(cls, head: nn.Module, cfg: EARLConfig) -> None:
        """Refuse ``policy='soft'`` on a head whose ``loss_cls`` takes no soft target."""
        if cfg.policy == 'soft' and 'cls' in cfg.terms and not takes_soft_targets(head.loss_cls):
            raise ValueError(
                f"earl_cfg.policy 'soft' is not implemented for {type(head).__name__} with "
                f'loss_cls {type(head.loss_cls).__name__}: it needs FocalLoss(use_sigmoid=True,'
                ' activated=False) or CrossEntropyLoss(use_sigmoid=True), which it trains on a '
                "soft one-hot target (or drop 'cls' from earl_cfg.terms)"
            )

    def _get_targets_single(
        self,
        flat_anchors: Tensor,
        valid_flags: Tensor,
        gt_instances: Any,
        img_meta: dict,
        gt_instances_ignore: Any = None,
        unmap_outputs: bool = True,
    ) -> tuple:
        """AnchorHead's targets of one image, adjusted by the policy.

        ``'earl'``: positives' weights scaled by their gt's weight; ``'soft'``: only the box
        weights, the targets q recorded for :meth:`loss_by_feat_single`; ``'ignore'``:
        AnchorHead assigns the kept boxes only, and the non-positive anchors in an ignore
        region get label weight 0.

        Args and returns as :meth:`AnchorHead._get_targets_single`.
        """
        cfg = self.earl_cfg
        kept, regions = split_ignored(gt_instances, cfg)
        results = super()._get_targets_single(
            flat_anchors, valid_flags, kept, img_meta, gt_instances_ignore, unmap_outputs
        )
        labels, label_weights, bbox_targets, bbox_weights, pos_inds = results[:5]
        sampling_result = results[6]
        num_pos = int(pos_inds.numel())
        weights = box_weights(kept, cfg)
        pos_weights = None
        if weights is not None and num_pos > 0:
            pos_weights = weights[sampling_result.pos_assigned_gt_inds]
        rows = pos_inds
        if unmap_outputs and (pos_weights is not None or regions is not None):
            # pos_inds index anchors[inside_flags]; the outputs were unmapped to all anchors
            inside_flags = anchor_inside_flags(
                flat_anchors,
                valid_flags,
                img_meta['img_shape'][:2],
                self.train_cfg['allowed_border'],
            )
            rows = inside_to_full_index(inside_flags, pos_inds)
        if regions is not None:
            label_weights = self._earl_mask_ignored(
                label_weights, flat_anchors, valid_flags, img_meta, regions, rows, unmap_outputs
            )
        if pos_weights is not None:
            if 'cls' in cfg.terms and cfg.policy != 'soft':
                label_weights = scale_rows(label_weights, rows, pos_weights)
            if 'bbox' in cfg.terms:
                bbox_weights = scale_rows(bbox_weights, rows, pos_weights)
        if self._earl_soft_images is not None:
            soft = pos_weights is not None and bool((pos_weights < 1).any())
            q = prior_weights(labels.shape[0], rows, soft_targets(pos_weights)) if soft else None
            self._earl_soft_images.append(q)
        self._earl_note_positives(num_pos, pos_weights)
        return (labels, label_weights, bbox_targets, bbox_weights) + tuple(results[4:])

    def _earl_mask_ignored(
        self,
        label_weights: Tensor,
        flat_anchors: Tensor,
        valid_flags: Tensor,
        img_meta: dict,
        regions: Tensor,
        pos_rows: Tensor,
        unmap_outputs: bool,
    ) -> Tensor:
        """``label_weights`` with 0 on the non-positive anchors in an ignore region.

        The rows of ``label_weights`` are all anchors (``unmap_outputs``) or the anchors
        inside the image; ``pos_rows`` are the positives' rows in the same indexing.
        """
        anchors = get_box_tensor(flat_anchors)
        if not unmap_outputs:
            inside_flags = anchor_inside_flags(
                flat_anchors,
                valid_flags,
                img_meta['img_shape'][:2],
                self.train_cfg['allowed_border'],
            )
            anchors = anchors[inside_flags]
        if anchors.shape[0] != label_weights.shape[0]:
            raise RuntimeError(
                f'{type(self).__name__}: {anchors.shape[0]} anchors for '
                f'{label_weights.shape[0]} label weights; the ignore mask would misalign'
            )
        ignored = boxes_in_regions(anchors, regions, self.earl_cfg.ignore_iof)
        ignored[pos_rows] = False
        return label_weights.masked_fill(ignored, 0.0)

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
        """AnchorHead's targets; with ``weight_sum``, avg_factor counts positives by weight.

        Under ``'soft'`` inside :meth:`loss_by_feat`, also splits the images' targets q
        into levels for :meth:`loss_by_feat_single` (nothing when every q is 1).
        """
        collect = self.earl_cfg.normalize == 'weight_sum'
        soft = self._earl_soft_levels is not None and unmap_outputs
        self._earl_pos_stats = [] if collect else None
        self._earl_soft_images = [] if soft else None
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
            stats, soft_images = self._earl_pos_stats, self._earl_soft_images
        finally:
            self._earl_pos_stats = self._earl_soft_images = None
        if soft and any(q is not None for q in soft_images):
            num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
            ref = next(q for q in soft_images if q is not None)
            per_image = [ref.new_ones(ref.shape) if q is None else q for q in soft_images]
            self._earl_soft_levels[:] = images_to_levels(per_image, num_level_anchors)
        if not collect:
            return res
        avg_factor = weight_sum_normalizer(
            res[4], sum(s[0] for s in stats), sum(s[1] for s in stats)
        )
        return res[:4] + (avg_factor,) + res[5:]

    def loss_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        batch_gt_instances: list,
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list | None = None,
    ) -> dict:
        """The head's losses; under ``'soft'`` with the soft targets of this batch.

        Args and returns as :meth:`AnchorHead.loss_by_feat`.
        """
        self._earl_soft_levels = [] if self.earl_cfg.policy == 'soft' else None
        try:
            losses = super().loss_by_feat(
                cls_scores,
                bbox_preds,
                batch_gt_instances,
                batch_img_metas,
                batch_gt_instances_ignore,
            )
            left = self._earl_soft_levels
        finally:
            self._earl_soft_levels = None
        if left:
            raise RuntimeError(
                f'{type(self).__name__}: {len(left)} levels of soft targets were not used; '
                'loss_by_feat_single must be called once per level'
            )
        return losses

    def loss_by_feat_single(
        self,
        cls_score: Tensor,
        bbox_pred: Tensor,
        anchors: Tensor,
        labels: Tensor,
        label_weights: Tensor,
        bbox_targets: Tensor,
        bbox_weights: Tensor,
        avg_factor: int,
    ) -> tuple:
        """The level's losses; under ``'soft'``, ``loss_cls`` is that of the soft targets.

        Args and returns as :meth:`AnchorHead.loss_by_feat_single`.
        """
        args = (cls_score, bbox_pred, anchors, labels, label_weights, bbox_targets, bbox_weights)
        if not self._earl_soft_levels:
            return super().loss_by_feat_single(*args, avg_factor=avg_factor)
        soft = self._earl_soft_levels.pop(0)
        if soft.shape != labels.shape:
            raise RuntimeError(
                f'{type(self).__name__}: soft targets of shape {tuple(soft.shape)} for labels '
                f'of shape {tuple(labels.shape)}; levels out of order'
            )
        if is_sigmoid_focal(self.loss_cls):
            hook = functools.partial(soft_focal_hook, soft.reshape(-1))
            handle = self.loss_cls.register_forward_hook(hook, with_kwargs=True)
        else:
            hook = functools.partial(self._earl_soft_target_hook, soft.reshape(-1))
            handle = self.loss_cls.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            return super().loss_by_feat_single(*args, avg_factor=avg_factor)
        finally:
            handle.remove()

    def _earl_soft_target_hook(
        self, soft: Tensor, module: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a sigmoid ``CrossEntropyLoss``: labels -> one-hot target times
        q, weights expanded to the target's shape (CrossEntropyLoss needs them so)."""
        if len(args) != 3 or set(kwargs) - {'avg_factor'}:
            raise RuntimeError(
                f'{type(self).__name__}.loss_cls was called in an unexpected way; '
                "policy 'soft' supports AnchorHead.loss_by_feat_single of mmdet 3.3"
            )
        pred, labels, weight = args
        if labels.shape != soft.shape or pred.shape[0] != soft.shape[0] or pred.dim() != 2:
            raise RuntimeError(
                f'{type(self).__name__}.loss_cls: {tuple(pred.shape)} predictions and '
                f'{tuple(labels.shape)} labels for {soft.shape[0]} soft targets'
            )
        target = _soft_one_hot(labels, soft, pred)
        return (pred, target, weight.view(-1, 1).expand_as(target)), kwargs


def _soft_one_hot(labels: Tensor, q: Tensor, pred: Tensor) -> Tensor:
    """(N, C) target of ``pred`` (N, C): q at each row's class, 0 elsewhere (label C,
    the background, gives a row of zeros)."""
    num_classes = pred.shape[1]
    target = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(pred.dtype)
    return target * q.to(pred.dtype)[:, None]


def is_sigmoid_focal(loss_cls: nn.Module) -> bool:
    """Whether a loss module is mmdet 3.3's ``FocalLoss`` on logits (``use_sigmoid=True``,
    ``activated=False``); the exact type, since a subclass may change ``forward``."""
    return type(loss_cls) is FocalLoss and bool(loss_cls.use_sigmoid) and not loss_cls.activated


def soft_focal_forward(
    loss_cls: nn.Module,
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    avg_factor: float | None = None,
    reduction_override: str | None = None,
) -> Tensor:
    """What ``loss_cls(pred, target, ...)`` returns with the element loss
    :func:`~earl_mmdet.models.earl_weights.soft_focal_loss` in place of the focal loss.

    ``loss_cls`` is mmdet's sigmoid ``FocalLoss`` (:func:`is_sigmoid_focal`); its
    ``alpha``, ``gamma``, ``loss_weight`` and ``reduction`` apply as in
    ``FocalLoss.forward``: ``loss_weight * weight_reduce_loss(L * weight, reduction,
    avg_factor)`` (mmdet's ``weight_reduce_loss``). At a target in {0, 1} it equals
    ``loss_cls``.

    Args:
        loss_cls (nn.Module): the head's ``FocalLoss``.
        pred (Tensor): (N, C) logits.
        target (Tensor): (N, C) targets in [0, 1].
        weight (Tensor, optional): (N,) per-prior or (N, C) per-element weights.
        avg_factor (float, optional): the normaliser of ``reduction='mean'``.
        reduction_override (str, optional): ``'none'``, ``'mean'`` or ``'sum'``.

    Returns:
        Tensor: the loss, reduced as ``loss_cls`` reduces it.

    Raises:
        TypeError: if ``loss_cls`` is not a sigmoid ``FocalLoss`` on logits.
        ValueError: on shapes or a reduction ``FocalLoss`` would not take.
    """
    if not is_sigmoid_focal(loss_cls):
        raise TypeError(
            'soft_focal_forward needs an mmdet FocalLoss(use_sigmoid=True, activated=False), '
            f'got {type(loss_cls).__name__}'
        )
    if pred.dim() != 2 or target.shape != pred.shape:
        raise ValueError(
            f'soft_focal_forward: target of shape {tuple(target.shape)} for predictions of '
            f'shape {tuple(pred.shape)}; both must be (N, C)'
        )
    if reduction_override not in (None, 'none', 'mean', 'sum'):
        raise ValueError(f'soft_focal_forward: unknown reduction_override {reduction_override!r}')
    loss = soft_focal_loss(pred, target, alpha=loss_cls.alpha, gamma=loss_cls.gamma)
    if weight is not None and weight.shape != loss.shape:
        if weight.shape != loss.shape[:1]:
            raise ValueError(
                f'soft_focal_forward: weight of shape {tuple(weight.shape)} for a loss of '
                f'shape {tuple(loss.shape)}; it must be (N,) or (N, C)'
            )
        weight = weight.view(-1, 1)
    reduction = reduction_override if reduction_override else loss_cls.reduction
    return loss_cls.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


#: the parameters of mmdet's FocalLoss.forward, read once (the hook runs every level)
_FOCAL_FORWARD = inspect.signature(FocalLoss.forward)


def soft_focal_hook(
    q: Tensor, module: nn.Module, args: tuple, kwargs: dict, output: Tensor
) -> Tensor | None:
    """Forward hook (``with_kwargs=True``) of a sigmoid ``FocalLoss`` called with labels:
    its output replaced by :func:`soft_focal_forward` of the one-hot target times q.

    Bind the per-prior targets first: ``functools.partial(soft_focal_hook, q)``. While
    every q is 1 the output of mmdet's own focal loss is kept (None).

    Args:
        q (Tensor): (N,) target of each prior at its class (1 for the negatives).
        module (nn.Module): the ``FocalLoss``; args, kwargs: its call; output: its result.

    Raises:
        RuntimeError: if the call is not ``(pred (N, C), labels (N,), ...)``.
    """
    call = _FOCAL_FORWARD.bind(module, *args, **kwargs).arguments
    pred, labels = call['pred'], call['target']
    if labels.is_floating_point() or labels.shape != q.shape or pred.shape[:1] != q.shape:
        raise RuntimeError(
            f'{type(module).__name__} under policy soft was called with {tuple(pred.shape)} '
            f'predictions and {labels.dtype} target {tuple(labels.shape)}; expected (N, C) '
            f'and integer labels (N,) for N = {q.shape[0]} soft targets'
        )
    if not bool((q < 1).any()):
        return None
    del call['self']
    call['target'] = _soft_one_hot(labels, q, pred)
    return soft_focal_forward(module, **call)


def takes_soft_targets(loss_cls: nn.Module) -> bool:
    """Whether ``policy='soft'`` can train a classification loss module on soft targets.

    mmdet 3.3's ``FocalLoss`` on logits (:func:`is_sigmoid_focal`; under ``'soft'`` its
    output is :func:`soft_focal_forward`'s) and ``CrossEntropyLoss`` with
    ``use_sigmoid=True`` (per element BCE, which takes a one-hot float target of the
    prediction's shape as given); exact types only, since a subclass may change ``forward``.
    """
    if is_sigmoid_focal(loss_cls):
        return True
    if type(loss_cls) is CrossEntropyLoss:
        return bool(loss_cls.use_sigmoid)
    return False


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
            :class:`earl_mmdet.models.earl_weights.EARLConfig`: ``terms`` (subset of
            ``('cls', 'bbox')``, default both), ``scale`` (1.0; R for c = T/R), ``gamma``
            (1.0), ``floor`` (0.0), ``normalize`` (``'num_pos'``), ``policy``
            (``'earl'``, ``'soft'`` or ``'ignore'``, with ``ignore_below``, ``ignore_iof``,
            ``weight_kept``). Defaults to None (the paper's settings).
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
            :class:`earl_mmdet.models.earl_weights.EARLConfig` (terms ``cls``/``bbox``;
            policies ``'earl'``, ``'soft'``, ``'ignore'``). Defaults to None (the paper's
            settings).
        *args, **kwargs: arguments of :class:`mmdet.models.dense_heads.RPNHead`.

    Example:
        >>> # in a config based on mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py
        >>> model = dict(rpn_head=dict(type='EARLRPNHead', earl_cfg=dict()))
    """
