"""Each rater against the leave-one-out consensus: the consensus of the *other* raters on
the images the rater read, so that a rater is never scored against their own boxes.

A learning aggregator (``em``, ...) is refitted on each rater's leave-one-out data. ``mv``
(the report's default) runs on every (image, rater left out) at once, with the aggregator's
own vote: the images without each rater are clustered together
(:func:`~earl_core.fusion.matching.cluster_segments`, the batched form of the
:func:`~earl_core.fusion.matching.cluster_boxes` that ``mv`` clusters with, with ``mv``'s
``iou_thr``, ``class_agnostic`` and ``linkage``) and voted on by
:meth:`MajorityVoteAggregator.vote`: the same clusters, votes and boxes as ``mv`` on each
image without the rater (tested). The one exception is an image read by more than
:data:`LOO_EXACT_MAX_RATERS` raters: each of its copies keeps the clusters of all raters,
less the left-out rater's boxes (votes and boxes recomputed), and the report counts such
images (``fixed_cluster_images``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from earl_core.deprecation import renamed_attributes
from earl_core.fusion.aggregators import MajorityVoteAggregator, build_aggregator
from earl_core.fusion.matching import cluster_segments, iou_pairs, segment_iou_pairs
from earl_core.metrics.rater_report.flat import greedy_taken
from earl_core.structures import Detections

__all__ = ['LOO_EXACT_MAX_RATERS', 'consensus_entry', 'leave_one_out_counts']

#: Images read by more raters than this keep their all-rater clusters in the leave-one-out
#: consensus (:func:`_loo_consensus`); the report counts them (``fixed_cluster_images``).
LOO_EXACT_MAX_RATERS = 100
#: ``LOO_EXACT_MAX_READERS``: its name until 0.2 (warned; removed in 0.3). Patch the new name.
__getattr__ = renamed_attributes(__name__, globals(), LOO_EXACT_MAX_READERS='LOO_EXACT_MAX_RATERS')

#: Sum of squared leave-one-out image sizes per batch of :func:`_loo_consensus` (bounds the
#: IoU pairs held at once).
_LOO_BATCH_PAIRS = 1 << 22


def _rater_boxes(image: Detections, rater: str) -> tuple[np.ndarray, np.ndarray]:
    sel = image.rater_index == image.raters.index(rater)
    return image.boxes[sel], image.labels[sel]


def _without(image: Detections, rater: str) -> Detections:
    keep = image.rater_index != image.raters.index(rater)
    return Detections.from_raters(
        boxes=image.boxes[keep],
        labels=image.labels[keep],
        rater_ids=image.rater_ids[keep],
        raters=tuple(r for r in image.raters if r != rater),
        width=image.width,
        height=image.height,
        image_id=image.image_id,
    )


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
    return int(greedy_taken(np.zeros_like(i), i, j, iou).sum())


def consensus_entry(images: list[Detections], spec: Any) -> dict[str, Any]:
    """The report's ``consensus`` section: the aggregator, and how it was applied.

    ``fixed_cluster_images`` counts the images read by more than
    :data:`LOO_EXACT_MAX_RATERS` raters, whose leave-one-out ``mv`` consensus keeps the
    clusters of all raters (:func:`_loo_consensus`); 0 for other aggregators.
    """
    fixed = 0
    if type(build_aggregator(spec)) is MajorityVoteAggregator:
        fixed = sum(len(im.raters) > LOO_EXACT_MAX_RATERS for im in images)
    return {
        'aggregator': spec if isinstance(spec, str) else dict(spec),
        'leave_one_out': True,
        'fixed_cluster_images': fixed,
        'description': (
            'each rater is scored against the consensus of the OTHER raters on the '
            'images the rater read (and someone else read); match = IoU > iou_thr, '
            'same label, one-to-one greedy'
            + (
                f'; on images read by more than {LOO_EXACT_MAX_RATERS} raters '
                '(fixed_cluster_images) the consensus keeps the clusters of all raters, '
                "less the left-out rater's boxes"
                if fixed
                else ''
            )
        ),
    }


def leave_one_out_counts(
    images: list[Detections], spec: Any, raters: list[str], iou_thr: float
) -> dict[str, tuple[int, int, int]]:
    """Per rater (TP, rater boxes, consensus boxes) against the leave-one-out consensus.

    Args:
        images (list[Detections]): the dataset; images read by one rater are skipped.
        spec (str | Mapping): the consensus aggregator.
        raters (list[str]): every rater of ``images``.
        iou_thr (float): match threshold (IoU > iou_thr, same label, one-to-one greedy).

    Returns:
        dict: rater -> (TP, the rater's boxes on those images, the consensus boxes there).
    """
    agg = build_aggregator(spec)
    if type(agg) is MajorityVoteAggregator:
        return _loo_counts_mv(images, agg, spec, raters, iou_thr)
    read_by: dict[str, list[Detections]] = {r: [] for r in raters}
    for im in images:
        if len(im.raters) >= 2:
            for r in im.raters:
                read_by[r].append(im)
    out: dict[str, tuple[int, int, int]] = {}
    for r in raters:
        src = read_by[r]
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
    images: list[Detections],
    agg: MajorityVoteAggregator,
    spec: Any,
    raters: list[str],
    iou_thr: float,
) -> dict[str, tuple[int, int, int]]:
    """:func:`leave_one_out_counts` of ``mv``, for every image and rater at once
    (:func:`_loo_consensus`), each left-out rater's boxes matched with its consensus by
    :func:`_match_counts`."""
    col = {r: i for i, r in enumerate(raters)}
    ims = [im for im in images if len(im.raters) >= 2]
    warned: set[str] = set()
    for im in ims:
        n_loo = len(im.raters) - 1
        if agg.required_agreement(n_loo) > n_loo > 0:
            for r in im.raters:
                if r not in warned:
                    warned.add(r)
                    build_aggregator(spec)(_without(im, r))  # mv's warning, once per rater
    counts = np.zeros((len(raters), 3), np.int64)
    if ims:
        loo = _loo_consensus(ims, agg)
        n_v = loo['num']
        tp = _match_counts(
            loo['left_boxes'],
            loo['left_labels'],
            loo['left_v'],
            loo['boxes'].astype(np.float64),
            loo['labels'],
            loo['v'],
            n_v,
            iou_thr,
        )
        per_v = np.stack(
            [
                tp,
                np.bincount(loo['left_v'], minlength=n_v),
                np.bincount(loo['v'], minlength=n_v),
            ],
            1,
        )
        v_rater = np.concatenate(
            [np.fromiter((col[r] for r in im.raters), np.int64, count=len(im.raters)) for im in ims]
        )
        np.add.at(counts, v_rater, per_v)
    return {r: (int(a), int(b), int(c)) for r, (a, b, c) in zip(raters, counts.tolist())}


def _loo_consensus(images: list[Detections], agg: MajorityVoteAggregator) -> dict[str, Any]:
    """``mv``'s consensus on each image without each of its raters, for all at once.

    Each image read by m raters is taken m times (v = image, rater left out, image by
    image, raters in ``image.raters`` order), each time without the boxes of one rater;
    all of them are clustered together (:func:`~earl_core.fusion.matching.cluster_segments`)
    and voted on together (:meth:`MajorityVoteAggregator.vote`, R = m - 1): the same
    clusters, votes and boxes as ``mv`` on each image without the rater, without a Python
    loop over the images.

    Returns:
        dict: ``num`` (V), the consensus boxes (M, 4) float32, ``labels`` (M,) and ``v``
        (M,) ascending, each v's boxes in ``mv``'s order; the left-out raters' boxes
        ``left_boxes`` (L, 4), ``left_labels`` and ``left_v`` (L,) ascending.
    """
    m = np.array([len(im.raters) for im in images], np.int64)
    size = np.array([len(im) for im in images], np.int64)
    boxes = np.concatenate([im.boxes for im in images])
    labels = np.concatenate([im.labels for im in images])
    code = np.concatenate([im.rater_index for im in images])  # rater position in its image
    n_v = int(m.sum())
    v_img = np.repeat(np.arange(len(images)), m)
    v_pos = np.arange(n_v) - np.repeat(np.cumsum(m) - m, m)
    per_v = size[v_img]
    e_v = np.repeat(np.arange(n_v), per_v)  # every box of v's image, for every v
    e_box = np.repeat(np.cumsum(size)[v_img] - per_v, per_v) + (
        np.arange(int(per_v.sum())) - np.repeat(np.cumsum(per_v) - per_v, per_v)
    )
    left = code[e_box] == v_pos[e_v]  # the boxes of the rater left out
    vb, vv = e_box[~left], e_v[~left]
    out: dict[str, Any] = {
        'num': n_v,
        'boxes': np.zeros((0, 4), np.float32),
        'labels': np.zeros(0, np.int64),
        'v': np.zeros(0, np.int64),
        'left_boxes': boxes[e_box[left]],
        'left_labels': labels[e_box[left]],
        'left_v': e_v[left],
    }
    # An image read by more than LOO_EXACT_MAX_RATERS raters is clustered once, with every
    # rater; each leave-one-out copy keeps those clusters less the left-out rater's boxes
    # (votes and merged boxes recomputed). Re-clustering 1,000 copies of a crowded image
    # costs minutes, and one rater of so many barely moves the clusters.
    fixed = np.full(len(boxes), -1, np.int64)
    offsets = np.cumsum(size) - size
    n_fixed = 0
    for i in np.flatnonzero(m > LOO_EXACT_MAX_RATERS).tolist():
        sl = slice(int(offsets[i]), int(offsets[i] + size[i]))
        lab = None if agg.class_agnostic else labels[sl]
        cid = cluster_segments(
            boxes[sl], np.array([size[i]]), code[sl], agg.iou_thr, lab, agg.linkage
        )
        fixed[sl] = cid + n_fixed
        n_fixed += int(cid.max()) + 1 if len(cid) else 0
    out['fixed_cluster_images'] = int((m > LOO_EXACT_MAX_RATERS).sum())
    # In batches of leave-one-out images: a crowd (one image of 2,400 boxes read by 1,000
    # raters) gives 1,000 copies of ~10^6 overlapping pairs each, too many to hold at once.
    v_size = np.bincount(vv, minlength=n_v)
    parts = []
    v0 = 0
    while v0 < n_v:
        cost = np.cumsum(v_size[v0:] ** 2)
        v1 = v0 + max(1, int(np.searchsorted(cost, _LOO_BATCH_PAIRS, side='right')))
        lo, hi = np.searchsorted(vv, [v0, v1])
        if hi > lo:
            parts.append(
                _loo_vote(agg, boxes, labels, code, vb[lo:hi], vv[lo:hi], m[v_img] - 1, fixed)
            )
        v0 = v1
    if parts:
        b, lab, v = (np.concatenate(x) for x in zip(*parts))
        out.update(boxes=b, labels=lab, v=v)
    return out


def _loo_vote(
    agg: MajorityVoteAggregator,
    boxes: np.ndarray,
    labels: np.ndarray,
    code: np.ndarray,
    vb: np.ndarray,
    vv: np.ndarray,
    v_raters: np.ndarray,
    fixed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mv`` on the leave-one-out images whose boxes are ``vb`` (indices into ``boxes``),
    ``vv`` their image (ascending), ``v_raters[v]`` its R: fused boxes (float32), labels and
    their image, each image's boxes in ``mv``'s order. A box with ``fixed >= 0`` keeps that
    all-rater cluster (per copy) instead of being clustered again."""
    cid = np.empty(len(vb), np.int64)
    keep = fixed[vb] >= 0
    n_cl = 0
    if (~keep).any():
        sub = np.flatnonzero(~keep)
        lab = None if agg.class_agnostic else labels[vb[sub]]
        _, sizes = np.unique(vv[sub], return_counts=True)
        cid[sub] = cluster_segments(
            boxes[vb[sub]], sizes, code[vb[sub]], agg.iou_thr, lab, agg.linkage
        )
        n_cl = int(cid[sub].max()) + 1
    if keep.any():
        sub = np.flatnonzero(keep)
        _, inverse = np.unique(fixed[vb[sub]] * (int(vv.max()) + 1) + vv[sub], return_inverse=True)
        cid[sub] = inverse.reshape(-1) + n_cl
        n_cl = int(cid[sub].max()) + 1
    c_v = np.zeros(n_cl, np.int64)
    c_v[cid] = vv  # the leave-one-out image of each cluster
    kept, winner, _, _, merged = agg.vote(boxes[vb], labels[vb], cid, n_cl, v_raters[c_v])
    return merged[kept].astype(np.float32), winner[kept], c_v[kept]


def _match_counts(
    boxes_a: np.ndarray,
    labels_a: np.ndarray,
    seg_a: np.ndarray,
    boxes_b: np.ndarray,
    labels_b: np.ndarray,
    seg_b: np.ndarray,
    num_segments: int,
    iou_thr: float,
) -> np.ndarray:
    """:func:`_match_count` of many pairs of box sets at once: set a of segment s (the
    boxes with ``seg_a == s``, in order) against its set b. Both ``seg_a`` and ``seg_b``
    ascending. Returns (num_segments,) int64 matches."""
    seg = np.concatenate([seg_a, seg_b])
    side = np.concatenate([np.zeros(len(seg_a), np.int64), np.ones(len(seg_b), np.int64)])
    order = np.lexsort((side, seg))  # per segment: a's boxes, then b's, each in order
    both = np.concatenate([boxes_a, boxes_b])[order]
    lab = np.concatenate([labels_a, labels_b])[order]
    seg, side = seg[order], side[order]
    i, j, iou = segment_iou_pairs(
        both, np.bincount(seg, minlength=num_segments), iou_thr, side, lab
    )  # i is a's box, j is b's (a's come first in their segment)
    taken = greedy_taken(seg[i], i, j, iou)
    return np.bincount(seg[i][taken], minlength=num_segments)
