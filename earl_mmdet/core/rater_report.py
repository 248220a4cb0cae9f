"""Rater-quality and agreement statistics of a multi-rater detection dataset.

:func:`rater_report` returns one JSON-serialisable dict (NaN -> None) with

* ``per_rater``: images read, boxes drawn, and each rater's precision / recall / F1 against
  a **leave-one-out consensus** - the consensus of the *other* raters on the images the
  rater read (aggregator ``mv`` by default: a strict majority of the others), so that a
  rater is never scored against their own boxes;
* ``em``: the EM estimates (per-rater confusion matrix, proficiency, precision, box error;
  :class:`~earl_mmdet.core.em.RaterEM`);
* ``pairwise_f1``: for raters a and b, on the images both read, F1 = 2 TP / (n_a + n_b)
  with TP the boxes matched one-to-one (greedy, IoU > ``iou_thr``, same label);
* ``krippendorff_alpha``: Krippendorff's alpha for boxes (below);
* ``partner_statistics``: how often and how closely one rater's boxes are met by
  another's (:func:`partner_statistics`, below), overall and per ordered rater pair, and
  the WBF agreement T distribution; the numbers docs/medmnist.md holds against VinDr-CXR.

Partner statistics. For each image and each ordered pair (a, b) of distinct raters in its
``raters`` who *both drew at least one box there*, for each box x of a, take b's box with
the highest IoU with x (any label). x *has a partner* if that IoU > ``iou_thr`` (0.4); the
partner *has the same label* if that box carries x's label; x has a *same-label partner*
if some box of b with x's label has IoU > ``iou_thr`` (not necessarily the best one).
Rates are pooled over all boxes x: ``partner_rate`` = partners / boxes,
``same_label_among_partners`` = same-label best partners / partners,
``same_label_partner_rate`` = boxes with a same-label partner / boxes; the IoU quantiles
(numpy's linear interpolation) are over the partners' IoUs.

Krippendorff's alpha for boxes, after the idea of Tschirschwitz et al. (GCPR 2022,
github.com/Madave94/kalphacv): boxes of each image are grouped into *units* (class-agnostic
clusters, IoU > ``iou_thr``, at most one box per rater); every rater who read the image
gives one value per unit - their box (with its label) or *nothing*. The distance between
two values is 0 for nothing vs nothing, 1 for a box vs nothing, 1 for boxes of different
labels and 1 - IoU for boxes of the same label. alpha = 1 - D_o / D_e, D_o the mean
within-unit disagreement, D_e the disagreement expected between any two pairable values
(pooled over all units of all images; for the IoU part the boxes' pixel coordinates are
compared across images, which is what chance pairing means here). ``alpha_nominal`` uses
the 0/1 distance (same label or both nothing). Units from images that nobody drew on are
left out unless ``include_empty_images=True`` (they would all be perfect agreement).
kalphacv averages a per-image alpha instead; the pooled alpha is defined even on images
where every value agrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .aggregators import Aggregator, AggregatorSpec, MajorityVoteAggregator, build_aggregator
from .box_ops import box_iou, check_iou_thr, paired_box_iou
from .coco_io import FusedBoxes, RaterBoxes
from .em import RaterEM
from .fusion import fuse_raters
from .matching import cluster_boxes, iou_pairs, overlap_components

__all__ = [
    'PARTNER_QUANTILES',
    'krippendorff_alpha_boxes',
    'pairwise_f1',
    'partner_statistics',
    'rater_report',
    'truth_quality',
    'wbf_agreement_shares',
]

#: Quantiles of the partners' IoU reported by :func:`partner_statistics`.
PARTNER_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

#: Above this many boxes of one label, D_e's same-label IoU sum is estimated from
#: ``_ALPHA_SAMPLES`` random pairs (fixed seed) instead of all pairs.
_ALPHA_EXACT_MAX = 8000
_ALPHA_SAMPLES = 2_000_000
#: Sampled pairs per IoU chunk (bounds the memory of the estimate).
_ALPHA_CHUNK = 1 << 18


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _arrays(image: RaterBoxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4) float64 boxes, (N,) int64 labels and (N,) str rater ids of an image."""
    return (
        np.asarray(image.boxes, np.float64).reshape(-1, 4),
        np.asarray(image.labels, np.int64).reshape(-1),
        np.asarray(image.rater_ids).astype(str).reshape(-1),
    )


def _rater_boxes(image: RaterBoxes, rater: str) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels, rids = _arrays(image)
    sel = rids == rater
    return boxes[sel], labels[sel]


def _without(image: RaterBoxes, rater: str) -> RaterBoxes:
    boxes, labels, rids = _arrays(image)
    keep = rids != rater
    return RaterBoxes(
        boxes=boxes[keep],
        labels=labels[keep],
        rater_ids=rids[keep],
        raters=tuple(r for r in (str(x) for x in image.raters) if r != rater),
        width=image.width,
        height=image.height,
        image_id=image.image_id,
    )


def _greedy_taken(seg: np.ndarray, a: np.ndarray, b: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """One-to-one greedy matching of candidate pairs, independently per segment.

    Within a segment (one pair of box sets), pairs are taken in decreasing IoU (ties: lower
    ``a``, then lower ``b``) unless a box of theirs is taken already: the greedy of
    :func:`~earl_mmdet.core.matching.match_boxes` on its candidate pairs, without the
    matrix. ``a`` and ``b`` index disjoint sets of boxes.

    Returns:
        np.ndarray: (K,) bool, the pairs taken.
    """
    taken = np.zeros(seg.shape[0], bool)
    used: set[tuple[int, int]] = set()
    order = np.lexsort((b, a, -iou, seg))
    for k, s, i, j in zip(
        order.tolist(), seg[order].tolist(), a[order].tolist(), b[order].tolist()
    ):
        if (s, i) not in used and (s, j) not in used:
            used.add((s, i))
            used.add((s, j))
            taken[k] = True
    return taken


def _match_count(
    boxes_a: np.ndarray,
    labels_a: np.ndarray,
    boxes_b: np.ndarray,
    labels_b: np.ndarray,
    iou_thr: float,
) -> int:
    """``len(match_boxes(boxes_a, boxes_b, iou_thr, labels_a, labels_b)[0])``, sparse."""
    n = boxes_a.shape[0]
    if n == 0 or len(labels_b) == 0:
        return 0
    both = np.concatenate([boxes_a, np.asarray(boxes_b, np.float64).reshape(-1, 4)])
    side = np.arange(both.shape[0]) >= n
    lab = np.concatenate([labels_a, np.asarray(labels_b, np.int64).reshape(-1)])
    i, j, iou = iou_pairs(both, iou_thr, side, lab)  # i < n <= j: i is a's, j is b's
    return int(_greedy_taken(np.zeros_like(i), i, j, iou).sum())


def _pairs_within(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (p, q), p < q, of all pairs inside consecutive groups of the given sizes."""
    end = np.repeat(np.cumsum(sizes), sizes)
    cnt = end - np.arange(end.shape[0]) - 1
    p = np.repeat(np.arange(end.shape[0]), cnt)
    q = p + 1 + (np.arange(p.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return p, q


def pairwise_f1(
    images: Sequence[RaterBoxes], raters: Sequence[str], iou_thr: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise rater IoU-F1 on the images both raters read.

    Args:
        images (Sequence[RaterBoxes]): the dataset.
        raters (Sequence[str]): rater order of the matrix.
        iou_thr (float): boxes match one-to-one (greedy) when IoU > iou_thr and the labels
            are equal. Defaults to 0.5.

    Returns:
        tuple[np.ndarray, np.ndarray]: (R, R) F1 = 2 TP / (n_a + n_b) (NaN where the two
        drew no box on shared images or share no image; diagonal 1 where the rater drew a
        box) and (R, R) int64 number of shared images.
    """
    raters = [str(r) for r in raters]
    idx = {r: i for i, r in enumerate(raters)}
    n = len(raters)
    tp = np.zeros((n, n))
    tot = np.zeros((n, n))
    shared = np.zeros((n, n), np.int64)
    for im in images:
        readers = [str(r) for r in im.raters if str(r) in idx]
        boxes, labels, rids = _arrays(im)
        drawn = {r: int(np.count_nonzero(rids == r)) for r in readers}
        for ai, a in enumerate(readers):
            for b in readers[ai:]:
                i, j = idx[a], idx[b]
                shared[i, j] += 1
                if a == b:
                    tp[i, i] += drawn[a]
                    tot[i, i] += 2 * drawn[a]
                    continue
                shared[j, i] += 1
                tot[i, j] += drawn[a] + drawn[b]
                tot[j, i] += drawn[a] + drawn[b]
        _add_matches(
            tp, [idx[r] for r in dict.fromkeys(readers)], boxes, labels, rids, raters, iou_thr
        )
    with np.errstate(invalid='ignore', divide='ignore'):
        f1 = np.where(tot > 0, 2 * tp / np.where(tot > 0, tot, 1), np.nan)
    return f1, shared


def _add_matches(
    tp: np.ndarray,
    readers: list[int],
    boxes: np.ndarray,
    labels: np.ndarray,
    rids: np.ndarray,
    raters: list[str],
    iou_thr: float,
) -> None:
    """Add one image's greedy one-to-one matches of every two readers to ``tp`` (R, R)."""
    if len(readers) < 2 or boxes.shape[0] == 0:
        return
    # code = the reader's position on the image (who comes first orients the tie-breaking).
    code = np.full(boxes.shape[0], -1, np.int64)
    for k, r in enumerate(readers):
        code[rids == raters[r]] = k
    sub = np.flatnonzero(code >= 0)
    i, j, iou = iou_pairs(boxes[sub], iou_thr, code[sub], labels[sub])
    i, j = sub[i], sub[j]
    first = np.where(code[i] < code[j], i, j)
    second = np.where(code[i] < code[j], j, i)
    d = len(readers)
    seg = code[first] * d + code[second]
    counts = np.bincount(seg[_greedy_taken(seg, first, second, iou)], minlength=d * d)
    for s in np.flatnonzero(counts).tolist():
        a, b = readers[s // d], readers[s % d]
        tp[a, b] += counts[s]
        tp[b, a] += counts[s]


def _same_label_iou_sum(boxes: np.ndarray, rng: np.random.Generator) -> float:
    """sum over ordered pairs i != j of IoU(box_i, box_j)."""
    n = boxes.shape[0]
    if n < 2:
        return 0.0
    if n <= _ALPHA_EXACT_MAX:
        # Only overlapping pairs count (IoU 0 elsewhere): the sweep finds them sparsely.
        return 2.0 * float(iou_pairs(boxes, 0.0)[2].sum())
    i = rng.integers(0, n, _ALPHA_SAMPLES)
    j = rng.integers(0, n - 1, _ALPHA_SAMPLES)
    j = j + (j >= i)  # uniform over j != i
    total = 0.0
    for s in range(0, _ALPHA_SAMPLES, _ALPHA_CHUNK):
        a, b = i[s : s + _ALPHA_CHUNK], j[s : s + _ALPHA_CHUNK]
        total += float(paired_box_iou(boxes[a], boxes[b]).sum())
    return total / _ALPHA_SAMPLES * n * (n - 1)


def krippendorff_alpha_boxes(
    images: Sequence[RaterBoxes],
    iou_thr: float = 0.5,
    include_empty_images: bool = False,
) -> dict[str, Any]:
    """Krippendorff's alpha for boxes (see the module docstring for the distance).

    Args:
        images (Sequence[RaterBoxes]): the dataset; images read by fewer than two
            raters give no pairable value and are skipped.
        iou_thr (float): unit clustering threshold (class-agnostic, IoU > iou_thr).
            Defaults to 0.5.
        include_empty_images (bool): count an image nobody drew on as one unit of all
            *nothing* values. Defaults to False.

    Returns:
        dict: ``alpha`` (IoU-graded distance), ``alpha_nominal`` (0/1 distance), ``units``,
        ``values`` (pairable values), ``observed_disagreement``, ``expected_disagreement``,
        ``distance`` (a description); alphas are None where D_e = 0.

    Examples:
        >>> im = RaterBoxes(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...                 np.array([0, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> krippendorff_alpha_boxes([im])['alpha']  # one unit, labels disagree
        0.0
    """
    rng = np.random.default_rng(0)
    d_o = 0.0  # sum over units of sum_{i != j} delta / (m_u - 1), IoU distance
    d_o_nom = 0.0
    n_vals = 0
    n_units = 0
    n_nothing = 0
    box_list: list[np.ndarray] = []
    lab_list: list[np.ndarray] = []
    for im in images:
        m = len(im.raters)
        if m < 2:
            continue
        boxes, labels, rids = _arrays(im)
        if len(labels) == 0:
            if include_empty_images:
                n_units += 1
                n_vals += m
                n_nothing += m
            continue
        units = cluster_boxes(boxes, rids, iou_thr)
        k = np.array([len(u) for u in units])
        members = np.concatenate(units)
        b, lab = boxes[members], labels[members]
        # ordered pairs within a unit: box-box (twice each unordered pair), box-nothing.
        p, q = _pairs_within(k)
        same = lab[p] == lab[q]
        dist_bb = 2.0 * float(np.where(same, 1.0 - paired_box_iou(b[p], b[q]), 1.0).sum())
        dist_bb_nom = 2.0 * float(np.count_nonzero(~same))
        dist_bn = 2.0 * float((k * (m - k)).sum())
        d_o += (dist_bb + dist_bn) / (m - 1)
        d_o_nom += (dist_bb_nom + dist_bn) / (m - 1)
        n_units += len(units)
        n_vals += m * len(units)
        n_nothing += int((m - k).sum())
        box_list.append(b)
        lab_list.append(lab)
    out: dict[str, Any] = {
        'alpha': None,
        'alpha_nominal': None,
        'units': n_units,
        'values': n_vals,
        'observed_disagreement': None,
        'expected_disagreement': None,
        'iou_thr': float(iou_thr),
        'distance': (
            'units = class-agnostic clusters (IoU > iou_thr, one box per rater); '
            'nothing vs nothing 0, box vs nothing 1, different labels 1, same label 1 - IoU'
        ),
    }
    if n_vals < 2:
        return out
    all_boxes = np.concatenate(box_list) if box_list else np.zeros((0, 4))
    all_labels = np.concatenate(lab_list) if lab_list else np.zeros(0, np.int64)
    n = n_vals
    pairs = n * (n - 1)
    agree_same = float(n_nothing * (n_nothing - 1))  # nothing-nothing pairs: distance 0
    agree_same_nom = agree_same
    for lab in np.unique(all_labels):
        sel = all_boxes[all_labels == lab]
        agree_same += _same_label_iou_sum(sel, rng)
        agree_same_nom += float(len(sel) * (len(sel) - 1))
    d_e = (pairs - agree_same) / pairs
    d_e_nom = (pairs - agree_same_nom) / pairs
    do = d_o / n
    do_nom = d_o_nom / n
    out['observed_disagreement'] = _num(do)
    out['expected_disagreement'] = _num(d_e)
    if d_e > 0:
        out['alpha'] = _num(1.0 - do / d_e)
    if d_e_nom > 0:
        out['alpha_nominal'] = _num(1.0 - do_nom / d_e_nom)
    return out


class _PartnerCounts:
    """Running counts of one group of ordered rater pairs (or of all of them)."""

    def __init__(self) -> None:
        self.boxes = 0
        self.same_label_partners = 0
        self.same_label_best = 0
        self.images = 0
        self.ious: list[np.ndarray] = []

    def add(self, boxes: int, ious: np.ndarray, same_best: int, same_ok: int) -> None:
        """One ordered pair on one image: its ``boxes``, the partners' best IoUs, how many
        best partners have the same label, how many boxes have a same-label partner."""
        self.boxes += boxes
        self.same_label_partners += same_ok
        self.same_label_best += same_best
        self.ious.append(ious)
        self.images += 1

    def summary(self) -> dict[str, Any]:
        ious = np.concatenate(self.ious) if self.ious else np.zeros(0)
        n, k = self.boxes, len(ious)
        out: dict[str, Any] = {
            'images': self.images,
            'boxes': n,
            'partners': k,
            'partner_rate': _num(k / n) if n else None,
            'same_label_among_partners': _num(self.same_label_best / k) if k else None,
            'same_label_partner_rate': _num(self.same_label_partners / n) if n else None,
        }
        for q in PARTNER_QUANTILES:
            out[f'iou_p{round(100 * q)}'] = _num(np.quantile(ious, q)) if k else None
        return out


def partner_statistics(images: Sequence[RaterBoxes], iou_thr: float = 0.4) -> dict[str, Any]:
    """Partner rate, same label among partners, same-label partner rate, partner IoU.

    See the module docstring for the exact definition (ordered pairs of raters who both
    drew on the image; best-IoU box of the other rater, any label).

    Args:
        images (Sequence[RaterBoxes]): the multi-rater dataset.
        iou_thr (float): a box has a partner when the best IoU is > iou_thr. Defaults to
            0.4.

    Returns:
        dict: ``overall`` and ``pairs`` (list, one entry per ordered pair ``rater`` ->
        ``other`` that shared an image with boxes of both), each with ``images``,
        ``boxes`` (boxes of ``rater``), ``partners``, ``partner_rate``,
        ``same_label_among_partners``, ``same_label_partner_rate`` and ``iou_p10`` ...
        ``iou_p90`` (None where undefined); ``iou_thr``.

    Examples:
        >>> im = RaterBoxes(np.array([[0, 0, 10, 10], [0, 0, 10, 8.], [50, 50, 60, 60]]),
        ...                 np.array([1, 2, 1]), np.array(['a', 'b', 'b']), ('a', 'b'))
        >>> s = partner_statistics([im])['overall']  # a's box: partner 0.8 (other label)
        >>> s['boxes'], s['partners'], s['same_label_among_partners'], s['iou_p50']
        (3, 2, 0.0, 0.8)
    """
    thr = check_iou_thr(iou_thr)
    overall = _PartnerCounts()
    pairs: dict[tuple[str, str], _PartnerCounts] = {}
    for im in images:
        boxes, labels, rids = _arrays(im)
        drew = [r for r in dict.fromkeys(str(x) for x in im.raters) if np.any(rids == r)]
        if len(drew) < 2:
            continue
        code = np.zeros(len(rids), np.int64)
        for k, r in enumerate(drew):
            code[rids == r] = k
        d = len(drew)
        # Best partner of box x among rater g's boxes: the pairs with IoU > thr suffice (a
        # box without one has no partner); first the highest IoU, then the lowest index.
        i, j, iou = iou_pairs(boxes, thr, code)
        x, y, v = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([iou, iou])
        o = np.lexsort((y, -v, code[y], x))
        x, y, v = x[o], y[o], v[o]
        run = np.ones(x.shape[0], bool)
        run[1:] = (x[1:] != x[:-1]) | (code[y[1:]] != code[y[:-1]])
        run_id = np.cumsum(run) - 1
        same = labels[x] == labels[y]
        same_ok = np.bincount(run_id, weights=same, minlength=int(run.sum())) > 0
        x, y, v, same_best = x[run], y[run], v[run], same[run]
        seg = code[x] * d + code[y]
        by_seg = np.argsort(seg, kind='stable')
        bounds = np.searchsorted(seg[by_seg], np.arange(d * d + 1))
        n_drawn = np.bincount(code, minlength=d)
        for a in range(d):
            for b in range(d):
                if a == b:
                    continue
                s = by_seg[bounds[a * d + b] : bounds[a * d + b + 1]]
                counts = (
                    int(n_drawn[a]),
                    v[s],
                    int(np.count_nonzero(same_best[s])),
                    int(np.count_nonzero(same_ok[s])),
                )
                overall.add(*counts)
                pairs.setdefault((drew[a], drew[b]), _PartnerCounts()).add(*counts)
    return {
        'iou_thr': float(iou_thr),
        'definition': (
            'ordered pairs (a, b) of raters who both drew on an image; each box of a vs the '
            'box of b with the highest IoU (any label); partner if IoU > iou_thr'
        ),
        'overall': overall.summary(),
        'pairs': [{'rater': a, 'other': b, **c.summary()} for (a, b), c in sorted(pairs.items())],
    }


def wbf_agreement_shares(images: Sequence[RaterBoxes], iou_thr: float = 0.4) -> dict[str, Any]:
    """Share of WBF fused boxes by agreement T (per label, T = distinct raters).

    Args:
        images (Sequence[RaterBoxes]): the multi-rater dataset.
        iou_thr (float): WBF IoU threshold. Defaults to 0.4.

    Returns:
        dict: ``fused_boxes``, ``iou_thr``, ``counts`` (T -> fused boxes) and ``shares``
        (T -> fraction of the fused boxes), T as str keys (JSON).
    """
    counts: dict[int, int] = {}
    for im in images:
        for t in fuse_raters(im, iou_thr=iou_thr).agreement.tolist():
            counts[t] = counts.get(t, 0) + 1
    total = sum(counts.values())
    return {
        'iou_thr': float(iou_thr),
        'fused_boxes': total,
        'counts': {str(t): c for t, c in sorted(counts.items())},
        'shares': {str(t): c / total for t, c in sorted(counts.items())},
    }


def _loo_counts(
    images: list[RaterBoxes], spec: Any, raters: list[str], iou_thr: float
) -> dict[str, tuple[int, int, int]]:
    """Per rater (TP, rater boxes, consensus boxes) against the leave-one-out consensus."""
    agg = build_aggregator(spec)
    if type(agg) is MajorityVoteAggregator:
        return _loo_counts_mv(images, agg, spec, raters, iou_thr)
    out: dict[str, tuple[int, int, int]] = {}
    for r in raters:
        src = [im for im in images if len(im.raters) >= 2 and r in {str(x) for x in im.raters}]
        # A learning aggregator (em) is refitted on the leave-one-out data of each rater.
        consensus = build_aggregator(spec).fuse_all([_without(im, r) for im in src])
        tp = n_r = n_c = 0
        for im, cons in zip(src, consensus):
            b, lab = _rater_boxes(im, r)
            tp += _match_count(b, lab, cons.boxes, cons.labels, iou_thr)
            n_r += len(lab)
            n_c += len(cons.labels)
        out[r] = (tp, n_r, n_c)
    return out


def _loo_counts_mv(
    images: list[RaterBoxes],
    agg: MajorityVoteAggregator,
    spec: Any,
    raters: list[str],
    iou_thr: float,
) -> dict[str, tuple[int, int, int]]:
    """:func:`_loo_counts` of ``mv`` from one clustering per image.

    Leaving a rater out only removes nodes from the graph "IoU > thr, other rater (, same
    label)" whose connected components :func:`cluster_boxes` clusters one by one: a clique
    component stays one cluster without the rater's boxes, and only the other components
    that held one of them are clustered again. The same clusters, votes and boxes as
    ``mv`` on the image without the rater.
    """
    counts = {r: [0, 0, 0] for r in raters}
    warned: set[str] = set()
    for im in images:
        if len(im.raters) < 2:
            continue
        boxes, labels, rids = _arrays(im)
        lab = None if agg.class_agnostic else labels
        _, groups = np.unique(rids, return_inverse=True)
        comp, clique = overlap_components(boxes, groups.reshape(-1), agg.iou_thr, lab)
        # Clusters of the whole image: a clique component is one cluster, the other
        # components are clustered (together, in one call).
        other = ~clique[comp]
        base = comp.copy()
        nxt = _recluster(agg, (boxes, lab, rids), np.flatnonzero(other), base, len(clique))
        for r in dict.fromkeys(str(x) for x in im.raters):
            num_raters = len([x for x in im.raters if str(x) != r])
            if agg.required_votes(num_raters) > num_raters > 0 and r not in warned:
                warned.add(r)
                build_aggregator(spec)(_without(im, r))  # mv's warning, once per rater
            keep = rids != r
            # Without r: only the non-clique components that held a box of r change.
            cid = np.where(keep, base, -1)
            redo = other & keep & np.isin(comp, comp[~keep])
            _recluster(agg, (boxes, lab, rids), np.flatnonzero(redo), cid, nxt)
            cons_boxes, cons_labels = _mv_vote(agg, boxes, labels, keep, cid, num_raters)
            c = counts[r]
            c[0] += _match_count(boxes[~keep], labels[~keep], cons_boxes, cons_labels, iou_thr)
            c[1] += int(np.count_nonzero(~keep))
            c[2] += len(cons_labels)
    return {r: (c[0], c[1], c[2]) for r, c in counts.items()}


def _recluster(
    agg: MajorityVoteAggregator,
    image: tuple[np.ndarray, np.ndarray | None, np.ndarray],
    idx: np.ndarray,
    cid: np.ndarray,
    nxt: int,
) -> int:
    """Write ``cluster_boxes`` of the boxes ``idx`` into ``cid`` (ids from ``nxt`` on).

    ``idx`` (sorted) is a union of whole components of its own graph, so one call
    clusters each of them as a call of its own would. Returns the next free id.
    """
    boxes, lab, rids = image
    if idx.size:
        sub = None if lab is None else lab[idx]
        for members in cluster_boxes(boxes[idx], rids[idx], agg.iou_thr, sub, agg.linkage):
            cid[idx[members]] = nxt
            nxt += 1
    return nxt


def _mv_vote(
    agg: MajorityVoteAggregator,
    boxes: np.ndarray,
    labels: np.ndarray,
    keep: np.ndarray,
    cid: np.ndarray,
    num_raters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``mv``'s vote and box merge on the clusters ``cid`` of the kept boxes, vectorised.

    Returns:
        tuple[np.ndarray, np.ndarray]: (M, 4) float32 boxes and (M,) labels, ordered by
        the clusters' smallest box index (``mv``'s order).
    """
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    _, cl = np.unique(cid[kept], return_inverse=True)
    cl = cl.reshape(-1)
    n_cl = int(cl.max()) + 1
    lab_values, lab = np.unique(labels[kept], return_inverse=True)
    lab = lab.reshape(-1)
    # Votes per (cluster, label); per cluster the most voted label, ties: the smallest.
    key, votes = np.unique(cl * len(lab_values) + lab, return_counts=True)
    kc, kl = key // len(lab_values), key % len(lab_values)
    o = np.lexsort((kl, -votes, kc))
    top = o[np.r_[True, kc[o][1:] != kc[o][:-1]]]
    winner, t = kl[top], votes[top]  # indexed by cluster (kc[top] == 0..n_cl-1)
    ok = t >= agg.required_votes(num_raters)
    voter = ok[cl] & (lab == winner[cl])
    vc, vb = cl[voter], boxes[kept[voter]]
    if agg.box_mode == 'average':
        merged = _summed(vc, vb, n_cl) / t[:, None]
    else:
        lo = np.full((n_cl, 2), np.inf)
        hi = np.full((n_cl, 2), -np.inf)
        if agg.box_mode == 'union':
            np.minimum.at(lo, vc, vb[:, :2])
            np.maximum.at(hi, vc, vb[:, 2:])
            merged = np.concatenate([lo, hi], 1)
        else:  # intersection, the average where it is empty
            lo[:] = -np.inf
            hi[:] = np.inf
            np.maximum.at(lo, vc, vb[:, :2])
            np.minimum.at(hi, vc, vb[:, 2:])
            merged = np.concatenate([lo, hi], 1)
            empty = (merged[:, 2] <= merged[:, 0]) | (merged[:, 3] <= merged[:, 1])
            merged[empty] = (_summed(vc, vb, n_cl) / t[:, None])[empty]
    first = np.full(n_cl, kept.shape[0])
    np.minimum.at(first, cl, np.arange(kept.shape[0]))
    out = np.flatnonzero(ok)
    out = out[np.argsort(first[out])]
    return merged[out].astype(np.float32), lab_values[winner[out]]


def _summed(cluster: np.ndarray, boxes: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) sums of the boxes per cluster, added in box order (as ``ndarray.sum(0)``)."""
    out = np.zeros((n, 4))
    np.add.at(out, cluster, boxes)
    return out


def rater_report(
    images: Sequence[RaterBoxes],
    aggregator: AggregatorSpec | Aggregator = 'mv',
    iou_thr: float = 0.5,
    class_names: Sequence[str] | None = None,
    em_params: Mapping[str, Any] | None = None,
    include_empty_images: bool = False,
    partner_iou_thr: float = 0.4,
) -> dict[str, Any]:
    """Agreement and rater-quality statistics; JSON-serialisable (NaN -> None).

    Args:
        images (Sequence[RaterBoxes]): the multi-rater dataset.
        aggregator (str | Mapping | Aggregator): builds each rater's leave-one-out
            consensus from the *other* raters' boxes (refitted on the leave-one-out data if
            it learns, e.g. ``em``). Defaults to ``'mv'`` (strict majority of the others).
        iou_thr (float): matching threshold (IoU > iou_thr, same label, one-to-one greedy)
            for precision / recall / pairwise F1, and the unit threshold of alpha.
            Defaults to 0.5.
        class_names (Sequence[str] | None): names of the K classes (for ``em``).
        em_params (Mapping | None): :class:`RaterEM` arguments. Defaults to None.
        include_empty_images (bool): see :func:`krippendorff_alpha_boxes`.
        partner_iou_thr (float): threshold of :func:`partner_statistics` and of the WBF
            agreement shares. Defaults to 0.4.

    Returns:
        dict: ``raters``, ``num_images``, ``num_boxes``, ``iou_thr``, ``consensus``,
        ``per_rater`` (rater -> images_read, boxes, boxes_per_image, images_with_boxes,
        loo_images, tp, consensus_boxes, precision, recall, f1), ``em`` (see
        :meth:`RaterEM.summary`), ``pairwise_f1`` (raters, matrix, shared_images),
        ``krippendorff_alpha``, ``partner_statistics`` (:func:`partner_statistics`),
        ``wbf_agreement`` (:func:`wbf_agreement_shares`).
    """
    images = list(images)
    check_iou_thr(iou_thr)
    raters = sorted({str(r) for im in images for r in im.raters})
    spec = aggregator.get_params() if isinstance(aggregator, Aggregator) else aggregator
    build_aggregator(spec)  # validate early, before the per-rater loop

    loo = _loo_counts(images, spec, raters, float(iou_thr))
    per_rater: dict[str, dict[str, Any]] = {}
    for r in raters:
        read = [im for im in images if r in {str(x) for x in im.raters}]
        drawn = [int(np.count_nonzero(_arrays(im)[2] == r)) for im in read]
        n_boxes = sum(drawn)
        tp, n_r, n_c = loo[r]
        prec = tp / n_r if n_r else float('nan')
        rec = tp / n_c if n_c else float('nan')
        f1 = 2 * tp / (n_r + n_c) if (n_r + n_c) else float('nan')
        per_rater[r] = {
            'images_read': len(read),
            'boxes': int(n_boxes),
            'boxes_per_image': _num(n_boxes / len(read)) if read else None,
            'images_with_boxes': sum(1 for k in drawn if k > 0),
            'loo_images': sum(1 for im in read if len(im.raters) >= 2),
            'tp': int(tp),
            'rater_boxes_on_loo_images': int(n_r),
            'consensus_boxes': int(n_c),
            'precision': _num(prec),
            'recall': _num(rec),
            'f1': _num(f1),
        }

    em_summary: dict[str, Any] | None = None
    if images and raters:
        num_classes = None if class_names is None else len(class_names)
        params = dict(em_params or {})
        params.setdefault('num_classes', num_classes)
        em = RaterEM(**params).fit(images)
        em_summary = em.summary(class_names)
        em_summary['params'] = em.get_params()

    f1, shared = pairwise_f1(images, raters, iou_thr)
    return {
        'raters': raters,
        'num_images': len(images),
        'num_boxes': int(sum(len(im.labels) for im in images)),
        'iou_thr': float(iou_thr),
        'consensus': {
            'aggregator': spec if isinstance(spec, str) else dict(spec),
            'leave_one_out': True,
            'description': (
                'each rater is scored against the consensus of the OTHER raters on the '
                'images the rater read (and someone else read); match = IoU > iou_thr, '
                'same label, one-to-one greedy'
            ),
        },
        'per_rater': per_rater,
        'em': em_summary,
        'pairwise_f1': {
            'raters': raters,
            'matrix': [[_num(v) for v in row] for row in f1],
            'shared_images': shared.tolist(),
        },
        'krippendorff_alpha': krippendorff_alpha_boxes(images, iou_thr, include_empty_images),
        'partner_statistics': partner_statistics(images, partner_iou_thr),
        'wbf_agreement': wbf_agreement_shares(images, partner_iou_thr),
    }


def truth_quality(
    fused: Sequence[FusedBoxes],
    gold: Sequence[RaterBoxes],
    iou_thr: float = 0.5,
) -> dict[str, Any]:
    """How good a training truth is against the real one (simulated data only).

    A training box is *correct* when it overlaps a gold box of the same label with
    IoU > ``iou_thr`` (many-to-one: the NA baseline's three boxes on one object are all
    correct); a gold object is *covered* when some correct training box overlaps it. A
    training box is a *false positive* when it overlaps no gold box at all (IoU <=
    ``iou_thr`` with every gold box, any label): on clutter or background, not a wrong
    label. A gold object is *missed* when no training box overlaps it (any label).

    Args:
        fused (Sequence[FusedBoxes]): per image, the aggregator's boxes (xyxy pixels),
            labels and confidence c.
        gold (Sequence[RaterBoxes]): per image, in the same order, the true boxes.
        iou_thr (float): IoU threshold. Defaults to 0.5.

    Returns:
        dict: ``boxes``, ``gold_boxes``, ``correct``, ``covered``, ``precision``
        (correct / boxes), ``recall`` (covered / gold_boxes), ``weighted_precision``
        (sum of c over correct boxes / sum of c: the share of an EARL loss weight that
        lands on correct boxes), ``mean_iou`` (correct boxes' best IoU with a gold box of
        their label), ``false_positives`` and ``fp_share`` (of the boxes), ``missed``
        and ``miss_share`` (of the gold objects), and ``by_agreement`` (T -> boxes,
        correct, precision, false_positives, fp_share, and ``miss_share_t_at_least``:
        the share of gold objects that no box of agreement >= T overlaps, i.e. what
        keeping only boxes with agreement >= T would miss).

    Raises:
        ValueError: if the two sequences differ in length.
    """
    fused, gold = list(fused), list(gold)
    if len(fused) != len(gold):
        raise ValueError(f'{len(fused)} fused images but {len(gold)} gold images')
    n_boxes = n_gold = n_correct = n_covered = 0
    c_all = c_correct = iou_sum = 0.0
    by_t: dict[int, list[int]] = {}
    gold_best_t: list[np.ndarray] = []  # per gold object: highest T of a box on it, 0 = none
    for f, g in zip(fused, gold):
        n_boxes += len(f)
        n_gold += len(g.boxes)
        correct = np.zeros(len(f), bool)
        fp = np.ones(len(f), bool)
        best = np.zeros(len(f))
        agreement = np.asarray(f.agreement, np.int64).reshape(-1)
        best_t = np.zeros(len(g.boxes), np.int64)
        if len(f) and len(g.boxes):
            iou = box_iou(np.asarray(f.boxes, np.float64), np.asarray(g.boxes, np.float64))
            same = np.asarray(f.labels)[:, None] == np.asarray(g.labels)[None, :]
            overlap = iou > iou_thr
            hit = overlap & same
            correct = hit.any(axis=1)
            fp = ~overlap.any(axis=1)
            best = np.where(same, iou, 0.0).max(axis=1)
            n_covered += int(hit.any(axis=0).sum())
            best_t = np.where(overlap, agreement[:, None], 0).max(axis=0)
        gold_best_t.append(best_t)
        n_correct += int(correct.sum())
        iou_sum += float(best[correct].sum())
        conf = np.asarray(f.confidence, np.float64)
        c_all += float(conf.sum())
        c_correct += float(conf[correct].sum())
        for t, ok, bad in zip(agreement.tolist(), correct.tolist(), fp.tolist()):
            entry = by_t.setdefault(int(t), [0, 0, 0])
            entry[0] += 1
            entry[1] += int(ok)
            entry[2] += int(bad)

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    gold_t = np.concatenate(gold_best_t) if gold_best_t else np.zeros(0, np.int64)
    n_fp = sum(e[2] for e in by_t.values())
    n_missed = int((gold_t == 0).sum())

    return dict(
        boxes=n_boxes,
        gold_boxes=n_gold,
        correct=n_correct,
        covered=n_covered,
        iou_thr=float(iou_thr),
        precision=ratio(n_correct, n_boxes),
        recall=ratio(n_covered, n_gold),
        weighted_precision=ratio(c_correct, c_all),
        mean_iou=ratio(iou_sum, n_correct),
        false_positives=n_fp,
        fp_share=ratio(n_fp, n_boxes),
        missed=n_missed,
        miss_share=ratio(n_missed, n_gold),
        by_agreement={
            t: dict(
                boxes=b,
                correct=c,
                precision=ratio(c, b),
                false_positives=x,
                fp_share=ratio(x, b),
                miss_share_t_at_least=ratio(int((gold_t < t).sum()), n_gold),
            )
            for t, (b, c, x) in sorted(by_t.items())
        },
    )
