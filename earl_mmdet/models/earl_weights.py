"""EARL loss weights: per-box confidence -> per-box loss weight, and loss normalisers.

Pure torch (no mmdet / mmengine), so a YOLO fork or a Kaggle notebook can reuse it.

EARL (Pham et al., eq. (2)) multiplies the classification and localisation losses of every
prior assigned to a ground-truth box by that box's confidence ``c`` (by default the raters'
agreement ratio T/R; see the fusion's ``confidence=`` modes). This module holds every piece
of the weighting the EARL heads share:

* :class:`EARLConfig` - the options, validated once (same keys for every head and hook);
* :func:`confidence_to_weight` - ``w = max(floor, (c / scale) ** gamma)``;
* :func:`box_weights` - one image's ``gt_instances.confidence`` (read by duck typing,
  checked) -> per-box weights, or None when the boxes carry no confidence;
* :func:`scale_rows`, :func:`prior_weights`, :func:`inside_to_full_index` - put the
  per-box weights on the positive priors' rows of mmdet's targets;
* :func:`weight_sum_normalizer` - the ``normalize='weight_sum'`` loss normaliser;
* :func:`soft_focal_loss` - the sigmoid focal loss of ``policy='soft'``, calibrated to a
  soft target.

The model-side files of the package (``earl_mmdet/models``) call these from mmdet's heads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'EARL_TERMS',
    'EARL_NORMALIZE',
    'EARL_POLICIES',
    'EARLConfig',
    'box_confidence',
    'box_weights',
    'boxes_in_regions',
    'confidence_to_weight',
    'inside_to_full_index',
    'points_in_regions',
    'prior_weights',
    'scale_rows',
    'soft_focal_loss',
    'soft_targets',
    'split_ignored',
    'weight_sum_normalizer',
]

#: Loss terms EARL may weight: classification, box regression (incl. YOLOX's L1 term),
#: objectness (YOLOX only).
EARL_TERMS = ('cls', 'bbox', 'obj')
#: Loss normalisations: ``num_pos`` = mmdet's (mean over positives), ``weight_sum`` = the
#: positives' count in the normaliser is replaced by the sum of their weights.
EARL_NORMALIZE = ('num_pos', 'weight_sum')
#: Loss policies (how c enters the loss; equations in ``docs/earl_heads.md``):
#: ``earl`` - the paper's eq. (2), the positives' losses of a box multiplied by its weight w;
#: ``soft`` - the positives' classification target is q = min(1, w) instead of 1 (the other
#: weighted terms are multiplied by w as under ``earl``);
#: ``ignore`` - boxes with c / scale < ``ignore_below`` become ignore regions (their priors
#: are neither positive nor negative); the kept boxes weigh 1 (or w with ``weight_kept``).
EARL_POLICIES = ('earl', 'soft', 'ignore')


@dataclass(frozen=True)
class EARLConfig:
    """Options of the EARL loss weighting (defaults reproduce the paper).

    Args:
        terms (tuple[str, ...]): loss terms multiplied by the weight of the assigned box,
            a subset of ``('cls', 'bbox', 'obj')``. ``bbox`` covers every box-regression
            term (YOLOX's IoU and L1 losses). Defaults to ``('cls', 'bbox')``: the paper's
            eq. (2) and the authors' YOLOv5 code (objectness not weighted).
        scale (float): divide the confidence by this before the power; ``scale=R`` turns
            an agreement count T into the fraction T/R. Must be > 0. Defaults to 1.0.
        gamma (float): power applied to ``c / scale``; 1 is the paper, > 1 sharpens,
            0 switches weighting off (every weight 1). Must be >= 0. Defaults to 1.0.
        floor (float): lower bound of the weight, so that no box is silenced entirely.
            Must be >= 0. Defaults to 0.0 (a c = 0 box contributes no positive loss).
        normalize (str): ``'num_pos'`` keeps mmdet's normaliser (number of positives,
            i.e. the weighted losses are averaged over positives as in the paper and the
            authors' code); ``'weight_sum'`` divides by the sum of the positives' weights
            instead (a weighted mean, invariant to a global rescaling of c), clamped
            below at 1 like mmdet clamps the positive count. Defaults to ``'num_pos'``.
        policy (str): how c enters the loss, one of :data:`EARL_POLICIES`: ``'earl'``
            (the paper), ``'soft'`` (soft classification target q = min(1, w)) or
            ``'ignore'`` (uncertain boxes become ignore regions). Defaults to ``'earl'``.
        ignore_below (float): with ``policy='ignore'``, a box whose ``c / scale`` is below
            this is an ignore region (c = T/R, R = 3: 0.5 ignores the boxes one rater drew).
            In [0, 1]; 0 ignores nothing. Defaults to 0.5.
        ignore_iof (float): with ``policy='ignore'``, a prior box lies in an ignore region
            when the intersection with it covers at least this fraction of the prior's area
            (a point prior: when the point is inside). In (0, 1]. Defaults to 0.5.
        weight_kept (bool): with ``policy='ignore'``, also weight the kept boxes' positives
            by w as under ``'earl'``. Defaults to False (kept boxes weigh 1).
    """

    terms: tuple[str, ...] = ('cls', 'bbox')
    scale: float = 1.0
    gamma: float = 1.0
    floor: float = 0.0
    normalize: str = 'num_pos'
    policy: str = 'earl'
    ignore_below: float = 0.5
    ignore_iof: float = 0.5
    weight_kept: bool = False

    def __post_init__(self) -> None:
        terms = self.terms
        if isinstance(terms, str) or not isinstance(terms, Iterable):
            raise TypeError(f'earl_cfg.terms must be a sequence of str, got {terms!r}')
        terms = tuple(terms)
        unknown = [t for t in terms if t not in EARL_TERMS]
        if unknown:
            raise ValueError(f'earl_cfg.terms has unknown term(s) {unknown}; allowed: {EARL_TERMS}')
        if len(set(terms)) != len(terms):
            raise ValueError(f'earl_cfg.terms has duplicates: {terms}')
        object.__setattr__(self, 'terms', terms)
        for name, low, strict in (
            ('scale', 0.0, True),
            ('gamma', 0.0, False),
            ('floor', 0.0, False),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f'earl_cfg.{name} must be a number, got {value!r}')
            if not math.isfinite(value) or value < low or (strict and value == low):
                bound = '> 0' if strict else '>= 0'
                raise ValueError(f'earl_cfg.{name} must be finite and {bound}, got {value!r}')
            object.__setattr__(self, name, float(value))
        if self.normalize not in EARL_NORMALIZE:
            raise ValueError(
                f'earl_cfg.normalize must be one of {EARL_NORMALIZE}, got {self.normalize!r}'
            )
        if self.policy not in EARL_POLICIES:
            raise ValueError(f'earl_cfg.policy must be one of {EARL_POLICIES}, got {self.policy!r}')
        for name, low, low_open in (('ignore_below', 0.0, False), ('ignore_iof', 0.0, True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f'earl_cfg.{name} must be a number, got {value!r}')
            if not (low < value <= 1.0 if low_open else low <= value <= 1.0):
                bound = '(0, 1]' if low_open else '[0, 1]'
                raise ValueError(f'earl_cfg.{name} must be in {bound}, got {value!r}')
            object.__setattr__(self, name, float(value))
        if not isinstance(self.weight_kept, bool):
            raise TypeError(f'earl_cfg.weight_kept must be a bool, got {self.weight_kept!r}')

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | EARLConfig | None) -> EARLConfig:
        """Build from a config dict (``None`` or ``{}`` gives the paper's defaults).

        Raises:
            ValueError: on an unknown key, naming it and the allowed keys.
        """
        if cfg is None:
            return cls()
        if isinstance(cfg, EARLConfig):
            return cfg
        if not isinstance(cfg, Mapping):
            raise TypeError(f'earl_cfg must be a dict or None, got {type(cfg).__name__}')
        allowed = tuple(f.name for f in fields(cls))
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(f'earl_cfg has unknown key(s) {unknown}; allowed: {allowed}')
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the options (for logs and configs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def confidence_to_weight(
    confidence: Tensor, scale: float = 1.0, gamma: float = 1.0, floor: float = 0.0
) -> Tensor:
    """Map per-box confidence to EARL loss weights ``max(floor, (c / scale) ** gamma)``.

    Args:
        confidence (Tensor): (N,) confidence c of each box (>= 0, finite), e.g. the
            agreement ratio T/R, the agreement T or WBF's fused score.
        scale (float): divisor of c (R turns T into T/R). Defaults to 1.0.
        gamma (float): power. Defaults to 1.0.
        floor (float): lower bound of the weight. Defaults to 0.0.

    Returns:
        Tensor: (N,) float weights, same dtype (float32 if c is not floating) and device.

    Raises:
        ValueError: if a confidence is negative or not finite (naming the first one).

    Examples:
        >>> confidence_to_weight(torch.tensor([1.0, 2.0, 3.0]), scale=3.0)
        tensor([0.3333, 0.6667, 1.0000])
        >>> confidence_to_weight(torch.tensor([0.0, 0.5]), gamma=2.0, floor=0.1)
        tensor([0.1000, 0.2500])
    """
    return _weights(_checked(confidence), scale, gamma, floor)


def _checked(confidence: Tensor) -> Tensor:
    """``confidence`` as a floating tensor; raise on a negative or non-finite value."""
    if not confidence.is_floating_point():
        confidence = confidence.float()
    bad = ~torch.isfinite(confidence) | (confidence < 0)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f'box confidence must be finite and >= 0; box {i} has {float(confidence[i])!r}'
        )
    return confidence


def _weights(confidence: Tensor, scale: float, gamma: float, floor: float) -> Tensor:
    """``max(floor, (c / scale) ** gamma)`` of an already checked confidence."""
    weights = confidence / scale
    if gamma != 1.0:
        weights = weights.pow(gamma)
    if floor > 0.0:
        weights = weights.clamp(min=floor)
    return weights


def box_confidence(gt_instances: Any) -> Tensor | None:
    """One image's ``gt_instances.confidence``, checked, or ``None`` when absent.

    Reads the field by duck typing (mmengine's ``InstanceData`` or any object with
    ``confidence``, ``bboxes`` and ``len()``).

    Returns:
        Tensor | None: (N,) confidence on the device of ``gt_instances.bboxes``.

    Raises:
        TypeError: if ``confidence`` is not a torch.Tensor.
        ValueError: if it has a shape other than (N,), or a negative / non-finite value,
            or if the boxes carry the field under its old name ``confidences``.
    """
    confidence = getattr(gt_instances, 'confidence', None)
    if confidence is None:
        if hasattr(gt_instances, 'confidences'):  # the name before 'confidence'
            raise ValueError(
                "gt_instances has 'confidences', the old name of 'confidence'; pack c as "
                'gt_instances.confidence (PackMultiRaterInputs does), or every box would '
                'silently weigh 1'
            )
        return None
    if not isinstance(confidence, Tensor):
        raise TypeError(
            f'gt_instances.confidence must be a torch.Tensor, got {type(confidence).__name__}'
        )
    num_boxes = len(gt_instances)
    if confidence.dim() != 1 or confidence.shape[0] != num_boxes:
        raise ValueError(
            f'gt_instances.confidence must have shape ({num_boxes},) (one per gt box), '
            f'got {tuple(confidence.shape)}'
        )
    return _checked(confidence.to(gt_instances.bboxes.device))


def box_weights(gt_instances: Any, cfg: EARLConfig) -> Tensor | None:
    """Per-box EARL weights of one image's gt boxes, or ``None`` when every box weighs 1.

    Reads ``gt_instances.confidence`` (:func:`box_confidence`) and maps it as
    :func:`confidence_to_weight` does, with ``cfg``'s options. Under ``policy='ignore'`` without
    ``weight_kept`` the (kept) boxes weigh 1.

    Args:
        gt_instances (Any): one image's gt boxes; ``confidence`` (Tensor (N,)) is optional
            (absent: plain data, every box weighs 1).
        cfg (EARLConfig): the weighting options.

    Returns:
        Tensor | None: (N,) weights on the device of ``gt_instances.bboxes``, or None if
        the boxes carry no confidence or the policy does not weight them.

    Raises:
        TypeError, ValueError: as :func:`box_confidence`.
    """
    confidence = box_confidence(gt_instances)
    if confidence is None or (cfg.policy == 'ignore' and not cfg.weight_kept):
        return None
    return _weights(confidence, cfg.scale, cfg.gamma, cfg.floor)  # checked once, above


def soft_targets(weights: Tensor) -> Tensor:
    """``policy='soft'``: the classification target q = min(1, w) of each box's positives.

    Examples:
        >>> soft_targets(torch.tensor([0.5, 1.0, 2.0]))
        tensor([0.5000, 1.0000, 1.0000])
    """
    return weights.clamp(max=1.0)


def soft_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Element-wise sigmoid focal loss for soft targets (alpha-weighted quality focal loss).

    ``policy='soft'`` trains a positive towards ``q = min(1, w)`` in its class's column.
    The focal loss of Lin et al. on a float target,
    ``BCE(p, t) * (alpha t + (1 - alpha)(1 - t)) * ((1 - p) t + p (1 - t)) ** gamma``
    (what mmdet's ``FocalLoss`` computes for a target of the prediction's shape), is not
    minimised at ``p = t`` for ``0 < t < 1``: it pushes scores away from 0.5. This loss
    takes the modulating factor of the quality focal loss (Li et al., GFL) instead:

    ``L(x, t) = BCE(p, t) * |t - p| ** gamma * (alpha t + (1 - alpha)(1 - t))``,
    ``p = sigmoid(x)``,

    with ``BCE(p, t) = -(t log p + (1 - t) log(1 - p))``. For ``t = 1`` it is
    ``alpha (1 - p) ** gamma (-log p)`` and for ``t = 0`` it is
    ``(1 - alpha) p ** gamma (-log(1 - p))``: the focal loss, element for element. For
    ``0 < t < 1`` the balance term does not depend on p and ``|t - p| ** gamma`` is 0 at
    ``p = t``, so the loss is minimised (at 0) exactly where the score equals the target.
    The balance is the focal loss's own, linear in t, so the loss is continuous in t: a box
    of q = 0.01 is trained almost like background (a step ``alpha if t > 0`` would weigh
    its class column 3x less than q = 0's).

    Args:
        logits (Tensor): raw scores x (before the sigmoid), any shape.
        targets (Tensor): targets t in [0, 1], the shape of ``logits``.
        alpha (float): balance weight of the target 1 (``1 - alpha`` for 0, linear in
            between). Defaults to 0.25 (mmdet's ``FocalLoss``).
        gamma (float): power of ``|t - p|``, >= 0. Defaults to 2.0.

    Returns:
        Tensor: the element-wise loss, the shape and dtype of ``logits`` (no reduction).

    Examples:
        >>> x = torch.tensor([0.0, 0.0, 0.0])
        >>> soft_focal_loss(x, torch.tensor([1.0, 0.5, 0.0]))  # p = 0.5
        tensor([0.0433, 0.0000, 0.1300])
        >>> soft_focal_loss(x[:1], torch.tensor([0.01]))  # close to t = 0's
        tensor([0.1240])
    """
    targets = targets.type_as(logits)
    prob = logits.sigmoid()
    balance = alpha * targets + (1 - alpha) * (1 - targets)
    # as mmdet's py_sigmoid_focal_loss groups it: BCE * (balance * modulating factor)
    focal_weight = balance * (targets - prob).abs().pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction='none') * focal_weight


def split_ignored(gt_instances: Any, cfg: EARLConfig) -> tuple[Any, Tensor | None]:
    """``policy='ignore'``: the boxes kept as ground truth, and the ignore regions.

    A box whose ``c / scale`` is below ``cfg.ignore_below`` becomes an ignore region.

    Args:
        gt_instances (Any): one image's gt boxes (``InstanceData``: boolean indexing keeps
            every field aligned); ``confidence`` optional.
        cfg (EARLConfig): the options.

    Returns:
        tuple[Any, Tensor | None]: ``(kept, regions)``: ``gt_instances`` itself and None
        when the policy is not ``'ignore'``, the boxes carry no confidence or none is
        ignored; otherwise the kept boxes and the (K, 4) ignored boxes.
    """
    if cfg.policy != 'ignore':
        return gt_instances, None
    confidence = box_confidence(gt_instances)
    if confidence is None:
        return gt_instances, None
    ignored = confidence / cfg.scale < cfg.ignore_below
    if not bool(ignored.any()):
        return gt_instances, None
    return gt_instances[~ignored], gt_instances.bboxes[ignored]


def boxes_in_regions(boxes: Tensor, regions: Tensor | None, iof_thr: float) -> Tensor:
    """Which prior boxes lie in an ignore region: intersection / prior area >= ``iof_thr``.

    Args:
        boxes (Tensor): (P, 4) prior boxes, x1 y1 x2 y2.
        regions (Tensor | None): (K, 4) ignore regions, x1 y1 x2 y2 (None: no region).
        iof_thr (float): in (0, 1].

    Returns:
        Tensor: (P,) bool.

    Examples:
        >>> boxes_in_regions(torch.tensor([[0., 0, 2, 2], [4, 4, 6, 6]]),
        ...                  torch.tensor([[1., 0, 10, 2]]), 0.5)
        tensor([ True, False])
    """
    if regions is None or regions.numel() == 0 or boxes.numel() == 0:
        return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    regions = regions.to(boxes)
    lt = torch.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:4], regions[None, :, 2:4])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area = (boxes[:, 2:4] - boxes[:, :2]).clamp(min=0).prod(dim=-1)
    # an empty prior lies in a region when its corner does (inter = 0 = area)
    return (inter >= iof_thr * area[:, None]).any(dim=1) & (
        (area > 0) | points_in_regions(boxes[:, :2], regions)
    )


def points_in_regions(points: Tensor, regions: Tensor | None) -> Tensor:
    """Which point priors (x, y) lie inside an ignore region (borders included).

    Args:
        points (Tensor): (P, 2+) priors; the first two columns are x, y (YOLOX / RTMDet
            priors are (x, y, stride_w, stride_h)).
        regions (Tensor | None): (K, 4) ignore regions, x1 y1 x2 y2 (None: no region).

    Returns:
        Tensor: (P,) bool.

    Examples:
        >>> points_in_regions(torch.tensor([[1., 1], [5, 5]]), torch.tensor([[0., 0, 2, 2]]))
        tensor([ True, False])
    """
    if regions is None or regions.numel() == 0 or points.numel() == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    regions = regions.to(points)
    x, y = points[:, 0:1], points[:, 1:2]
    inside = (
        (x >= regions[None, :, 0])
        & (x <= regions[None, :, 2])
        & (y >= regions[None, :, 1])
        & (y <= regions[None, :, 3])
    )
    return inside.any(dim=1)


def scale_rows(weights: Tensor, rows: Tensor | slice, row_weights: Tensor) -> Tensor:
    """A copy of a loss-weight tensor with the given rows multiplied by per-row weights.

    mmdet's targets hold one row of ``label_weights`` (P,) or ``bbox_weights`` (P, 4) per
    prior; EARL multiplies each positive prior's row by the weight of its assigned gt box.

    Args:
        weights (Tensor): (P, ...) loss weights (left unchanged).
        rows (Tensor | slice): the K positive rows (indices or a slice).
        row_weights (Tensor): (K,) their weights, broadcast over the trailing dimensions.

    Returns:
        Tensor: (P, ...) weights, ``rows`` scaled, in ``weights``' dtype.

    Examples:
        >>> scale_rows(torch.ones(3, 2), torch.tensor([2]), torch.tensor([0.5]))
        tensor([[1.0000, 1.0000],
                [1.0000, 1.0000],
                [0.5000, 0.5000]])
    """
    out = weights.clone()
    factor = row_weights.to(out.dtype)
    out[rows] *= factor.view(-1, *([1] * (out.dim() - 1)))
    return out


def prior_weights(num_priors: int, pos_inds: Tensor, pos_weights: Tensor) -> Tensor:
    """Weights of every prior: 1 for negatives, their gt box's weight for positives.

    Args:
        num_priors (int): P, number of priors of the image.
        pos_inds (Tensor): (K,) long indices of the positive priors.
        pos_weights (Tensor): (K,) weight of each positive's assigned gt box.

    Returns:
        Tensor: (P,) weights in ``pos_weights``' dtype and device.

    Examples:
        >>> prior_weights(4, torch.tensor([1, 3]), torch.tensor([0.5, 0.25]))
        tensor([1.0000, 0.5000, 1.0000, 0.2500])
    """
    out = pos_weights.new_ones(num_priors)
    out[pos_inds] = pos_weights
    return out


def inside_to_full_index(inside_flags: Tensor, inside_inds: Tensor) -> Tensor:
    """Map indices into the *inside* subset of priors back to indices into all priors.

    mmdet's anchor heads assign only the anchors inside the image (``inside_flags``), so
    a sampling result's ``pos_inds`` index ``anchors[inside_flags]``, not all anchors.

    Args:
        inside_flags (Tensor): (A,) bool, which of the A priors were assigned.
        inside_inds (Tensor): (P,) long indices into the ``inside_flags.sum()`` inside priors.

    Returns:
        Tensor: (P,) long indices into the A priors.

    Examples:
        >>> inside_to_full_index(torch.tensor([False, True, False, True]), torch.tensor([1]))
        tensor([3])
    """
    return inside_flags.nonzero(as_tuple=False).view(-1)[inside_inds]


def weight_sum_normalizer(
    count_normalizer: float, num_counted_pos: float, pos_weight_sum: float, minimum: float = 1.0
) -> float:
    """Replace the positives' count in a loss normaliser by the sum of their weights.

    mmdet normalises a head's losses by a count (``avg_factor``): the number of positives,
    plus the sampled negatives when the sampler counts them (RPN). With ``weight_sum``
    normalisation, each positive counts with its weight instead of 1.

    Args:
        count_normalizer (float): mmdet's normaliser.
        num_counted_pos (float): how many positives it counted.
        pos_weight_sum (float): sum of those positives' EARL weights.
        minimum (float): lower clamp (mmdet clamps the count at 1). Defaults to 1.0.

    Returns:
        float: ``max(minimum, count_normalizer - num_counted_pos + pos_weight_sum)``.

    Examples:
        >>> weight_sum_normalizer(6.0, 6.0, 2.5)
        2.5
        >>> weight_sum_normalizer(6.0, 6.0, 0.0)
        1.0
    """
    return max(
        float(minimum), float(count_normalizer) - float(num_counted_pos) + float(pos_weight_sum)
    )
