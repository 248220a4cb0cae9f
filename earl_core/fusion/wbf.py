"""The paper's rater fusion by weighted boxes fusion (WBF), and the ``wbf`` aggregator.

* :func:`fuse_raters`: the paper's truth inference for one image (Algorithm 1): one "model"
  per rater, every box score 1, per-rater weight = proficiency p_r; returns the fused boxes
  (:class:`~earl_core.structures.Detections`) with agreement T (distinct raters in the
  cluster), R (raters who read the image), the confidence c, and the membership of every
  fused box.
* :class:`WBFAggregator`: :func:`fuse_raters` behind the aggregator interface (``'wbf'``,
  the default aggregator of the package); its parameters are checked once, when it is
  built.

Both run the WBF engine of :mod:`earl_core.fusion.wbf_engine` (the algorithm, its
ensemble-boxes semantics and :func:`weighted_boxes_fusion`, re-exported here), and check
their parameters with its :func:`~earl_core.fusion.wbf_engine.check_wbf_params`. With
scores 1 all boxes tie on score, so the default ``tie_break='geometry'`` orders tied boxes
by their coordinates instead of numpy's argsort order, so that the result does not depend
on the order of the input (``tie_break='input'`` gives ensemble-boxes' boxes).

Differences from the authors' released code (github huyhieupham/learning-from-multiple-
annotators; see docs/aggregators.md): they call
``weighted_boxes_fusion(boxes, labels, scores, ...)``, i.e. labels and scores swapped, which
makes their fusion class-agnostic and gives NaN boxes for class 0. Here that call raises
``ValueError`` as soon as one label is > 1 (it is read as a score outside [0, 1]); only an
image whose labels are all 0 or 1 would pass unnoticed, its scores of 1 being valid
integral labels. They used ``iou_thr=0.5`` (the paper says IoU > 0.4, our default in
:func:`fuse_raters`), normalised coordinates by the largest coordinate in the image (not
needed here), and stored ``c = round(3 * score)``, which is the number of *boxes* in the
cluster capped at 3; :func:`fuse_raters` ``confidence='agreement'`` returns T = the number
of *distinct raters* in the cluster (equal unless one rater drew several boxes of one
object), and ``'agreement_ratio'`` (the default, the paper's c) divides by the raters who
actually read the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from earl_core.fusion.base import (
    Aggregator,
    agreement_confidence,
    check_number,
    register_aggregator,
    resolve_confidence,
)
from earl_core.fusion.wbf_engine import (
    CONF_TYPES,
    TIE_BREAKS,
    PreparedBoxes,
    WBFParams,
    check_wbf_params,
    fuse_prepared,
    prefilter,
    weighted_boxes_fusion,
)
from earl_core.structures import Detections

__all__ = [
    'CONF_TYPES',
    'TIE_BREAKS',
    'WBFAggregator',
    'fuse_raters',
    'weighted_boxes_fusion',
]

#: Confidence modes of :func:`fuse_raters` (see :mod:`earl_core.fusion.base`).
_CONFIDENCE_MODES = ('agreement', 'agreement_ratio', 'fused_score')


def _check_rater_weights(rater_weights: Any, where: str) -> dict[str, float] | None:
    """rater id (str) -> weight p_r, each a finite number > 0; None = all 1."""
    if rater_weights is None:
        return None
    if not isinstance(rater_weights, Mapping):
        raise ValueError(
            f'{where}: rater_weights must map rater id -> weight, got '
            f'{type(rater_weights).__name__}'
        )
    return {
        str(k): check_number(v, f'rater_weights[{k!r}]', where, 0, open_low=True)
        for k, v in rater_weights.items()
    }


def fuse_raters(
    ann: Detections,
    *,
    iou_thr: float = 0.4,
    skip_box_thr: float = 0.0,
    conf_type: str = 'avg',
    confidence: str | None = None,
    rater_weights: Mapping[str, float] | None = None,
    tie_break: str = 'geometry',
    score_mode: str | None = None,
) -> Detections:
    """Fuse several raters' boxes on one image by WBF, with agreement and membership.

    Each rater is one WBF "model" (models ordered as ``ann.raters``; a rater's boxes in
    input order), every box has score 1, and the model weight is the rater's proficiency
    p_r (the paper's Algorithm 1; 1 by default). R = ``len(ann.raters)`` counts every rater
    who read the image, also those who drew nothing, so it enters the WBF score and
    ``'agreement_ratio'``. Zero-area boxes are dropped (with a warning), as in
    :func:`weighted_boxes_fusion`; coordinates are not clipped.

    With equal weights every box ties on score, so WBF's processing order within a label
    is decided by the tie-break. ``tie_break='geometry'`` (default) orders tied boxes by
    their coordinates (x1, y1, x2, y2), which makes the result independent of the order of
    the boxes and of the raters' names (except when two raters drew the very same box
    with the same label) and of numpy's sort implementation. ``tie_break='input'``
    reproduces ensemble-boxes (numpy's argsort tie order over the boxes in model-major
    order), i.e. the boxes of :func:`weighted_boxes_fusion` with one list per rater in
    ``ann.raters`` order.

    Args:
        ann (Detections): the raters' boxes: boxes (N, 4) xyxy pixels, labels (N,), rater
            (N,), raters (every rater who read the image); validated when it was built.
        iou_thr (float): a box joins a cluster if IoU with its fused box > iou_thr, in
            [0, 1). Defaults to 0.4 (the paper).
        skip_box_thr (float): WBF score threshold, in [0, 1] (every score is 1, so it drops
            no box; a value above 1, which would drop all, is a ValueError). Defaults to 0.0.
        conf_type (str): WBF confidence type (:data:`CONF_TYPES`). Defaults to ``'avg'``.
        confidence (str | None): the confidence c: ``'agreement_ratio'`` = T / R (default,
            the paper's), ``'agreement'`` = T, ``'fused_score'`` = the fused WBF score
            (with ``'avg'`` and weights 1: min(n, R) / R, n = boxes in the cluster; it can
            exceed T / R, even 1 with unequal weights, when one rater has several boxes in
            a cluster).
        rater_weights (Mapping[str, float] | None): rater id -> weight p_r > 0; must cover
            every rater in ``ann.raters`` (extra keys are ignored). Defaults to None (all 1).
        tie_break (str): ``'geometry'`` or ``'input'`` (see above). Defaults to
            ``'geometry'``.
        score_mode (str | None): deprecated name of ``confidence`` (DeprecationWarning).

    Returns:
        Detections: the fused boxes: boxes (M, 4) float32 xyxy pixels, labels (M,) int64,
        confidence (M,) float32, agreement T (M,) int64 (distinct raters), num_raters R,
        members (indices into ``ann.boxes``, ascending) and member_raters (distinct raters,
        in ``ann.raters`` order), sorted by WBF score descending; rater -1; the raters,
        size and id of ``ann``.

    Raises:
        ValueError: naming the image, for missing or non-positive rater weights and unknown
            modes (the boxes themselves are checked by :class:`Detections`).

    Examples:
        >>> ann = Detections.from_raters(
        ...     boxes=np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], float),
        ...     labels=np.array([1, 1, 1]), rater_ids=np.array(['a', 'b', 'b']),
        ...     raters=('a', 'b', 'c'))
        >>> res = fuse_raters(ann)
        >>> res.boxes.tolist(), res.agreement.tolist()
        ([[1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0]], [2, 1])
        >>> res.confidence  # T / R
        array([0.6666667 , 0.33333334], dtype=float32)
        >>> [m.tolist() for m in res.members], res.member_raters
        ([[0, 1], [2]], [('a', 'b'), ('b',)])
    """
    params = check_wbf_params(iou_thr, skip_box_thr, conf_type, tie_break, where='fuse_raters')
    mode = resolve_confidence(
        confidence, score_mode, _CONFIDENCE_MODES, 'agreement_ratio', 'fuse_raters'
    )
    return _fuse_raters(ann, params, mode, _check_rater_weights(rater_weights, 'fuse_raters'))


def _fuse_raters(
    ann: Detections, params: WBFParams, mode: str, rater_weights: dict[str, float] | None
) -> Detections:
    """:func:`fuse_raters` with checked parameters (:func:`check_wbf_params`, a confidence
    mode, checked rater weights)."""
    image_id = ann.image_id
    raters = ann.raters
    num_raters = len(raters)
    if rater_weights is None:
        weights = None
    else:
        missing = [r for r in raters if r not in rater_weights]
        if missing:
            raise ValueError(
                f'image {image_id!r}: rater_weights has no weight for rater {missing[0]!r}'
            )
        weights = np.array([rater_weights[r] for r in raters], np.float64)
    n = len(ann)
    if n == 0:  # (every score is 1, so skip_box_thr in [0, 1] drops no box)
        return Detections.empty(num_raters, ann)
    models = ann.rater_index.tolist()  # each box's rater: its position in ann.raters
    # 'input': model-major order, as one list per rater in ann.raters order. 'geometry'
    # does not depend on the input order (the tie-break sorts by coordinates).
    geometric = params.tie_break == 'geometry'
    order = range(n) if geometric else sorted(range(n), key=models.__getitem__)
    prep = prefilter(
        ann.boxes.tolist(),
        None,  # every score is 1
        None,
        ann.labels.tolist(),
        models,
        [1.0] * num_raters if weights is None else weights.tolist(),
        False,
        order,
        lambda i: f'image {image_id!r}: box {i}',
    )
    if not prep.box:
        return Detections.empty(num_raters, ann)
    recs = fuse_prepared(prep, num_raters, weights, params)
    return _fused_boxes(recs, prep, ann, mode)


def _fused_boxes(
    recs: list[tuple[float, int, Any, list[int]]],
    prep: PreparedBoxes,
    ann: Detections,
    mode: str,
) -> Detections:
    """:func:`fuse_prepared`'s records as fused :class:`Detections` with T, members and c."""
    src, model, raters = prep.src, prep.model, ann.raters
    flat: list[int] = []
    bounds = [0]
    member_raters = []
    agreement = []
    for rec in recs:
        mem = rec[3]
        if len(mem) == 1:
            flat.append(src[mem[0]])
            member_raters.append((raters[model[mem[0]]],))
            agreement.append(1)
        else:
            flat.extend(sorted([src[m] for m in mem]))
            present = sorted({model[m] for m in mem})
            member_raters.append(tuple([raters[q] for q in present]))
            agreement.append(len(present))
        bounds.append(len(flat))
    flat_arr = np.array(flat, dtype=np.int64)
    agr = np.array(agreement, dtype=np.int64)
    if mode == 'fused_score':  # WBF's own score (with weights p_r, not min(T, R) / R)
        confidence = np.array([-r[0] for r in recs], dtype=np.float32)
    else:
        confidence = agreement_confidence(agr, len(raters), mode).astype(np.float32)
    return Detections.fused(
        boxes=np.array([r[2] for r in recs], dtype=np.float32),
        labels=np.array([r[1] for r in recs], dtype=np.int64),
        confidence=confidence,
        agreement=agr,
        num_raters=len(raters),
        members=[flat_arr[bounds[q] : bounds[q + 1]] for q in range(len(recs))],
        member_raters=member_raters,
        image=ann,
        validate=False,  # weighted means of checked boxes (weights > 0, |coordinates| < 1e30)
    )


@register_aggregator('wbf')
class WBFAggregator(Aggregator):
    """The paper's truth inference: WBF over one list per rater, scores 1.

    Runs :func:`fuse_raters` on each image (label-wise clusters, IoU > ``iou_thr``; T =
    distinct raters in the cluster), with the parameters checked once, when it is built.

    Args:
        iou_thr (float): WBF IoU threshold (strict), in [0, 1). Defaults to 0.4 (the paper).
        skip_box_thr (float): WBF score threshold, in [0, 1]. Defaults to 0.0.
        conf_type (str): WBF confidence type. Defaults to 'avg'.
        rater_weights (Mapping[str, float] | None): per-rater weight, the proficiency p_r
            of Algorithm 1; it must cover every rater of every image. None = all 1.
        tie_break (str): order of equal-score boxes, ``'geometry'`` (default: independent
            of box and rater order) or ``'input'`` (ensemble-boxes' order).
        confidence (str | None): ``'agreement_ratio'`` (T/R, default, the paper's c),
            ``'agreement'`` (T, as the authors' code) or ``'fused_score'`` (the fused WBF
            score).
        score_mode (str | None): deprecated name of ``confidence``.
    """

    param_names = ('iou_thr', 'skip_box_thr', 'conf_type', 'rater_weights', 'tie_break')

    def __init__(
        self,
        iou_thr: float = 0.4,
        skip_box_thr: float = 0.0,
        conf_type: str = 'avg',
        rater_weights: Mapping[str, float] | None = None,
        tie_break: str = 'geometry',
        confidence: str | None = None,
        score_mode: str | None = None,
    ) -> None:
        super().__init__(confidence, score_mode)
        where = "aggregator 'wbf'"
        self._params = check_wbf_params(iou_thr, skip_box_thr, conf_type, tie_break, where=where)
        self.rater_weights = _check_rater_weights(rater_weights, where)

    # The checked parameters, read-only: they were checked once, here.
    iou_thr = property(lambda self: self._params.iou_thr)
    skip_box_thr = property(lambda self: self._params.skip_box_thr)
    conf_type = property(lambda self: self._params.conf_type)
    tie_break = property(lambda self: self._params.tie_break)

    def __call__(self, image: Detections) -> Detections:
        return _fuse_raters(image, self._params, self.confidence, self.rater_weights)
