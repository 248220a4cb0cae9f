"""The weighted boxes fusion (WBF) engine: ensemble-boxes' algorithm and its parameter check.

:func:`weighted_boxes_fusion` is a drop-in for ``ensemble_boxes.weighted_boxes_fusion``
1.0.9 (same signature, argument order and results within 1e-6 on normalised input, every
``conf_type``) that also takes pixel coordinates and raises on bad input. The rater fusion
(:func:`earl_core.fusion.wbf.fuse_raters`) runs the same steps, :func:`prefilter` then
:func:`fuse_prepared` (which records the input boxes of each fused box), and its
parameters go through the same check, :func:`check_wbf_params`.

The algorithm (ensemble-boxes semantics, replicated on purpose because they change results):

1. Pre-filter, per box in input order (model 0's boxes, then model 1's, ...): drop it if
   ``score < skip_box_thr`` (strict, so a score equal to the threshold stays; compared in
   the scores' dtype, as ensemble-boxes); swap x1/x2 (y1/y2) when x2 < x1; drop it if
   ``(x2 - x1) * (y2 - y1) == 0``. Each kept box carries ``s * w`` (score times its
   model's weight).
2. Per label, in order of first appearance: order the boxes by ``s * w`` descending as
   ensemble-boxes does (``np.argsort(...)[::-1]`` over the boxes in input order, so exact
   ties come out in numpy's argsort order; with distinct values that is plain descending
   order).
3. Greedy clustering: each box joins the existing cluster whose *current fused box* has the
   highest IoU with it, if that IoU is strictly greater than ``iou_thr`` (the first such
   cluster on an exact IoU tie); otherwise it starts a new cluster. Boxes of one model may
   join one cluster several times.
4. Fused box of a cluster: sum(s_i w_i box_i) / sum(s_i w_i) (a one-box cluster keeps its
   box), and this box is what later boxes are matched against.
5. Cluster score, with M models, weights w, n = boxes in the cluster (not distinct models),
   ``mean`` = mean of s_i w_i, ``first`` = max of s_i w_i, ``wsum`` = sum of the members'
   w_i:

   * ``avg``: mean * min(M, n) / sum(w); with ``allows_overflow=True``: mean * n / sum(w)
     (> 1 possible when one model puts several boxes in a cluster, ensemble-boxes #40);
   * ``max``: first / max(w);
   * ``box_and_model_avg``: mean * n / wsum * sum(w of the distinct models) / sum(w);
   * ``absent_model_aware_avg``: mean * n / (wsum + sum(w of the absent models)).
6. Output: all labels' fused boxes in (label, creation) order, then sorted by score
   descending with ``np.argsort(...)[::-1]`` (ties in numpy's order, as ensemble-boxes).

Where :func:`weighted_boxes_fusion` differs from ensemble-boxes 1.0.9 on purpose:

* Fused boxes and scores are computed in float64; ensemble-boxes accumulates the fused box
  in a float32 array. Coordinates and scores therefore differ by about 1e-7 (relative),
  and a matching decision can differ only when an IoU lies that close to ``iou_thr``.
* Coordinates are never clipped unless ``clip=True``. WBF is scale-invariant (IoU, weighted
  means and the zero-area test do not depend on the unit), so pixel boxes fuse as the same
  boxes divided by the image size; ensemble-boxes instead clips to [0, 1] with a warning,
  which collapses pixel boxes. There is no auto-detection: on input inside [0, 1] clipping
  changes nothing, and ``clip=True`` reproduces ensemble-boxes on normalised input that
  leaks slightly outside [0, 1].
* Bad input raises ``ValueError`` naming the model and box: list lengths that differ, boxes
  not (N, 4), NaN/inf, scores outside [0, 1], non-integral labels, weights that are not
  finite and > 0 or of the wrong length (ensemble-boxes prints and calls ``exit()``, or
  resets the weights to 1), unknown ``conf_type``, ``iou_thr`` outside [0, 1) (the range
  of every IoU threshold of the package). Scores and labels checks catch swapped
  arguments, except when every label is 0 or 1 and every score is exactly 0 or 1.
* A cluster whose boxes all have score 0 (possible only with ``skip_box_thr=0``) gets the
  plain mean of its boxes; ensemble-boxes divides by zero and returns NaN coordinates.
* One warning per call (not per box) for swapped corners and for dropped zero-area boxes.
* Never prints, never exits, does not import numba.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from earl_core.boxes import paired_box_iou
from earl_core.fusion.base import check_iou_thr, check_number

__all__ = [
    'CONF_TYPES',
    'TIE_BREAKS',
    'PreparedBoxes',
    'WBFParams',
    'check_wbf_params',
    'fuse_prepared',
    'prefilter',
    'weighted_boxes_fusion',
]

#: ``conf_type`` values of ensemble-boxes' ``weighted_boxes_fusion``.
CONF_TYPES = ('avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg')
#: Orders of equal-score boxes (``params.tie_break`` of :func:`fuse_prepared`).
TIE_BREAKS = ('geometry', 'input')

# Coordinates beyond this are rejected: areas of such boxes overflow, and they are no pixels.
_COORD_LIMIT = 1e30
# Clusters of one label from which a new box's IoU against every current fused box is
# computed with paired_box_iou instead of the Python loop of _cluster. Measured
# (2-core x86-64, numpy 2.4): the loop takes 0.6 us for 1 cluster, 2 us for 8, 7 us for
# 24, 14 us for 48; one numpy call 17-19 us whatever the count. Annotated images have a
# few clusters per label, so the loop is what runs.
_VECTOR_MIN_CLUSTERS = 48
# numpy's argsort permutation of an all-equal array of length n, reversed (computed once
# per n by numpy itself, so it is whatever ensemble-boxes gets on this machine).
_TIE_PERMS: dict[int, list[int]] = {}


# ---------------------------------------------------------------------------- validation
class WBFParams(NamedTuple):
    """WBF's parameters, checked by :func:`check_wbf_params`."""

    iou_thr: float
    skip_box_thr: float
    conf_type: str
    tie_break: str


def check_wbf_params(
    iou_thr: Any, skip_box_thr: Any, conf_type: Any, tie_break: Any = 'input', *, where: str
) -> WBFParams:
    """The one check of WBF's parameters, for :func:`weighted_boxes_fusion`, ``fuse_raters``
    and the ``wbf`` aggregator: a ValueError names ``where``, the parameter and the value.

    Args:
        iou_thr (Any): in [0, 1) (:func:`~earl_core.fusion.base.check_iou_thr`).
        skip_box_thr (Any): a finite number in [0, 1]: scores lie in [0, 1] (rater boxes
            score 1), so a larger threshold would drop every box without a word.
        conf_type (Any): one of :data:`CONF_TYPES`.
        tie_break (Any): one of :data:`TIE_BREAKS`. Defaults to ``'input'``.
        where (str): the caller, e.g. ``"aggregator 'wbf'"``.

    Returns:
        WBFParams: the parameters, numbers as float.

    Examples:
        >>> check_wbf_params(0.4, 0, 'avg', where='example')
        WBFParams(iou_thr=0.4, skip_box_thr=0.0, conf_type='avg', tie_break='input')
    """
    if conf_type not in CONF_TYPES:
        raise ValueError(f'{where}: conf_type must be one of {CONF_TYPES}, got {conf_type!r}')
    if tie_break not in TIE_BREAKS:
        raise ValueError(f'{where}: tie_break must be one of {TIE_BREAKS}, got {tie_break!r}')
    skip = check_number(skip_box_thr, 'skip_box_thr', where, 0, 1)
    return WBFParams(check_iou_thr(iou_thr, where), skip, conf_type, tie_break)


def _check_weights(weights: Any, num_models: int) -> np.ndarray | None:
    """float64 (M,) model weights, each finite and > 0; None for 'all 1'."""
    if weights is None:
        return None
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'weights must be numbers, got {weights!r}') from exc
    if w.ndim != 1 or w.shape[0] != num_models:
        raise ValueError(
            f'weights must have one value per model ({num_models}), got shape {w.shape}'
        )
    if num_models and not (np.all(w > 0) and np.all(w < np.inf)):
        raise ValueError(f'weights must be finite and > 0, got {w.tolist()}')
    return w


def _check_rows(values: np.ndarray, ok: np.ndarray, what: str, locate: Any) -> None:
    """Raise ``what`` naming the first row where ``ok`` is False (``locate(row)``)."""
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f'{what}, got {values[row]!r} at {locate(row)} (are scores and labels swapped?)'
        )


# ------------------------------------------------------------------------------ pre-filter
class PreparedBoxes(NamedTuple):
    """Boxes kept by :func:`prefilter`, in input order, and their label groups."""

    box: list[tuple[float, float, float, float]]  # xyxy, x1 <= x2, y1 <= y2, area > 0
    sw: list[float]  # score * model weight
    wt: list[float]  # model weight
    model: list[int]  # model index
    src: list[int]  # index of the box in the caller's input
    groups: dict[int, list[int]]  # label -> positions in the lists, by first appearance
    uniform: bool  # every s * w is the same (all scores 1, weights 1)


def prefilter(
    rows: list[list[float]],
    scores: list[float] | None,
    skip: list[bool] | None,
    labels: list[int],
    models: list[int],
    wlist: list[float],
    clip: bool,
    order: Iterable[int],
    describe: Callable[[int], str],
) -> PreparedBoxes:
    """ensemble-boxes' pre-filter on plain lists (one pass over the rows in ``order``).

    Rejects NaN / inf / huge coordinates (``describe(i)`` names row i), drops skipped
    boxes (``skip[i]``: score < skip_box_thr), swaps reversed corners, optionally clips to
    [0, 1], drops zero-area boxes, groups the rest by label. ``scores=None`` means every
    score is 1. Rows are taken in ``order`` (ensemble-boxes: model-major input order).
    """
    box: list[Any] = []
    sw: list[float] = []
    wt: list[float] = []
    model: list[int] = []
    src: list[int] = []
    groups: dict[int, list[int]] = {}
    lim = _COORD_LIMIT
    nswap = 0
    nzero = 0
    k = 0
    for i in order:
        x1, y1, x2, y2 = rows[i]
        if not (-lim < x1 < lim and -lim < y1 < lim and -lim < x2 < lim and -lim < y2 < lim):
            raise ValueError(f'{describe(i)} has a NaN, infinite or huge coordinate: {rows[i]}')
        if skip is not None and skip[i]:
            continue
        if x2 < x1:
            x1, x2 = x2, x1
            nswap += 1
        if y2 < y1:
            y1, y2 = y2, y1
            nswap += 1
        if clip:
            x1 = 0.0 if x1 < 0.0 else (1.0 if x1 > 1.0 else x1)
            y1 = 0.0 if y1 < 0.0 else (1.0 if y1 > 1.0 else y1)
            x2 = 0.0 if x2 < 0.0 else (1.0 if x2 > 1.0 else x2)
            y2 = 0.0 if y2 < 0.0 else (1.0 if y2 > 1.0 else y2)
        if (x2 - x1) * (y2 - y1) == 0.0:
            nzero += 1
            continue
        m = models[i]
        w = wlist[m]
        box.append((x1, y1, x2, y2))
        sw.append(w if scores is None else scores[i] * w)
        wt.append(w)
        model.append(m)
        src.append(i)
        lab = labels[i]
        g = groups.get(lab)
        if g is None:
            groups[lab] = [k]
        else:
            g.append(k)
        k += 1
    if nswap:
        warnings.warn(
            f'{nswap} reversed box side(s) (x2 < x1 or y2 < y1): corners swapped, as '
            'ensemble-boxes does',
            stacklevel=3,
        )
    if nzero:
        warnings.warn(f'{nzero} zero-area box(es) skipped, as ensemble-boxes does', stacklevel=3)
    return PreparedBoxes(box, sw, wt, model, src, groups, scores is None and len(set(wlist)) <= 1)


# ------------------------------------------------------------------------------- ordering
def _numpy_descending(idx: list[int], key: list[float]) -> list[int]:
    """``idx`` ordered as ensemble-boxes' ``argsort()[::-1]`` over ``key``.

    Without ties any correct sort gives that order. With ties only numpy's own (unstable)
    argsort does; ``tie_break='input'`` and :func:`weighted_boxes_fusion` need it to give
    ensemble-boxes' clusters, because raters' boxes all tie (scores 1).
    """
    vals = [key[i] for i in idx]
    distinct = len(set(vals))
    if distinct == len(vals):
        return sorted(idx, key=key.__getitem__, reverse=True)
    if distinct == 1:  # all tied (raters' scores): the permutation depends on n alone
        perm = _TIE_PERMS.get(len(vals))
        if perm is None:
            perm = _TIE_PERMS[len(vals)] = np.argsort(np.zeros(len(vals)))[::-1].tolist()
    else:
        perm = np.argsort(np.array(vals))[::-1].tolist()
    return [idx[k] for k in perm]


# ----------------------------------------------------------------------------- clustering
def _cluster(
    order: list[int],
    box: list[Any],
    sw: list[float],
    wt: list[float],
    iou_thr: float,
) -> tuple[list[Any], list[list[int]], list[float], list[float]]:
    """Greedy WBF clustering of one label's boxes, taken in ``order``.

    Each box joins the cluster whose current fused box has the highest IoU with it if
    that IoU > ``iou_thr`` (first cluster on an exact tie), else starts a new cluster. A
    cluster's fused box is sum(s w box) / sum(s w) (a one-box cluster keeps its box).

    Returns:
        tuple: per cluster, in creation order: fused box, members (positions, processing
        order), sum of s*w and sum of w.
    """
    if len(order) == 2:  # the commonest group: two raters on one finding
        a, b = order
        if _iou(box[a], box[b]) > iou_thr:
            return _merge_two(a, b, box, sw, wt)
        return [box[a], box[b]], [[a], [b]], [sw[a], sw[b]], [wt[a], wt[b]]
    reps: list[Any] = []  # current fused box per cluster
    areas: list[float] = []
    members: list[list[int]] = []
    accs: list[Any] = []  # sum of s * w * box per cluster
    scores: list[float] = []  # sum of s * w
    wsums: list[float] = []  # sum of w
    rep_arr = None  # numpy mirror of reps once there are many clusters
    for j in order:
        bj = box[j]
        bx1, by1, bx2, by2 = bj
        area = (bx2 - bx1) * (by2 - by1)
        bi = -1
        nc = len(reps)
        if nc >= _VECTOR_MIN_CLUSTERS:
            if rep_arr is None:
                rep_arr = np.zeros((len(order), 4))
                rep_arr[:nc] = reps
            iou = paired_box_iou(rep_arr[:nc], np.asarray(bj))
            k = int(iou.argmax())  # first maximum, as np.argmax in ensemble-boxes
            if iou[k] > iou_thr:
                bi = k
        else:
            best = iou_thr
            for c in range(nc):
                r1, r2, r3, r4 = reps[c]
                iw = (r3 if r3 < bx2 else bx2) - (r1 if r1 > bx1 else bx1)
                if iw <= 0.0:
                    continue  # IoU 0 never exceeds iou_thr >= 0
                ih = (r4 if r4 < by2 else by2) - (r2 if r2 > by1 else by1)
                if ih <= 0.0:
                    continue
                inter = iw * ih
                iou = inter / (areas[c] + area - inter)
                if iou > best:  # strict: the first cluster keeps an exact tie
                    best = iou
                    bi = c
        s = sw[j]
        if bi < 0:
            reps.append(bj)
            areas.append(area)
            members.append([j])
            accs.append(None)  # s * box, computed when a second box joins
            scores.append(s)
            wsums.append(wt[j])
            if rep_arr is not None:
                rep_arr[nc] = bj
            continue
        mem = members[bi]
        mem.append(j)
        a = accs[bi]
        if a is None:
            s0 = sw[mem[0]]
            a = [s0 * v for v in box[mem[0]]]
        acc = accs[bi] = (a[0] + s * bx1, a[1] + s * by1, a[2] + s * bx2, a[3] + s * by2)
        score = scores[bi] = scores[bi] + s
        wsums[bi] += wt[j]
        if score != 0.0:
            rep = (acc[0] / score, acc[1] / score, acc[2] / score, acc[3] / score)
        else:  # every score 0: plain mean (ensemble-boxes divides by zero -> NaN)
            rep = tuple(sum(box[m][q] for m in mem) / len(mem) for q in range(4))
        reps[bi] = rep
        areas[bi] = (rep[2] - rep[0]) * (rep[3] - rep[1])
        if rep_arr is not None:
            rep_arr[bi] = rep
    return reps, members, scores, wsums


def _iou(p: Any, q: Any) -> float:
    """IoU of two xyxy 4-tuples with positive areas (the arithmetic of :func:`_cluster`)."""
    iw = (p[2] if p[2] < q[2] else q[2]) - (p[0] if p[0] > q[0] else q[0])
    ih = (p[3] if p[3] < q[3] else q[3]) - (p[1] if p[1] > q[1] else q[1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)


def _merge_two(
    a: int, b: int, box: list[Any], sw: list[float], wt: list[float]
) -> tuple[list[Any], list[list[int]], list[float], list[float]]:
    """:func:`_cluster`'s result for boxes a then b that form one cluster."""
    sa, sb = sw[a], sw[b]
    score = sa + sb
    pa, pb = box[a], box[b]
    if score != 0.0:
        rep = tuple((sa * pa[q] + sb * pb[q]) / score for q in range(4))
    else:  # every score 0: plain mean (ensemble-boxes divides by zero -> NaN)
        rep = tuple((pa[q] + pb[q]) / 2 for q in range(4))
    return [rep], [[a, b]], [score], [wt[a] + wt[b]]


def fuse_prepared(
    prep: PreparedBoxes,
    num_models: int,
    weights: np.ndarray | None,
    params: WBFParams,
    allows_overflow: bool = False,
) -> list[tuple[float, int, Any, list[int]]]:
    """WBF of pre-filtered boxes: cluster each label, score the clusters, sort.

    The one implementation behind :func:`weighted_boxes_fusion` and
    :func:`~earl_core.fusion.wbf.fuse_raters`.

    Args:
        prep (PreparedBoxes): output of :func:`prefilter` (input order, model-major).
        num_models (int): M, number of models (also those without boxes).
        weights (np.ndarray | None): (M,) float64 model weights; None = all 1.
        params (WBFParams): checked parameters: strict IoU threshold to join a cluster,
            ``conf_type``, and ``tie_break``: ``'input'`` = ensemble-boxes' order (numpy
            argsort ties), ``'geometry'`` = score ties broken by the box coordinates, then
            input order, so the result does not depend on the order of the input.
        allows_overflow (bool): ``avg`` only: do not cap n at M. Defaults to False.

    Returns:
        list[tuple]: one record ``(-score, label, fused box (4-tuple), members)`` per fused
        box, members = positions in ``prep`` in processing order; sorted by score
        descending.
    """
    model = prep.model
    if weights is None:  # no numpy call on the common path (it costs more than the fusion)
        w_arr = None
        wsum_all = float(num_models)
        wmax = 1.0
    else:
        w_arr = weights
        wsum_all = float(weights.sum())
        wmax = float(weights.max())
    iou_thr, conf_type = params.iou_thr, params.conf_type
    is_avg = conf_type == 'avg'
    is_max = conf_type == 'max'
    geometric = params.tie_break == 'geometry'
    cap = num_models if is_avg and not allows_overflow else None

    def score(s: float, n: int, wf: float, mem: list[int]) -> float:
        # ensemble-boxes' rescaling of a cluster's mean (or max) s*w, weight sum wf.
        if is_avg:
            return s * (n if cap is None or n < cap else cap) / wsum_all
        if is_max:
            return s / wmax
        present = sorted({model[m] for m in mem})
        w_present = float(len(present) if w_arr is None else w_arr[present].sum())
        if conf_type == 'box_and_model_avg':
            return s * n / wf * w_present / wsum_all
        return s * n / (wf + wsum_all - w_present)  # absent_model_aware_avg

    # One record per fused box: (-score, label, box, members); sorting the records sorts
    # by score descending, then label and coordinates (the 'geometry' tie-break).
    recs: list[tuple[float, int, Any, list[int]]] = []
    box, sw = prep.box, prep.sw
    for lab, idx in prep.groups.items():
        if len(idx) == 1:  # a lone box is its own cluster
            j = idx[0]
            recs.append((-score(sw[j], 1, prep.wt[j], idx), lab, box[j], idx))
            continue
        if not geometric:
            order = _numpy_descending(idx, sw)
        elif prep.uniform or len({sw[i] for i in idx}) == 1:  # tied: by coordinates, input
            order = sorted(idx, key=box.__getitem__)
        else:
            order = sorted(idx, key=lambda i: (-sw[i], box[i]))
        reps, members, confs, wsums = _cluster(order, box, sw, prep.wt, iou_thr)
        for c, mem in enumerate(members):
            n = len(mem)
            s = sw[mem[0]] if is_max else confs[c] / n
            recs.append((-score(s, n, wsums[c], mem), lab, reps[c], mem))

    if len(recs) > 1:
        if geometric:
            recs.sort()
        else:  # ensemble-boxes: argsort(score)[::-1] over the records in creation order
            scores = [-r[0] for r in recs]
            recs = [recs[q] for q in _numpy_descending(list(range(len(recs))), scores)]
    return recs


# ------------------------------------------------------------------------- public: WBF
def _no_wbf_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,))


def weighted_boxes_fusion(
    boxes_list: Sequence[Any],
    scores_list: Sequence[Any],
    labels_list: Sequence[Any],
    weights: Sequence[float] | np.ndarray | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = 'avg',
    allows_overflow: bool = False,
    *,
    clip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion of several models' boxes on one image (ensemble-boxes API).

    ``ensemble_boxes.weighted_boxes_fusion`` 1.0.9 in float64 (see the module docstring for
    the algorithm and the deliberate differences).

    Args:
        boxes_list (Sequence): per model, (N_t, 4) xyxy boxes (normalised or pixels; the
            result is in the same unit). An empty model may be ``[]``.
        scores_list (Sequence): per model, (N_t,) scores in [0, 1].
        labels_list (Sequence): per model, (N_t,) integral labels.
        weights (Sequence[float] | None): per model, weight > 0. Defaults to None (all 1).
        iou_thr (float): a box joins a cluster if IoU > iou_thr (strict), in [0, 1).
            Defaults to 0.55.
        skip_box_thr (float): boxes with score < skip_box_thr are dropped, in [0, 1].
            Defaults to 0.
        conf_type (str): one of ``'avg'``, ``'max'``, ``'box_and_model_avg'``,
            ``'absent_model_aware_avg'``. Defaults to ``'avg'``.
        allows_overflow (bool): ``'avg'`` only: let the score exceed 1 when a cluster has
            more boxes than there are models. Defaults to False.
        clip (bool): clip coordinates to [0, 1] as ensemble-boxes does (only meaningful for
            normalised input). Defaults to False.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: fused boxes (M, 4) float64, scores (M,)
        float64 and labels (M,) float64 (float, as ensemble-boxes returns them), sorted by
        score descending.

    Raises:
        ValueError: on malformed input (see the module docstring).

    Examples:
        >>> boxes, scores, labels = weighted_boxes_fusion(
        ...     [[[0, 0, 10, 10]], [[2, 0, 12, 10]]], [[1.0], [0.5]], [[3], [3]], iou_thr=0.5)
        >>> boxes.round(3).tolist(), scores.tolist(), labels.tolist()
        ([[0.667, 0.0, 10.667, 10.0]], [0.75], [3.0])
    """
    params = check_wbf_params(iou_thr, skip_box_thr, conf_type, where='weighted_boxes_fusion')
    try:
        num_models = len(boxes_list)
        if len(scores_list) != num_models or len(labels_list) != num_models:
            raise ValueError(
                'boxes_list, scores_list and labels_list must have one entry per model, '
                f'got {num_models}, {len(scores_list)} and {len(labels_list)}'
            )
        counts = [len(b) for b in boxes_list]
        for t in range(num_models):
            if len(scores_list[t]) != counts[t] or len(labels_list[t]) != counts[t]:
                raise ValueError(
                    f'model {t}: {counts[t]} boxes, {len(scores_list[t])} scores and '
                    f'{len(labels_list[t])} labels (must be equal)'
                )
    except TypeError as exc:
        raise ValueError(f'boxes/scores/labels must be sequences per model: {exc}') from exc
    w = _check_weights(weights, num_models)
    total = sum(counts)
    if total == 0:
        return _no_wbf_boxes()

    nz = [t for t in range(num_models) if counts[t]]

    def locate(row: int) -> str:
        for t in nz:
            if row < counts[t]:
                return f'model {t} box {row}'
            row -= counts[t]
        return f'box {row}'  # pragma: no cover - row is always in range

    try:
        boxes = np.asarray(np.concatenate([boxes_list[t] for t in nz]), dtype=np.float64)
        raw_scores = np.concatenate([scores_list[t] for t in nz])
        labels = np.concatenate([labels_list[t] for t in nz])
        scores = raw_scores.astype(np.float64, copy=False)
        if labels.dtype.kind not in 'iub':
            labels = labels.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f'boxes must be (N, 4) and scores / labels (N,) numbers per model: {exc}'
        ) from exc
    if boxes.shape != (total, 4):
        raise ValueError(f'boxes must have shape (N, 4) per model, got {boxes.shape} in all')
    if scores.shape != (total,) or labels.shape != (total,):
        raise ValueError(
            f'scores and labels must have shape (N,) per model, got {scores.shape} and '
            f'{labels.shape} in all'
        )
    in_range = (scores >= 0.0) & (scores <= 1.0)  # NaN fails both tests
    _check_rows(scores, in_range, 'scores_list: scores must lie in [0, 1]', locate)
    if labels.dtype.kind not in 'iub':
        integral = np.isfinite(labels) & (labels == np.floor(labels))
        _check_rows(labels, integral, 'labels_list: labels must be integral', locate)

    # As ensemble-boxes, compare in the scores' own dtype (float32 scores: float32 test).
    skip = (raw_scores < skip_box_thr).tolist() if skip_box_thr > 0 else None
    prep = prefilter(
        boxes.tolist(),
        scores.tolist(),
        skip,
        labels.astype(np.int64, copy=False).tolist(),
        [t for t in nz for _ in range(counts[t])],
        [1.0] * num_models if w is None else w.tolist(),
        bool(clip),
        range(total),
        lambda i: f'boxes_list: {locate(i)}',
    )
    if not prep.box:
        return _no_wbf_boxes()
    recs = fuse_prepared(prep, num_models, w, params, bool(allows_overflow))
    return (
        np.array([r[2] for r in recs], dtype=np.float64),
        np.array([-r[0] for r in recs], dtype=np.float64),
        np.array([r[1] for r in recs], dtype=np.float64),
    )
