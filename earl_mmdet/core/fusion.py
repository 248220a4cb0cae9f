"""Weighted boxes fusion (WBF) and its rater-oriented form (numpy only, no numba).

Two entry points share one clustering implementation (:func:`_fuse`), which also records
which input boxes formed each fused box:

* :func:`weighted_boxes_fusion`: a drop-in for ``ensemble_boxes.weighted_boxes_fusion``
  1.0.9 (same signature, argument order and results on normalised input, every
  ``conf_type``), which also takes pixel coordinates and raises on bad input.
* :func:`fuse_raters`: the paper's truth inference for one image (Algorithm 1): one "model"
  per rater, every box score 1, per-rater weight = proficiency p_r; returns the fused boxes
  with agreement T (distinct raters in the cluster), R (raters who read the image), the
  confidence c, and the membership of every fused box.

The algorithm (ensemble-boxes semantics, replicated on purpose because they change results):

1. Pre-filter, per box in input order (model 0's boxes, then model 1's, ...): drop it if
   ``score < skip_box_thr`` (strict, so a score equal to the threshold stays; compared in
   the scores' dtype, so float32 scores compare in float32 as in ensemble-boxes); swap
   x1/x2 (y1/y2) when x2 < x1; drop it if ``(x2 - x1) * (y2 - y1) == 0``. Each kept box
   carries ``s * w`` (score times its model's weight).
2. Per label, in order of first appearance: order the boxes by ``s * w`` descending exactly
   as ensemble-boxes does (``np.argsort(...)[::-1]`` over the boxes in input order, so
   exact ties come out in numpy's argsort order; with distinct values that is plain
   descending order).
3. Greedy clustering: each box joins the existing cluster whose *current fused box* has the
   highest IoU with it, if that IoU is strictly greater than ``iou_thr`` (the first such
   cluster on an exact IoU tie); otherwise it starts a new cluster. Boxes of one model may
   join one cluster several times.
4. Fused box of a cluster of k >= 2 boxes: sum(s_i w_i box_i) / sum(s_i w_i), accumulated
   in float32 in processing order and rounded to float32 (as ensemble-boxes'
   ``get_weighted_box``), and this float32 box is what later boxes are matched against. A
   one-box cluster keeps its float64 input box.
5. Cluster score, with M models, weights w, n = boxes in the cluster (not distinct models),
   ``mean`` = float32(mean of s_i w_i), ``first`` = float32(max of s_i w_i), ``wsum`` =
   float32(sum of the members' w_i) (one-box clusters: unrounded):

   * ``avg``: mean * min(M, n) / sum(w); with ``allows_overflow=True``: mean * n / sum(w)
     (> 1 possible when one model puts several boxes in a cluster, ensemble-boxes #40);
   * ``max``: first / max(w);
   * ``box_and_model_avg``: mean * n / wsum * sum(w of the distinct models) / sum(w);
   * ``absent_model_aware_avg``: mean * n / (wsum + sum(w of the absent models)).
6. Output: all labels' fused boxes in (label, creation) order, then sorted by score
   descending with ``np.argsort(...)[::-1]`` (ties in numpy's order, as ensemble-boxes).

Where :func:`weighted_boxes_fusion` differs from ensemble-boxes 1.0.9 on purpose:

* Coordinates are never clipped unless ``clip=True``. WBF is scale-invariant (IoU, weighted
  means and the zero-area test do not depend on the unit), so pixel boxes fuse exactly as
  the same boxes divided by the image size; ensemble-boxes instead clips to [0, 1] with a
  warning, which collapses pixel boxes. There is no auto-detection: on input inside
  [0, 1] clipping changes nothing, and ``clip=True`` reproduces ensemble-boxes on
  normalised input that leaks slightly outside [0, 1].
* Bad input raises ``ValueError`` naming the model and box: list lengths
  that differ, boxes not (N, 4), NaN/inf, scores outside [0, 1], non-integral labels,
  weights that are not finite and > 0 or of the wrong length (ensemble-boxes prints and
  calls ``exit()``, or resets the weights to 1), unknown ``conf_type``, ``iou_thr``
  outside [0, 1]. Scores and labels checks catch swapped arguments, except when every
  label is 0 or 1 and every score is exactly 0 or 1.
* A cluster whose boxes all have score 0 (possible only with ``skip_box_thr=0``) gets the
  plain mean of its boxes; ensemble-boxes divides by zero and returns NaN coordinates.
* Weights are used as float64 (ensemble-boxes keeps the dtype it is given).
* One warning per call (not per box) for swapped corners and for dropped zero-area boxes.
* Never prints, never exits, does not import numba.

:func:`fuse_raters` uses the same algorithm with scores 1; since all boxes then tie on
score, its default ``tie_break='geometry'`` orders tied boxes by their coordinates instead
of numpy's argsort order, so that the result does not depend on the order of the input
(``tie_break='input'`` gives ensemble-boxes' boxes exactly).

Differences from the authors' released code (github huyhieupham/learning-from-multiple-
annotators; see docs/aggregators.md): they call
``weighted_boxes_fusion(boxes, labels, scores, ...)``, i.e. labels and scores swapped, which
makes their fusion class-agnostic and gives NaN boxes for class 0. Here that call raises
``ValueError`` as soon as one label is > 1 (it is read as a score outside [0, 1]); only an
image whose labels are all 0 or 1 would pass unnoticed, its scores of 1 being valid
integral labels. They used ``iou_thr=0.5`` (the paper says IoU > 0.4, our
default in :func:`fuse_raters`), normalised coordinates by the largest coordinate in the
image (not needed here), and stored ``c = round(3 * score)``, which is the number of
*boxes* in the cluster capped at 3; :func:`fuse_raters` ``score_mode='count'`` returns
T = the number of *distinct raters* in the cluster (equal unless one rater drew several
boxes of one object), and ``'fraction'`` divides by the raters who actually read the
image.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .types import FusionResult, ImageAnnotations

__all__ = [
    'CONF_TYPES',
    'SCORE_MODES',
    'TIE_BREAKS',
    'fuse_raters',
    'weighted_boxes_fusion',
]

#: ``conf_type`` values of ensemble-boxes' ``weighted_boxes_fusion``.
CONF_TYPES = ('avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg')
#: ``score_mode`` values of :func:`fuse_raters`.
SCORE_MODES = ('count', 'fraction', 'wbf')
#: ``tie_break`` values of :func:`fuse_raters`.
TIE_BREAKS = ('geometry', 'input')

# float64 -> float32 -> float64 rounding of 4 (or 1) Python floats through the C cast, the
# same rounding numpy applies when ensemble-boxes stores into its float32 work array.
_F32X4 = struct.Struct('<4f')
_F32X1 = struct.Struct('<f')
# Coordinates beyond this are rejected: they cannot be rounded to float32 and are no pixels.
_COORD_LIMIT = 1e30
# Clusters per label above which the IoU against all current clusters is computed with
# numpy instead of a Python loop (the loop wins on the few boxes of an annotated image).
_VECTOR_MIN_CLUSTERS = 24

# Permutation numpy's argsort gives an all-equal array of length n, reversed. A comparison
# sort sees only "equal" there, so the permutation depends on n alone; computed (once per
# n) by numpy itself on this machine, so it is whatever ensemble-boxes gets here.
_TIE_PERMS: dict[int, list[int]] = {}


def _f32(x: float) -> float:
    return _F32X1.unpack(_F32X1.pack(x))[0]


# ---------------------------------------------------------------------------- validation
def _check_params(iou_thr: Any, skip_box_thr: Any, conf_type: Any) -> None:
    if conf_type not in CONF_TYPES:
        raise ValueError(f'conf_type must be one of {CONF_TYPES}, got {conf_type!r}')
    if isinstance(iou_thr, bool) or not isinstance(iou_thr, (int, float, np.number)):
        raise ValueError(f'iou_thr must be a number in [0, 1], got {iou_thr!r}')
    if not 0.0 <= iou_thr <= 1.0:  # also rejects NaN
        raise ValueError(f'iou_thr must be a number in [0, 1], got {iou_thr!r}')
    if isinstance(skip_box_thr, bool) or not isinstance(skip_box_thr, (int, float, np.number)):
        raise ValueError(f'skip_box_thr must be a finite number, got {skip_box_thr!r}')
    if not -np.inf < skip_box_thr < np.inf:
        raise ValueError(f'skip_box_thr must be a finite number, got {skip_box_thr!r}')


def _check_weights(weights: Any, num_models: int, what: str = 'weights') -> np.ndarray | None:
    """float64 (M,) weights, or None for 'all 1'."""
    if weights is None:
        return None
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{what} must be numbers, got {weights!r}') from exc
    if w.ndim != 1 or w.shape[0] != num_models:
        raise ValueError(
            f'{what} must have one value per model ({num_models}), got shape {w.shape}'
        )
    if num_models and not (np.all(w > 0) and np.all(w < np.inf)):
        raise ValueError(f'{what} must be finite and > 0, got {w.tolist()}')
    return w


def _check_scores(s: np.ndarray, where: str, locate: Any = None) -> None:
    lo = float(s.min())
    hi = float(s.max())
    if not (lo >= 0.0 and hi <= 1.0):  # NaN propagates and fails too
        row = int(np.flatnonzero(~((s >= 0.0) & (s <= 1.0)))[0])
        at = locate(row) if locate else f'box {row}'
        raise ValueError(
            f'{where}: scores must lie in [0, 1], got {s[row]!r} at {at} '
            '(are scores and labels swapped?)'
        )


def _check_labels(lab: np.ndarray, where: str, locate: Any = None) -> None:
    if lab.dtype.kind in 'iub':
        return
    ok = np.isfinite(lab) & (lab == np.floor(lab))
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        at = locate(row) if locate else f'box {row}'
        raise ValueError(
            f'{where}: labels must be integral, got {lab[row]!r} at {at} '
            '(are scores and labels swapped?)'
        )


# ------------------------------------------------------------------------------ pre-filter
class _Prepared(NamedTuple):
    """Boxes kept by :func:`_prefilter`, in input order, and their label groups."""

    box: list[tuple[float, float, float, float]]  # xyxy, x1 <= x2, y1 <= y2, area > 0
    sw: list[float]  # score * model weight
    wt: list[float]  # model weight
    model: list[int]  # model index
    src: list[int]  # index of the box in the caller's input
    groups: dict[int, list[int]]  # label -> positions in the lists, by first appearance
    uniform: bool  # every s * w is the same (all scores 1, weights 1)


def _prefilter(
    rows: list[list[float]],
    scores: list[float] | None,
    skip: list[bool] | None,
    labels: list[int],
    models: list[int],
    wlist: list[float],
    clip: bool,
    order: Iterable[int],
    describe: Callable[[int], str],
) -> _Prepared:
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
    return _Prepared(box, sw, wt, model, src, groups, scores is None and len(set(wlist)) <= 1)


# ------------------------------------------------------------------------------- ordering
def _numpy_descending(idx: list[int], key: list[float]) -> list[int]:
    """``idx`` ordered as ensemble-boxes' ``argsort()[::-1]`` over ``key`` (ties included)."""
    vals = [key[i] for i in idx]
    n = len(vals)
    distinct = len(set(vals))
    if distinct == n:  # no tie: every correct sort gives the same order
        return sorted(idx, key=key.__getitem__, reverse=True)
    if distinct == 1:
        perm = _TIE_PERMS.get(n)
        if perm is None:
            perm = _TIE_PERMS[n] = np.argsort(np.zeros(n))[::-1].tolist()
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
    cluster's fused box is float32(sum(s w box) / sum(s w)) with the sum accumulated in
    float32 in processing order, exactly as ensemble-boxes' ``get_weighted_box``; a
    one-box cluster keeps its float64 box.

    Returns:
        tuple: per cluster, in creation order: fused box, members (positions, processing
        order), sum of s*w (float64; 0 for one-box clusters) and sum of w (likewise).
    """
    if len(order) == 2:  # fast path for the commonest group (two raters, one finding)
        a, b = order
        ax1, ay1, ax2, ay2 = ba = box[a]
        bx1, by1, bx2, by2 = bb = box[b]
        iw = (ax2 if ax2 < bx2 else bx2) - (ax1 if ax1 > bx1 else bx1)
        ih = (ay2 if ay2 < by2 else by2) - (ay1 if ay1 > by1 else by1)
        if iw > 0.0 and ih > 0.0:
            inter = iw * ih
            # The same expression as the general loop: (rep area + box area - inter).
            if inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter) > iou_thr:
                sa = sw[a]
                sb = sw[b]
                acc = _F32X4.unpack(_F32X4.pack(sa * ax1, sa * ay1, sa * ax2, sa * ay2))
                acc = _F32X4.unpack(
                    _F32X4.pack(
                        acc[0] + sb * bx1, acc[1] + sb * by1, acc[2] + sb * bx2, acc[3] + sb * by2
                    )
                )
                conf = sa + sb
                if conf != 0.0:
                    rep = _F32X4.unpack(
                        _F32X4.pack(acc[0] / conf, acc[1] / conf, acc[2] / conf, acc[3] / conf)
                    )
                else:  # every score 0: plain mean (ensemble-boxes divides by zero -> NaN)
                    rep = _F32X4.unpack(
                        _F32X4.pack(
                            (ax1 + bx1) / 2, (ay1 + by1) / 2, (ax2 + bx2) / 2, (ay2 + by2) / 2
                        )
                    )
                return [rep], [[a, b]], [conf], [wt[a] + wt[b]]
        return [ba, bb], [[a], [b]], [0.0, 0.0], [0.0, 0.0]

    reps: list[Any] = []
    areas: list[float] = []
    members: list[list[int]] = []
    accs: list[Any] = []
    confs: list[float] = []
    wsums: list[float] = []
    rep_arr = None  # numpy mirror of reps / areas once there are many clusters
    for j in order:
        bj = box[j]
        bx1, by1, bx2, by2 = bj
        area = (bx2 - bx1) * (by2 - by1)
        best = iou_thr
        bi = -1
        nc = len(reps)
        if nc >= _VECTOR_MIN_CLUSTERS:
            if rep_arr is None:
                rep_arr = np.zeros((len(order), 5))
                rep_arr[:nc, :4] = reps
                rep_arr[:nc, 4] = areas
            r = rep_arr[:nc]
            # The float64 operations of ensemble-boxes' vectorised IoU, in its order, so
            # matching decisions are bit-identical to it (and to the loop below).
            iw = np.maximum(np.minimum(r[:, 2], bx2) - np.maximum(r[:, 0], bx1), 0)
            ih = np.maximum(np.minimum(r[:, 3], by2) - np.maximum(r[:, 1], by1), 0)
            inter = iw * ih
            iou = inter / (r[:, 4] + area - inter)
            k = int(iou.argmax())  # first maximum, as np.argmax in ensemble-boxes
            if iou[k] > best:
                bi = k
        else:
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
        if bi < 0:
            reps.append(bj)
            areas.append(area)
            members.append([j])
            accs.append(None)
            confs.append(0.0)
            wsums.append(0.0)
            if rep_arr is not None:
                rep_arr[nc, :4] = bj
                rep_arr[nc, 4] = area
            continue

        mem = members[bi]
        if len(mem) == 1:
            f = mem[0]
            s0 = sw[f]
            b0 = box[f]
            acc = _F32X4.unpack(_F32X4.pack(s0 * b0[0], s0 * b0[1], s0 * b0[2], s0 * b0[3]))
            conf = s0
            wsum = wt[f]
        else:
            acc = accs[bi]
            conf = confs[bi]
            wsum = wsums[bi]
        mem.append(j)
        s = sw[j]
        # ensemble-boxes: float32 box[4:] += float64 s * b; then box[4:] /= conf.
        acc = _F32X4.unpack(
            _F32X4.pack(acc[0] + s * bx1, acc[1] + s * by1, acc[2] + s * bx2, acc[3] + s * by2)
        )
        conf = conf + s
        wsum = wsum + wt[j]
        if conf != 0.0:
            rep = _F32X4.unpack(
                _F32X4.pack(acc[0] / conf, acc[1] / conf, acc[2] / conf, acc[3] / conf)
            )
        else:  # every score 0: plain mean (ensemble-boxes divides by zero -> NaN)
            nm = len(mem)
            rep = _F32X4.unpack(_F32X4.pack(*[sum(box[m][q] for m in mem) / nm for q in range(4)]))
        accs[bi] = acc
        confs[bi] = conf
        wsums[bi] = wsum
        reps[bi] = rep
        ra = (rep[2] - rep[0]) * (rep[3] - rep[1])
        areas[bi] = ra
        if rep_arr is not None:
            rep_arr[bi, :4] = rep
            rep_arr[bi, 4] = ra
    return reps, members, confs, wsums


def _fuse(
    prep: _Prepared,
    num_models: int,
    weights: np.ndarray | None,
    iou_thr: float,
    conf_type: str,
    allows_overflow: bool,
    tie_break: str,
) -> list[tuple[float, int, Any, list[int]]]:
    """WBF of pre-filtered boxes: cluster each label, score the clusters, sort.

    The one implementation behind :func:`weighted_boxes_fusion` and :func:`fuse_raters`.

    Args:
        prep (_Prepared): output of :func:`_prefilter` (input order, model-major).
        num_models (int): M, number of models (also those without boxes).
        weights (np.ndarray | None): (M,) float64 model weights; None = all 1.
        iou_thr (float): strict IoU threshold to join a cluster, >= 0.
        conf_type (str): one of :data:`CONF_TYPES`.
        allows_overflow (bool): ``avg`` only: do not cap n at M.
        tie_break (str): ``'input'``: ensemble-boxes' order (numpy argsort ties);
            ``'geometry'``: score ties broken by the box coordinates, then input order, so
            the result does not depend on the order of the input.

    Returns:
        list[tuple]: one record ``(-score, label, fused box (4-tuple), members)`` per fused
        box, members = positions in ``prep`` in processing order; sorted by score
        descending.
    """
    box, sw, wt, model = prep.box, prep.sw, prep.wt, prep.model
    if weights is None:  # a sum of ones is exact in any order
        wsum_all = float(num_models)
        wmax = 1.0
    else:  # ensemble-boxes' weights.sum(): the same numpy reduction, the same bits
        wsum_all = float(weights.sum())
        wmax = float(weights.max())
    is_avg = conf_type == 'avg'
    is_max = conf_type == 'max'
    w_arr = weights
    if not (is_avg or is_max) and weights is None:
        w_arr = np.ones(num_models)
    geometric = tie_break == 'geometry'

    cap = num_models if is_avg and not allows_overflow else None

    def score(s: float, n: int, wf: float, mem: list[int]) -> float:
        # ensemble-boxes' rescaling of a cluster's score field s (weight field wf).
        if is_avg:
            return s * (n if cap is None or n < cap else cap) / wsum_all
        if is_max:
            return s / wmax
        present = sorted({model[m] for m in mem})
        if conf_type == 'box_and_model_avg':
            s = s * n / wf
            return s * float(w_arr[present].sum()) / wsum_all
        mask = np.ones(num_models, dtype=bool)  # absent_model_aware_avg
        mask[present] = False
        return s * n / (wf + float(w_arr[mask].sum()))

    # One record per fused box: (-score, label, box, members); sorting the records sorts
    # by score descending, then label and coordinates (the 'geometry' tie-break).
    recs: list[tuple[float, int, Any, list[int]]] = []
    for lab, idx in prep.groups.items():
        if len(idx) == 1:  # a lone box is its own cluster
            j = idx[0]
            recs.append((-score(sw[j], 1, wt[j], idx), lab, box[j], idx))
            continue
        if not geometric:
            order = _numpy_descending(idx, sw)
        elif prep.uniform or len({sw[i] for i in idx}) == 1:  # tied: by coordinates, input
            order = sorted(idx, key=box.__getitem__)
        else:
            order = sorted(idx, key=lambda i: (-sw[i], box[i]))
        reps, members, confs, wsums = _cluster(order, box, sw, wt, iou_thr)
        for c, mem in enumerate(members):
            n = len(mem)
            if n == 1:
                s = score(sw[mem[0]], 1, wt[mem[0]], mem)
            else:  # from the float32 score / weight fields of ensemble-boxes' fused row
                sf = _f32(sw[mem[0]]) if is_max else _f32(confs[c] / n)
                s = score(sf, n, _f32(wsums[c]), mem)
            recs.append((-s, lab, reps[c], mem))

    if len(recs) > 1:
        if geometric:
            recs.sort()
        else:  # ensemble-boxes: argsort(score)[::-1] over the records in creation order
            scores = [-r[0] for r in recs]
            recs = [recs[q] for q in _numpy_descending(list(range(len(recs))), scores)]
    return recs


# ------------------------------------------------------------------------- public: WBF
def _empty_wbf() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    Same arguments, order and results as ``ensemble_boxes.weighted_boxes_fusion`` 1.0.9 on
    normalised input (see the module docstring for the exact algorithm and the deliberate
    differences): any coordinate unit, no clipping unless ``clip=True``, ``ValueError`` on
    bad input. Weights are used as float64.

    Args:
        boxes_list (Sequence): per model, (N_t, 4) xyxy boxes (normalised or pixels; the
            result is in the same unit). An empty model may be ``[]``.
        scores_list (Sequence): per model, (N_t,) scores in [0, 1].
        labels_list (Sequence): per model, (N_t,) integral labels.
        weights (Sequence[float] | None): per model, weight > 0. Defaults to None (all 1).
        iou_thr (float): a box joins a cluster if IoU > iou_thr (strict), in [0, 1].
            Defaults to 0.55.
        skip_box_thr (float): boxes with score < skip_box_thr are dropped. Defaults to 0.
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
    _check_params(iou_thr, skip_box_thr, conf_type)
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
        return _empty_wbf()

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
    _check_scores(scores, 'scores_list', locate)
    _check_labels(labels, 'labels_list', locate)

    # As ensemble-boxes, compare in the scores' own dtype (float32 scores: float32 test).
    skip = (raw_scores < skip_box_thr).tolist() if skip_box_thr > 0 else None
    prep = _prefilter(
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
        return _empty_wbf()
    recs = _fuse(prep, num_models, w, float(iou_thr), conf_type, bool(allows_overflow), 'input')
    return (
        np.array([r[2] for r in recs], dtype=np.float64),
        np.array([-r[0] for r in recs], dtype=np.float64),
        np.array([r[1] for r in recs], dtype=np.float64),
    )


# ---------------------------------------------------------------------- public: raters
# Zero-size arrays hold no data, so every empty result can get its own *view* of these
# (4x cheaper than allocating; empty images are most of a chest X-ray dataset).
_EMPTY_F32_BOXES = np.zeros((0, 4), np.float32)
_EMPTY_F32 = np.zeros(0, np.float32)
_EMPTY_I64 = np.zeros(0, np.int64)


def _empty_result(num_raters: int) -> FusionResult:
    return FusionResult(
        boxes=_EMPTY_F32_BOXES.view(),
        labels=_EMPTY_I64.view(),
        confidences=_EMPTY_F32.view(),
        agreement=_EMPTY_I64.view(),
        num_raters=num_raters,
        members=[],
        member_raters=[],
    )


def fuse_raters(
    ann: ImageAnnotations,
    *,
    iou_thr: float = 0.4,
    skip_box_thr: float = 0.0,
    conf_type: str = 'avg',
    score_mode: str = 'count',
    rater_weights: Mapping[str, float] | None = None,
    tie_break: str = 'geometry',
) -> FusionResult:
    """Fuse several raters' boxes on one image by WBF, with agreement and membership.

    Each rater is one WBF "model" (models ordered as ``ann.raters``; a rater's boxes in
    input order), every box has score 1, and the model weight is the rater's proficiency
    p_r (the paper's Algorithm 1; 1 by default). R = ``len(ann.raters)`` counts every rater
    who read the image, also those who drew nothing, so it enters the WBF score and
    ``'fraction'``. Boxes with x2 < x1 are swapped and zero-area boxes dropped (with a
    warning), as in :func:`weighted_boxes_fusion`; coordinates are not clipped.

    With equal weights every box ties on score, so WBF's processing order within a label
    is decided by the tie-break. ``tie_break='geometry'`` (default) orders tied boxes by
    their coordinates (x1, y1, x2, y2), which makes the result independent of the order of
    the boxes and of the raters' names (except when two raters drew the very same box
    with the same label) and of numpy's sort implementation. ``tie_break='input'``
    reproduces ensemble-boxes exactly (numpy's argsort tie order over the boxes in
    model-major order), i.e. the boxes of :func:`weighted_boxes_fusion` with one list per
    rater in ``ann.raters`` order.

    Args:
        ann (ImageAnnotations): boxes (N, 4) xyxy pixels, labels (N,), rater_ids (N,),
            raters (every rater who read the image).
        iou_thr (float): a box joins a cluster if IoU with its fused box > iou_thr.
            Defaults to 0.4 (the paper).
        skip_box_thr (float): WBF score threshold (scores are 1, so only a value > 1 drops
            boxes). Defaults to 0.0.
        conf_type (str): WBF confidence type (:data:`CONF_TYPES`). Defaults to ``'avg'``.
        score_mode (str): confidence c: ``'count'`` = T (as the authors' code),
            ``'fraction'`` = T / R, ``'wbf'`` = the fused WBF score (with ``'avg'`` and
            weights 1: min(n, R) / R, n = boxes in the cluster; it can exceed T / R, even
            1 with unequal weights, when one rater has several boxes in a cluster).
            Defaults to ``'count'``.
        rater_weights (Mapping[str, float] | None): rater id -> weight p_r > 0; must cover
            every rater in ``ann.raters`` (extra keys are ignored). Defaults to None (all 1).
        tie_break (str): ``'geometry'`` or ``'input'`` (see above). Defaults to
            ``'geometry'``.

    Returns:
        FusionResult: boxes (M, 4) float32 xyxy pixels, labels (M,) int64, confidences
        (M,) float32 per ``score_mode``, agreement T (M,) int64 (distinct raters),
        num_raters R, members (indices into ``ann.boxes``, ascending) and member_raters
        (distinct raters, in ``ann.raters`` order), sorted by WBF score descending.

    Raises:
        ValueError: on malformed input, naming the image: a rater id not in ``ann.raters``,
            duplicate raters, shapes that disagree, NaN/inf coordinates, non-integral
            labels, missing or non-positive rater weights, unknown modes.

    Examples:
        >>> ann = ImageAnnotations(
        ...     boxes=np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], float),
        ...     labels=np.array([1, 1, 1]), rater_ids=np.array(['a', 'b', 'b']),
        ...     raters=('a', 'b', 'c'))
        >>> res = fuse_raters(ann, score_mode='fraction')
        >>> res.boxes.tolist(), res.agreement.tolist()
        ([[1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0]], [2, 1])
        >>> res.confidences  # T / R
        array([0.6666667 , 0.33333334], dtype=float32)
        >>> [m.tolist() for m in res.members], res.member_raters
        ([[0, 1], [2]], [('a', 'b'), ('b',)])
    """
    _check_params(iou_thr, skip_box_thr, conf_type)
    if score_mode not in SCORE_MODES:
        raise ValueError(f'score_mode must be one of {SCORE_MODES}, got {score_mode!r}')
    if tie_break not in TIE_BREAKS:
        raise ValueError(f'tie_break must be one of {TIE_BREAKS}, got {tie_break!r}')
    image_id = ann.image_id
    raters = tuple(ann.raters)
    num_raters = len(raters)
    rater_index = {r: i for i, r in enumerate(raters)}
    if len(rater_index) != num_raters:
        raise ValueError(f'image {image_id!r}: duplicate rater in raters {raters}')
    boxes = ann.boxes
    if rater_weights is None and len(boxes) == 0 and len(ann.labels) == len(ann.rater_ids) == 0:
        return _empty_result(num_raters)  # fast path: most images of a screening dataset
    if rater_weights is None:
        weights = None
    else:
        missing = [r for r in raters if r not in rater_weights]
        if missing:
            raise ValueError(
                f'image {image_id!r}: rater_weights has no weight for rater {missing[0]!r}'
            )
        weights = _check_weights(
            [rater_weights[r] for r in raters], num_raters, f'image {image_id!r}: rater_weights'
        )

    try:
        boxes = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'image {image_id!r}: boxes must be numbers: {exc}') from exc
    n = boxes.shape[0] if boxes.ndim == 2 else (0 if boxes.size == 0 else -1)
    if n < 0 or (n > 0 and boxes.shape[1] != 4):
        raise ValueError(f'image {image_id!r}: boxes must have shape (N, 4), got {boxes.shape}')
    labels = np.asarray(ann.labels)
    rids = ann.rater_ids
    if labels.shape != (n,) and not (n == 0 and labels.size == 0):
        raise ValueError(f'image {image_id!r}: {n} boxes but labels of shape {labels.shape}')
    if len(rids) != n:
        raise ValueError(f'image {image_id!r}: {n} boxes but {len(rids)} rater_ids')
    if n == 0 or skip_box_thr > 1.0:  # every score is 1
        return _empty_result(num_raters)
    if labels.dtype.kind not in 'iub':
        try:
            labels = labels.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f'image {image_id!r}: labels must be integers: {exc}') from exc
    _check_labels(labels, f'image {image_id!r}')
    try:
        models = [rater_index[r] for r in (rids.tolist() if hasattr(rids, 'tolist') else rids)]
    except KeyError as exc:
        raise ValueError(
            f'image {image_id!r}: rater {exc.args[0]!r} drew a box but is not in raters {raters}'
        ) from None
    except TypeError as exc:
        raise ValueError(f'image {image_id!r}: rater_ids must be hashable ids: {exc}') from None
    rows = boxes.tolist()
    lab_list = (labels if labels.dtype.kind in 'iu' else labels.astype(np.int64)).tolist()
    # 'input': model-major order, as one list per rater in ann.raters order. 'geometry'
    # does not depend on the input order (the tie-break sorts by coordinates).
    order = range(n) if tie_break == 'geometry' else sorted(range(n), key=models.__getitem__)
    prep = _prefilter(
        rows,
        None,  # every score is 1
        None,
        lab_list,
        models,
        [1.0] * num_raters if weights is None else weights.tolist(),
        False,
        order,
        lambda i: f'image {image_id!r}: box {i}',
    )
    if not prep.box:
        return _empty_result(num_raters)
    recs = _fuse(prep, num_raters, weights, float(iou_thr), conf_type, False, tie_break)

    src = prep.src
    model = prep.model
    fb = []
    fl = []
    flat: list[int] = []
    bounds = [0]
    member_raters = []
    agreement = []
    for _, lab, fbox, mem in recs:
        fb.append(fbox)
        fl.append(lab)
        if len(mem) == 1:
            m = mem[0]
            flat.append(src[m])
            member_raters.append((raters[model[m]],))
            agreement.append(1)
        else:
            flat.extend(sorted([src[m] for m in mem]))
            present = sorted({model[m] for m in mem})
            member_raters.append(tuple([raters[q] for q in present]))
            agreement.append(len(present))
        bounds.append(len(flat))
    flat_arr = np.array(flat, dtype=np.int64)
    members = [flat_arr[bounds[q] : bounds[q + 1]] for q in range(len(recs))]
    agr = np.array(agreement, dtype=np.int64)
    if score_mode == 'count':
        conf = agr.astype(np.float32)
    elif score_mode == 'fraction':
        conf = (agr / num_raters).astype(np.float32)
    else:
        conf = np.array([-r[0] for r in recs], dtype=np.float32)
    return FusionResult(
        boxes=np.array(fb, dtype=np.float32),
        labels=np.array(fl, dtype=np.int64),
        confidences=conf,
        agreement=agr,
        num_raters=num_raters,
        members=members,
        member_raters=member_raters,
    )
