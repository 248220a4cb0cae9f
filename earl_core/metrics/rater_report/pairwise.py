"""Pairwise agreement: for raters a and b, on the images both read, F1 = 2 TP / (n_a + n_b),
TP the boxes matched one-to-one (greedy, IoU > ``iou_thr``, same label).

Held for every two raters who read a common image (sparse), and as a matrix over the raters
who read the most images (:func:`most_active`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from earl_core.fusion.matching import segment_iou_pairs
from earl_core.metrics.rater_report.flat import FlatImages, greedy_taken
from earl_core.structures import Detections

__all__ = ['MAX_SHOWN_RATERS', 'most_active', 'pair_f1', 'pairwise_counts', 'pairwise_f1']

#: The pairwise F1 matrix (and figure) of a report shows at most this many raters.
MAX_SHOWN_RATERS = 30


def most_active(
    raters: Sequence[str], images_read: np.ndarray, boxes: np.ndarray, n: int
) -> list[str]:
    """The ``n`` raters who read the most images (then drew the most boxes, then by
    name), in name order."""
    order = sorted(range(len(raters)), key=lambda i: (-images_read[i], -boxes[i], raters[i]))
    return sorted(raters[i] for i in order[:n])


def pairwise_counts(images: Sequence[Detections], iou_thr: float = 0.5) -> dict[str, Any]:
    """Pairwise agreement of every two raters who read a common image (sparse).

    Only the pairs that co-read an image are held (50,000 images read by 3 of 1,000 raters:
    about 150,000 pairs, not 1,000^2): per image, its raters' pairs and their one-to-one
    matches (greedy, IoU > ``iou_thr``, same label); summed over the images at the end.

    Args:
        images (Sequence[Detections]): the dataset.
        iou_thr (float): match threshold. Defaults to 0.5.

    Returns:
        dict: ``raters`` (sorted), per rater ``images_read`` and ``boxes`` (R,) int64, and
        per pair ``a`` < ``b`` (P,) int64 rater indices, ``shared_images``, ``tp`` (boxes
        matched) and ``boxes`` (n_a + n_b on the shared images), ascending in (a, b).
    """
    flat = FlatImages(images)
    n = flat.num_raters
    read = np.bincount(flat.slot_rater, minlength=n)
    drawn_all = np.bincount(flat.slot_rater, weights=flat.slot_boxes, minlength=n)
    # Every two raters of an image, images grouped by their number of raters.
    key, tot = [], []
    for a, b in flat.rater_pairs(ordered=False):
        ra, rb = flat.slot_rater[a], flat.slot_rater[b]
        key.append(np.minimum(ra, rb) * n + np.maximum(ra, rb))
        tot.append(flat.slot_boxes[a] + flat.slot_boxes[b])
    # Their one-to-one matches (greedy, per pair of raters of an image).
    i, j, iou = segment_iou_pairs(flat.boxes, flat.sizes, iou_thr, flat.code, flat.labels)
    first = np.where(flat.code[i] < flat.code[j], i, j)  # the rater listed first
    second = np.where(flat.code[i] < flat.code[j], j, i)
    s1, s2 = flat.box_slot[first], flat.box_slot[second]
    taken = greedy_taken(s1 * flat.max_raters + flat.code[second], first, second, iou)
    r1, r2 = flat.slot_rater[s1[taken]], flat.slot_rater[s2[taken]]
    tp_key = np.minimum(r1, r2) * n + np.maximum(r1, r2)
    if key:
        uk, inv = np.unique(np.concatenate(key), return_inverse=True)
        shared = np.bincount(inv.reshape(-1), minlength=len(uk))
        boxes = np.bincount(inv.reshape(-1), weights=np.concatenate(tot), minlength=len(uk))
        matched = np.bincount(np.searchsorted(uk, tp_key), minlength=len(uk))
    else:
        uk = np.zeros(0, np.int64)
        shared = matched = np.zeros(0, np.int64)
        boxes = np.zeros(0)
    return {
        'raters': flat.raters,
        'images_read': read,
        'boxes_drawn': drawn_all.astype(np.int64),
        'a': uk // max(n, 1),
        'b': uk % max(n, 1),
        'shared_images': shared.astype(np.int64),
        'tp': matched.astype(np.int64),
        'boxes': boxes.astype(np.int64),
    }


def pair_f1(tp: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (n_a + n_b), NaN where no box."""
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(boxes > 0, 2 * tp / np.where(boxes > 0, boxes, 1), np.nan)


def pairwise_f1(
    images: Sequence[Detections],
    raters: Sequence[str],
    iou_thr: float = 0.5,
    counts: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise rater IoU-F1 on the images both raters read, as matrices over ``raters``.

    Args:
        images (Sequence[Detections]): the dataset.
        raters (Sequence[str]): rater order of the matrix (any subset of the raters: the
            matrices are sized by it, e.g. the 30 most active of a crowd).
        iou_thr (float): boxes match one-to-one (greedy) when IoU > iou_thr and the labels
            are equal. Defaults to 0.5.
        counts (Mapping | None): :func:`pairwise_counts` of ``images`` at ``iou_thr``, if
            already computed.

    Returns:
        tuple[np.ndarray, np.ndarray]: (R, R) F1 = 2 TP / (n_a + n_b) (NaN where the two
        drew no box on shared images or share no image; diagonal 1 where the rater drew a
        box) and (R, R) int64 number of shared images.
    """
    if counts is None:
        counts = pairwise_counts(images, iou_thr)
    raters = [str(r) for r in raters]
    col = {r: i for i, r in enumerate(counts['raters'])}
    n_all = len(col)
    pos = np.array([col.get(r, -1) for r in raters], np.int64)
    m = len(raters)
    f1 = np.full((m, m), np.nan)
    shared = np.zeros((m, m), np.int64)
    known = np.flatnonzero(pos >= 0)
    kp = pos[known]
    shared[known, known] = counts['images_read'][kp]
    f1[known, known] = np.where(counts['boxes_drawn'][kp] > 0, 1.0, np.nan)
    # Pairs among the requested raters.
    where = np.full(n_all, -1, np.int64)
    where[kp] = known
    ia, ib = where[counts['a']], where[counts['b']]
    sel = (ia >= 0) & (ib >= 0)
    ia, ib = ia[sel], ib[sel]
    v = pair_f1(counts['tp'][sel], counts['boxes'][sel])
    f1[ia, ib] = f1[ib, ia] = v
    shared[ia, ib] = shared[ib, ia] = counts['shared_images'][sel]
    return f1, shared
