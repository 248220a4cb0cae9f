"""Rater-quality and agreement statistics of a multi-rater detection dataset.

:func:`rater_report` returns one JSON-serialisable dict (NaN -> None) with

* ``per_rater``: images read, boxes drawn, and each rater's precision / recall / F1 against
  a **leave-one-out consensus** - the consensus of the *other* raters on the images the
  rater read (aggregator ``mv`` by default: a strict majority of the others), so that a
  rater is never scored against their own boxes;
* ``em``: the EM estimates (per-rater confusion matrix, proficiency, precision, box error;
  :class:`~earl_core.fusion.em.RaterEM`);
* ``pairwise_f1``: for raters a and b, on the images both read, F1 = 2 TP / (n_a + n_b)
  with TP the boxes matched one-to-one (greedy, IoU > ``iou_thr``, same label), for every
  two raters who read a common image (sparse), and as a matrix over the 30 most active;
* ``krippendorff_alpha``: Krippendorff's alpha for boxes (below);
* ``partner_statistics``: how often and how closely one rater's boxes are met by
  another's (:func:`partner_statistics`, below), overall and per ordered rater pair, and
  the WBF agreement T distribution; the numbers docs/medmnist.md holds against VinDr-CXR.

Scale. Nothing here is sized by the raters of the file squared or by clusters x raters:
every image is clustered and paired at once (:func:`~earl_core.fusion.matching.cluster_segments`,
:func:`~earl_core.fusion.matching.segment_iou_pairs`), the leave-one-out ``mv`` consensus of
every (image, rater) is one batch, and the pair statistics are held only for the pairs of
raters who read (or drew on) a common image.

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

from earl_core.boxes import box_iou, check_iou_thr, paired_box_iou
from earl_core.fusion.aggregators import (
    Aggregator,
    AggregatorSpec,
    MajorityVoteAggregator,
    build_aggregator,
)
from earl_core.fusion.em import RaterEM
from earl_core.fusion.matching import cluster_segments, iou_pairs, segment_iou_pairs
from earl_core.fusion.wbf import fuse_raters
from earl_core.io.coco import FusedBoxes, RaterBoxes

__all__ = [
    'PARTNER_QUANTILES',
    'MAX_SHOWN_RATERS',
    'krippendorff_alpha_boxes',
    'most_active',
    'pairwise_counts',
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


def _columns(images: Sequence[RaterBoxes]) -> tuple[list[str], list[np.ndarray]]:
    """Every rater, sorted, and per image the position in that list of each of its readers
    (``columns[i][im.rater_index]``: the rater of each box)."""
    raters = sorted({r for im in images for r in im.raters})
    col = {r: i for i, r in enumerate(raters)}
    return raters, [
        np.fromiter((col[r] for r in im.raters), np.int64, count=len(im.raters)) for im in images
    ]


def _rater_boxes(image: RaterBoxes, rater: str) -> tuple[np.ndarray, np.ndarray]:
    sel = image.rater_index == image.raters.index(rater)
    return image.boxes[sel], image.labels[sel]


def _without(image: RaterBoxes, rater: str) -> RaterBoxes:
    keep = image.rater_index != image.raters.index(rater)
    return RaterBoxes(
        boxes=image.boxes[keep],
        labels=image.labels[keep],
        rater_ids=image.rater_ids[keep],
        raters=tuple(r for r in image.raters if r != rater),
        width=image.width,
        height=image.height,
        image_id=image.image_id,
    )


def _greedy_taken(seg: np.ndarray, a: np.ndarray, b: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """One-to-one greedy matching of candidate pairs, independently per segment.

    Within a segment (one pair of box sets), pairs are taken in decreasing IoU (ties: lower
    ``a``, then lower ``b``) unless a box of theirs is taken already: the greedy of
    :func:`~earl_core.fusion.matching.match_boxes` on its candidate pairs, without the
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


def pairwise_counts(images: Sequence[RaterBoxes], iou_thr: float = 0.5) -> dict[str, Any]:
    """Pairwise agreement of every two raters who read a common image (sparse).

    Only the pairs that co-read an image are held (50,000 images read by 3 of 1,000 raters:
    about 150,000 pairs, not 1,000^2): per image, its readers' pairs and their one-to-one
    matches (greedy, IoU > ``iou_thr``, same label); summed over the images at the end.

    Args:
        images (Sequence[RaterBoxes]): the dataset.
        iou_thr (float): match threshold. Defaults to 0.5.

    Returns:
        dict: ``raters`` (sorted), per rater ``images_read`` and ``boxes`` (R,) int64, and
        per pair ``a`` < ``b`` (P,) int64 rater indices, ``shared_images``, ``tp`` (boxes
        matched) and ``boxes`` (n_a + n_b on the shared images), ascending in (a, b).
    """
    flat = _Flat(images)
    n = flat.num_raters
    read = np.bincount(flat.slot_rater, minlength=n)
    drawn_all = np.bincount(flat.slot_rater, weights=flat.slot_boxes, minlength=n)
    # Every two readers of an image, images grouped by their number of readers.
    key, tot = [], []
    for a, b in flat.reader_pairs(ordered=False):
        ra, rb = flat.slot_rater[a], flat.slot_rater[b]
        key.append(np.minimum(ra, rb) * n + np.maximum(ra, rb))
        tot.append(flat.slot_boxes[a] + flat.slot_boxes[b])
    # Their one-to-one matches (greedy, per pair of readers of an image).
    i, j, iou = segment_iou_pairs(flat.boxes, flat.sizes, iou_thr, flat.code, flat.labels)
    first = np.where(flat.code[i] < flat.code[j], i, j)  # the reader listed first
    second = np.where(flat.code[i] < flat.code[j], j, i)
    s1, s2 = flat.box_slot[first], flat.box_slot[second]
    taken = _greedy_taken(s1 * flat.max_readers + flat.code[second], first, second, iou)
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


class _Flat:
    """Every image's boxes and readers as flat arrays (no Python loop over images after).

    A *slot* is one (image, reader): the readers of image i are the slots
    ``slot_start[i]`` ... ``slot_start[i] + m_i - 1``, in ``image.raters`` order.

    Attributes:
        raters (list[str]): every rater, sorted; ``slot_rater`` indexes it.
        boxes, labels (np.ndarray): (N, 4), (N,): the images' boxes one after the other.
        sizes (np.ndarray): (I,) boxes per image.
        code (np.ndarray): (N,) reader position of each box in its image.
        box_slot (np.ndarray): (N,) slot of each box's reader.
        slot_rater, slot_boxes, slot_image (np.ndarray): (M,) per slot: rater, boxes
            drawn on the image, image.
        readers (np.ndarray): (I,) m_i; ``max_readers`` its maximum.
    """

    def __init__(self, images: Sequence[RaterBoxes]) -> None:
        images = list(images)
        self.raters, columns = _columns(images)
        self.num_raters = len(self.raters)
        self.readers = np.array([len(c) for c in columns], np.int64)
        self.max_readers = int(self.readers.max(initial=1))
        self.sizes = np.array([len(im) for im in images], np.int64)
        self.slot_start = np.cumsum(self.readers) - self.readers
        self.slot_rater = (
            np.concatenate(columns).astype(np.int64) if columns else np.zeros(0, np.int64)
        )
        self.slot_image = np.repeat(np.arange(len(images)), self.readers)
        if self.sizes.sum():
            self.boxes = np.concatenate([im.boxes for im in images])
            self.labels = np.concatenate([im.labels for im in images])
            self.code = np.concatenate([im.rater_index for im in images])
        else:
            self.boxes = np.zeros((0, 4))
            self.labels = self.code = np.zeros(0, np.int64)
        self.box_slot = np.repeat(self.slot_start, self.sizes) + self.code
        self.slot_boxes = np.bincount(self.box_slot, minlength=len(self.slot_rater))

    def reader_pairs(self, ordered: bool, slots: np.ndarray | None = None):
        """Per group of images with the same number of (selected) readers: slots (a, b) of
        every two of an image's readers, a before b in its raters (or every ordered pair,
        a != b). ``slots``: only those slots (ascending), e.g. the readers who drew."""
        if slots is None:
            slots = np.arange(len(self.slot_rater))
        per = np.bincount(self.slot_image[slots], minlength=len(self.readers))
        start = np.cumsum(per) - per
        for d in np.unique(per[per >= 2]).tolist():
            rows = slots[start[per == d][:, None] + np.arange(d)]  # (images, d)
            if ordered:
                ia, ib = np.nonzero(~np.eye(d, dtype=bool))
            else:
                ia, ib = np.triu_indices(d, 1)
            yield rows[:, ia].reshape(-1), rows[:, ib].reshape(-1)


def _pair_f1(tp: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (n_a + n_b), NaN where no box."""
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(boxes > 0, 2 * tp / np.where(boxes > 0, boxes, 1), np.nan)


def pairwise_f1(
    images: Sequence[RaterBoxes],
    raters: Sequence[str],
    iou_thr: float = 0.5,
    counts: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise rater IoU-F1 on the images both raters read, as matrices over ``raters``.

    Args:
        images (Sequence[RaterBoxes]): the dataset.
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
    v = _pair_f1(counts['tp'][sel], counts['boxes'][sel])
    f1[ia, ib] = f1[ib, ia] = v
    shared[ia, ib] = shared[ib, ia] = counts['shared_images'][sel]
    return f1, shared


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
    out['observed_disagreement'] = _num(do)
    out['expected_disagreement'] = _num(d_e)
    if d_e > 0:
        out['alpha'] = _num(1.0 - do / d_e)
    if d_e_nom > 0:
        out['alpha_nominal'] = _num(1.0 - do_nom / d_e_nom)
    return out


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
            'partner_rate': _num(k / n) if n else None,
            'same_label_among_partners': _num(int(same_best[g]) / k) if k else None,
            'same_label_partner_rate': _num(int(same_ok[g]) / n) if n else None,
        }
        for name, vals in quantiles.items():
            d[name] = _num(vals[g]) if k else None
        out.append(d)
    return out


def partner_statistics(images: Sequence[RaterBoxes], iou_thr: float = 0.4) -> dict[str, Any]:
    """Partner rate, same label among partners, same-label partner rate, partner IoU.

    See the module docstring for the exact definition (ordered pairs of raters who both
    drew on the image; best-IoU box of the other rater, any label). Only the pairs that
    drew on a common image are held; the counts are summed over images with numpy.

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
    flat = _Flat(images)
    raters = flat.raters
    n_r = max(len(raters), 1)
    # Per image and ordered pair (a, b) of readers who both drew there: a's boxes.
    pair_key, pair_boxes = [], []
    for a, b in flat.reader_pairs(ordered=True, slots=np.flatnonzero(flat.slot_boxes > 0)):
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
    read_by: dict[str, list[RaterBoxes]] = {r: [] for r in raters}
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
    images: list[RaterBoxes],
    agg: MajorityVoteAggregator,
    spec: Any,
    raters: list[str],
    iou_thr: float,
) -> dict[str, tuple[int, int, int]]:
    """:func:`_loo_counts` of ``mv``, for every image and rater at once
    (:func:`_loo_consensus`), each left-out rater's boxes matched with its consensus by
    :func:`_match_counts`."""
    col = {r: i for i, r in enumerate(raters)}
    ims = [im for im in images if len(im.raters) >= 2]
    warned: set[str] = set()
    for im in ims:
        n_loo = len(im.raters) - 1
        if agg.required_votes(n_loo) > n_loo > 0:
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


def _loo_consensus(images: list[RaterBoxes], agg: MajorityVoteAggregator) -> dict[str, Any]:
    """``mv``'s consensus on each image without each of its readers, for all at once.

    Each image read by m raters is taken m times (v = image, reader left out, image by
    image, readers in ``image.raters`` order), each time without the boxes of one reader;
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
    code = np.concatenate([im.rater_index for im in images])  # reader position in its image
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
    # An image read by more than LOO_EXACT_MAX_READERS raters is clustered once, with every
    # reader; each leave-one-out copy keeps those clusters less the left-out rater's boxes
    # (votes and merged boxes recomputed). Re-clustering 1,000 copies of a crowded image
    # costs minutes, and one rater of so many barely moves the clusters.
    fixed = np.full(len(boxes), -1, np.int64)
    offsets = np.cumsum(size) - size
    n_fixed = 0
    for i in np.flatnonzero(m > LOO_EXACT_MAX_READERS).tolist():
        sl = slice(int(offsets[i]), int(offsets[i] + size[i]))
        lab = None if agg.class_agnostic else labels[sl]
        cid = cluster_segments(
            boxes[sl], np.array([size[i]]), code[sl], agg.iou_thr, lab, agg.linkage
        )
        fixed[sl] = cid + n_fixed
        n_fixed += int(cid.max()) + 1 if len(cid) else 0
    out['fixed_cluster_images'] = int((m > LOO_EXACT_MAX_READERS).sum())
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


#: Images read by more raters than this keep their all-reader clusters in the leave-one-out
#: consensus (:func:`_loo_consensus`); the report counts them (``fixed_cluster_images``).
LOO_EXACT_MAX_READERS = 100

#: Sum of squared leave-one-out image sizes per batch of :func:`_loo_consensus` (bounds the
#: IoU pairs held at once).
_LOO_BATCH_PAIRS = 1 << 22


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
    all-reader cluster (per copy) instead of being clustered again."""
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
    taken = _greedy_taken(seg[i], i, j, iou)
    return np.bincount(seg[i][taken], minlength=num_segments)


#: The pairwise F1 matrix (and figure) of a report shows at most this many raters.
MAX_SHOWN_RATERS = 30


def most_active(
    raters: Sequence[str], images_read: np.ndarray, boxes: np.ndarray, n: int
) -> list[str]:
    """The ``n`` raters who read the most images (then drew the most boxes, then by
    name), in name order."""
    order = sorted(range(len(raters)), key=lambda i: (-images_read[i], -boxes[i], raters[i]))
    return sorted(raters[i] for i in order[:n])


def rater_report(
    images: Sequence[RaterBoxes],
    aggregator: AggregatorSpec | Aggregator = 'mv',
    iou_thr: float = 0.5,
    class_names: Sequence[str] | None = None,
    em_params: Mapping[str, Any] | None = None,
    include_empty_images: bool = False,
    partner_iou_thr: float = 0.4,
    max_shown_raters: int = MAX_SHOWN_RATERS,
) -> dict[str, Any]:
    """Agreement and rater-quality statistics; JSON-serialisable (NaN -> None).

    Memory and time grow with the boxes and with the pairs of raters who read a common
    image, not with the square of the raters: a crowd of 1,000 raters reading 3 per image
    costs what its boxes cost.

    Args:
        images (Sequence[RaterBoxes]): the multi-rater dataset.
        aggregator (str | Mapping | Aggregator): builds each rater's leave-one-out
            consensus from the *other* raters' boxes (refitted on the leave-one-out data if
            it learns, e.g. ``em``: one fit per rater). Defaults to ``'mv'`` (strict
            majority of the others; one clustering per image).
        iou_thr (float): matching threshold (IoU > iou_thr, same label, one-to-one greedy)
            for precision / recall / pairwise F1, and the unit threshold of alpha.
            Defaults to 0.5.
        class_names (Sequence[str] | None): names of the K classes (for ``em``).
        em_params (Mapping | None): :class:`RaterEM` arguments. Defaults to None.
        include_empty_images (bool): see :func:`krippendorff_alpha_boxes`.
        partner_iou_thr (float): threshold of :func:`partner_statistics` and of the WBF
            agreement shares. Defaults to 0.4.
        max_shown_raters (int): the pairwise F1 matrix holds at most this many raters,
            those who read the most images (:func:`most_active`). Defaults to 30.

    Returns:
        dict: ``raters``, ``num_images``, ``num_boxes``, ``iou_thr``, ``consensus``,
        ``per_rater`` (rater -> images_read, boxes, boxes_per_image, images_with_boxes,
        loo_images, tp, consensus_boxes, precision, recall, f1), ``em`` (see
        :meth:`RaterEM.summary`), ``pairwise_f1`` (``pairs``: every two raters who read a
        common image, with F1 and shared images; ``raters``, ``matrix``,
        ``shared_images``: the matrices over the shown raters; ``shown``: which they
        are), ``krippendorff_alpha``, ``partner_statistics``
        (:func:`partner_statistics`), ``wbf_agreement`` (:func:`wbf_agreement_shares`).
    """
    images = list(images)
    check_iou_thr(iou_thr)
    if not isinstance(max_shown_raters, int) or max_shown_raters < 1:
        raise ValueError(f'max_shown_raters must be an int >= 1, got {max_shown_raters!r}')
    raters, columns = _columns(images)
    spec = aggregator.get_params() if isinstance(aggregator, Aggregator) else aggregator
    build_aggregator(spec)  # validate early, before the per-rater loop

    loo = _loo_counts(images, spec, raters, float(iou_thr))
    loo_fixed = 0
    if type(build_aggregator(spec)) is MajorityVoteAggregator:
        loo_fixed = sum(len(im.raters) > LOO_EXACT_MAX_READERS for im in images)
    # Per rater, in one pass over the images: images read, boxes, images with a box,
    # images read together with someone else.
    n = len(raters)
    stats = np.zeros((4, n), np.int64)
    for im, cols in zip(images, columns):
        drawn = np.bincount(im.rater_index, minlength=len(cols))
        stats[0, cols] += 1
        stats[1, cols] += drawn
        stats[2, cols] += drawn > 0
        stats[3, cols] += len(cols) >= 2
    per_rater: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(raters):
        read, n_boxes, with_boxes, loo_images = stats[:, i].tolist()
        tp, n_r, n_c = loo[r]
        prec = tp / n_r if n_r else float('nan')
        rec = tp / n_c if n_c else float('nan')
        f1 = 2 * tp / (n_r + n_c) if (n_r + n_c) else float('nan')
        per_rater[r] = {
            'images_read': read,
            'boxes': n_boxes,
            'boxes_per_image': _num(n_boxes / read) if read else None,
            'images_with_boxes': with_boxes,
            'loo_images': loo_images,
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

    counts = pairwise_counts(images, iou_thr)
    shown = most_active(raters, stats[0], stats[1], max_shown_raters)
    f1, shared = pairwise_f1(images, shown, iou_thr, counts)
    pair_f1 = _pair_f1(counts['tp'], counts['boxes'])
    return {
        'raters': raters,
        'num_images': len(images),
        'num_boxes': int(sum(len(im.labels) for im in images)),
        'iou_thr': float(iou_thr),
        'consensus': {
            'aggregator': spec if isinstance(spec, str) else dict(spec),
            'leave_one_out': True,
            'fixed_cluster_images': loo_fixed,
            'description': (
                'each rater is scored against the consensus of the OTHER raters on the '
                'images the rater read (and someone else read); match = IoU > iou_thr, '
                'same label, one-to-one greedy'
                + (
                    f'; on images read by more than {LOO_EXACT_MAX_READERS} raters '
                    '(fixed_cluster_images) the consensus keeps the clusters of all readers, '
                    "less the left-out rater's boxes"
                    if loo_fixed
                    else ''
                )
            ),
        },
        'per_rater': per_rater,
        'em': em_summary,
        'pairwise_f1': {
            'raters': shown,
            'matrix': [[_num(v) for v in row] for row in f1],
            'shared_images': shared.tolist(),
            'shown': (
                f'all {n} raters'
                if len(shown) == n
                else f'the {len(shown)} raters who read the most images, of {n}'
            ),
            'pairs': [
                {'rater': raters[a], 'other': raters[b], 'shared_images': s, 'f1': _num(v)}
                for a, b, s, v in zip(
                    counts['a'].tolist(),
                    counts['b'].tolist(),
                    counts['shared_images'].tolist(),
                    pair_f1.tolist(),
                )
            ],
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
