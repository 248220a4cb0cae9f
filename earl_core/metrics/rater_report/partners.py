"""Partner statistics: how often and how closely one rater's boxes are met by another's.

For each image and each ordered pair (a, b) of distinct raters in its ``raters`` who *both
drew at least one box there*, for each box x of a, take b's box with the highest IoU with x
(any label). x *has a partner* if that IoU > ``iou_thr`` (0.4); the partner *has the same
label* if that box carries x's label; x has a *same-label partner* if some box of b with x's
label has IoU > ``iou_thr`` (not necessarily the best one). Rates are pooled over all boxes
x: ``partner_rate`` = partners / boxes, ``same_label_among_partners`` = same-label best
partners / partners, ``same_label_partner_rate`` = boxes with a same-label partner / boxes;
the IoU quantiles (numpy's linear interpolation) are over the partners' IoUs.

With the WBF agreement T distribution (:func:`wbf_agreement_shares`), these are the numbers
docs/medmnist.md holds against VinDr-CXR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from earl_core.fusion.base import check_iou_thr
from earl_core.fusion.matching import segment_iou_pairs
from earl_core.fusion.wbf import fuse_raters
from earl_core.metrics.rater_report.flat import FlatImages, json_float
from earl_core.structures import Detections

__all__ = ['PARTNER_QUANTILES', 'partner_statistics', 'wbf_agreement_shares']

#: Quantiles of the partners' IoU reported by :func:`partner_statistics`.
PARTNER_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _sorted_quantile(v: np.ndarray, start: np.ndarray, k: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of the groups ``v[start[g] : start[g] + k[g]]`` (each sorted, k >= 1),
    computed as ``np.quantile`` (linear interpolation) computes it, bit for bit."""
    virt = (k - 1) * q
    prev = np.floor(virt)
    above = virt >= k - 1
    lo = np.where(above, k - 1, prev).astype(np.int64)
    hi = np.where(above, k - 1, prev + 1).astype(np.int64)
    gamma = virt - prev
    a, b = v[start + lo], v[start + hi]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _partner_summary(
    images: np.ndarray,
    boxes: np.ndarray,
    partners: np.ndarray,
    same_best: np.ndarray,
    same_ok: np.ndarray,
    quantiles: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The summary dicts of groups of ordered pairs (arrays with one entry per group)."""
    out = []
    for g in range(len(images)):
        n, k = int(boxes[g]), int(partners[g])
        d: dict[str, Any] = {
            'images': int(images[g]),
            'boxes': n,
            'partners': k,
            'partner_rate': json_float(k / n) if n else None,
            'same_label_among_partners': json_float(int(same_best[g]) / k) if k else None,
            'same_label_partner_rate': json_float(int(same_ok[g]) / n) if n else None,
        }
        for name, vals in quantiles.items():
            d[name] = json_float(vals[g]) if k else None
        out.append(d)
    return out


def partner_statistics(images: Sequence[Detections], iou_thr: float = 0.4) -> dict[str, Any]:
    """Partner rate, same label among partners, same-label partner rate, partner IoU.

    See the module docstring for the exact definition (ordered pairs of raters who both
    drew on the image; best-IoU box of the other rater, any label). Only the pairs that
    drew on a common image are held; the counts are summed over images with numpy.

    Args:
        images (Sequence[Detections]): the multi-rater dataset.
        iou_thr (float): a box has a partner when the best IoU is > iou_thr. Defaults to
            0.4.

    Returns:
        dict: ``overall`` and ``pairs`` (list, one entry per ordered pair ``rater`` ->
        ``other`` that shared an image with boxes of both), each with ``images``,
        ``boxes`` (boxes of ``rater``), ``partners``, ``partner_rate``,
        ``same_label_among_partners``, ``same_label_partner_rate`` and ``iou_p10`` ...
        ``iou_p90`` (None where undefined); ``iou_thr``.

    Examples:
        >>> im = Detections.from_raters(
        ...     np.array([[0, 0, 10, 10], [0, 0, 10, 8.], [50, 50, 60, 60]]),
        ...     np.array([1, 2, 1]), np.array(['a', 'b', 'b']), ('a', 'b'))
        >>> s = partner_statistics([im])['overall']  # a's box: partner 0.8 (other label)
        >>> s['boxes'], s['partners'], s['same_label_among_partners'], s['iou_p50']
        (3, 2, 0.0, 0.8)
    """
    thr = check_iou_thr(iou_thr, 'partner_statistics')
    flat = FlatImages(images)
    raters = flat.raters
    n_r = max(len(raters), 1)
    # Per image and ordered pair (a, b) of raters who both drew there: a's boxes.
    pair_key, pair_boxes = [], []
    for a, b in flat.rater_pairs(ordered=True, slots=np.flatnonzero(flat.slot_boxes > 0)):
        pair_key.append(flat.slot_rater[a] * n_r + flat.slot_rater[b])
        pair_boxes.append(flat.slot_boxes[a])
    # Best partner of box x among rater g's boxes: the pairs with IoU > thr suffice (a box
    # without one has no partner); first the highest IoU, then the lowest index.
    i, j, iou = segment_iou_pairs(flat.boxes, flat.sizes, thr, flat.code)
    rater = flat.slot_rater[flat.box_slot]
    x, y, v = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([iou, iou])
    o = np.lexsort((y, -v, rater[y], x))
    x, y, v = x[o], y[o], v[o]
    run = np.ones(x.shape[0], bool)
    run[1:] = (x[1:] != x[:-1]) | (rater[y[1:]] != rater[y[:-1]])
    run_id = np.cumsum(run) - 1
    same = flat.labels[x] == flat.labels[y]
    hit_ok = [np.bincount(run_id, weights=same, minlength=int(run.sum())) > 0]
    hit_key = [rater[x[run]] * n_r + rater[y[run]]]
    hit_iou, hit_same = [v[run]], [same[run]]

    if pair_key:
        uk, inv = np.unique(np.concatenate(pair_key), return_inverse=True)
        inv = inv.reshape(-1)
        n_pairs = len(uk)
        n_images = np.bincount(inv, minlength=n_pairs)
        n_boxes = np.bincount(inv, weights=np.concatenate(pair_boxes), minlength=n_pairs)
        hk = np.searchsorted(uk, np.concatenate(hit_key))
        iou_all = np.concatenate(hit_iou)
        same_all = np.concatenate(hit_same)
        ok_all = np.concatenate(hit_ok)
    else:
        uk = np.zeros(0, np.int64)
        n_pairs = 0
        n_images = n_boxes = np.zeros(0)
        hk = np.zeros(0, np.int64)
        iou_all = np.zeros(0)
        same_all = ok_all = np.zeros(0, bool)
    partners = np.bincount(hk, minlength=n_pairs)
    same_best = np.bincount(hk, weights=same_all, minlength=n_pairs)
    same_ok = np.bincount(hk, weights=ok_all, minlength=n_pairs)
    order = np.lexsort((iou_all, hk))
    v_sorted = iou_all[order]
    start = np.concatenate([[0], np.cumsum(partners)[:-1]]).astype(np.int64)
    has = partners > 0
    quant = {}
    for q in PARTNER_QUANTILES:
        vals = np.full(n_pairs, np.nan)
        vals[has] = _sorted_quantile(v_sorted, start[has], partners[has], q)
        quant[f'iou_p{round(100 * q)}'] = vals
    pairs = _partner_summary(n_images, n_boxes, partners, same_best, same_ok, quant)
    total = [np.array([x.sum()]) for x in (n_images, n_boxes, partners, same_best, same_ok)]
    k_all = int(partners.sum())
    overall_q = {
        f'iou_p{round(100 * q)}': np.array([np.quantile(iou_all, q) if k_all else np.nan])
        for q in PARTNER_QUANTILES
    }
    return {
        'iou_thr': float(iou_thr),
        'definition': (
            'ordered pairs (a, b) of raters who both drew on an image; each box of a vs the '
            'box of b with the highest IoU (any label); partner if IoU > iou_thr'
        ),
        'overall': _partner_summary(*total, overall_q)[0],
        'pairs': [
            {'rater': raters[int(key) // n_r], 'other': raters[int(key) % n_r], **d}
            for key, d in zip(uk.tolist(), pairs)
        ],
    }


def wbf_agreement_shares(images: Sequence[Detections], iou_thr: float = 0.4) -> dict[str, Any]:
    """Share of WBF fused boxes by agreement T (per label, T = distinct raters).

    Args:
        images (Sequence[Detections]): the multi-rater dataset.
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
