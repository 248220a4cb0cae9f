"""Krippendorff's alpha for boxes.

After the idea of Tschirschwitz et al. (GCPR 2022, github.com/Madave94/kalphacv): boxes of
each image are grouped into *units* (class-agnostic clusters, IoU > ``iou_thr``, at most one
box per rater); every rater who read the image gives one value per unit - their box (with its
label) or *nothing*. The distance between two values is 0 for nothing vs nothing, 1 for a box
vs nothing, 1 for boxes of different labels and 1 - IoU for boxes of the same label.
alpha = 1 - D_o / D_e, D_o the mean within-unit disagreement, D_e the disagreement expected
between any two pairable values (pooled over all units of all images; for the IoU part the
boxes' pixel coordinates are compared across images, which is what chance pairing means
here). ``alpha_nominal`` uses the 0/1 distance (same label or both nothing). Units from
images that nobody drew on are left out unless ``include_empty_images=True`` (they would all
be perfect agreement). kalphacv averages a per-image alpha instead; the pooled alpha is
defined even on images where every value agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from earl_core.boxes import paired_box_iou
from earl_core.fusion.matching import cluster_segments, iou_pairs
from earl_core.metrics.rater_report.flat import json_float
from earl_core.structures import Detections

__all__ = ['krippendorff_alpha_boxes']

#: Above this many boxes of one label, D_e's same-label IoU sum is estimated from
#: ``_ALPHA_SAMPLES`` random pairs (fixed seed) instead of all pairs.
_ALPHA_EXACT_MAX = 8000
_ALPHA_SAMPLES = 2_000_000
#: Sampled pairs per IoU chunk (bounds the memory of the estimate).
_ALPHA_CHUNK = 1 << 18


def _pairs_within(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (p, q), p < q, of all pairs inside consecutive groups of the given sizes."""
    end = np.repeat(np.cumsum(sizes), sizes)
    cnt = end - np.arange(end.shape[0]) - 1
    p = np.repeat(np.arange(end.shape[0]), cnt)
    q = p + 1 + (np.arange(p.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return p, q


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
    images: Sequence[Detections],
    iou_thr: float = 0.5,
    include_empty_images: bool = False,
) -> dict[str, Any]:
    """Krippendorff's alpha for boxes (see the module docstring for the distance).

    Args:
        images (Sequence[Detections]): the dataset; images read by fewer than two
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
        >>> im = Detections.from_raters(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...     np.array([0, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> krippendorff_alpha_boxes([im])['alpha']  # one unit, labels disagree
        0.0
    """
    rng = np.random.default_rng(0)
    images = list(images)
    m_all = np.array([len(im.raters) for im in images], np.int64)
    n_all = np.array([len(im) for im in images], np.int64)
    empty = (m_all >= 2) & (n_all == 0)
    # Images nobody drew on: one unit of m "nothing" values each, if asked for.
    n_units = int(empty.sum()) if include_empty_images else 0
    n_vals = n_nothing = int(m_all[empty].sum()) if include_empty_images else 0
    ims = [im for im, ok in zip(images, (m_all >= 2) & (n_all > 0)) if ok]
    d_o = d_o_nom = 0.0  # sum over units of sum_{i != j} delta / (m_u - 1)
    b = np.zeros((0, 4))
    lab = np.zeros(0, np.int64)
    if ims:
        size = np.array([len(im) for im in ims], np.int64)
        m = np.array([len(im.raters) for im in ims], np.int64)
        unit = cluster_segments(
            np.concatenate([im.boxes for im in ims]),
            size,
            np.concatenate([im.rater_index for im in ims]),
            iou_thr,
        )
        order = np.argsort(unit, kind='stable')  # unit by unit (image by image), in order
        b = np.concatenate([im.boxes for im in ims])[order]
        lab = np.concatenate([im.labels for im in ims])[order]
        k = np.bincount(unit)
        unit_img = np.repeat(np.arange(len(ims)), size)[order][np.cumsum(k) - k]
        mu = m[unit_img]
        # ordered pairs within a unit: box-box (twice each unordered pair), box-nothing.
        p, q = _pairs_within(k)
        pair_img = unit_img[np.repeat(np.arange(len(k)), k)][p]
        same = lab[p] == lab[q]
        dist = np.where(same, 1.0 - paired_box_iou(b[p], b[q]), 1.0)
        dist_bb = 2.0 * np.bincount(pair_img, weights=dist, minlength=len(ims))
        dist_bb_nom = 2.0 * np.bincount(pair_img, weights=~same, minlength=len(ims))
        dist_bn = 2.0 * np.bincount(unit_img, weights=k * (mu - k), minlength=len(ims))
        d_o = float(((dist_bb + dist_bn) / (m - 1)).sum())
        d_o_nom = float(((dist_bb_nom + dist_bn) / (m - 1)).sum())
        n_units += len(k)
        n_vals += int((mu).sum())
        n_nothing += int((mu - k).sum())
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
    all_boxes, all_labels = b, lab
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
    out['observed_disagreement'] = json_float(do)
    out['expected_disagreement'] = json_float(d_e)
    if d_e > 0:
        out['alpha'] = json_float(1.0 - do / d_e)
    if d_e_nom > 0:
        out['alpha_nominal'] = json_float(1.0 - do_nom / d_e_nom)
    return out
