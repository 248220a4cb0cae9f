"""What the rater statistics share: the dataset as flat arrays, and one-to-one matching.

:class:`FlatImages` holds every image's boxes and raters as flat arrays, so that the
pairwise agreement (:mod:`.pairwise`) and the partner statistics (:mod:`.partners`) run
without a Python loop over the images; :func:`greedy_taken` is the one-to-one greedy match
of the pairwise F1 and of the leave-one-out consensus (:mod:`.consensus`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from earl_core.structures import Detections

__all__ = ['FlatImages', 'greedy_taken', 'json_float', 'rater_columns']


def json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def rater_columns(images: Sequence[Detections]) -> tuple[list[str], list[np.ndarray]]:
    """Every rater, sorted, and per image the position in that list of each of its raters
    (``columns[i][im.rater_index]``: the rater of each box)."""
    raters = sorted({r for im in images for r in im.raters})
    col = {r: i for i, r in enumerate(raters)}
    return raters, [
        np.fromiter((col[r] for r in im.raters), np.int64, count=len(im.raters)) for im in images
    ]


def greedy_taken(seg: np.ndarray, a: np.ndarray, b: np.ndarray, iou: np.ndarray) -> np.ndarray:
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


class FlatImages:
    """Every image's boxes and raters as flat arrays (no Python loop over images after).

    A *slot* is one (image, rater): the raters of image i are the slots
    ``slot_start[i]`` ... ``slot_start[i] + m_i - 1``, in ``image.raters`` order.

    Attributes:
        raters (list[str]): every rater, sorted; ``slot_rater`` indexes it.
        boxes, labels (np.ndarray): (N, 4), (N,): the images' boxes one after the other.
        sizes (np.ndarray): (I,) boxes per image.
        code (np.ndarray): (N,) rater position of each box in its image.
        box_slot (np.ndarray): (N,) slot of each box's rater.
        slot_rater, slot_boxes, slot_image (np.ndarray): (M,) per slot: rater, boxes
            drawn on the image, image.
        raters_per_image (np.ndarray): (I,) m_i; ``max_raters`` its maximum.
    """

    def __init__(self, images: Sequence[Detections]) -> None:
        images = list(images)
        self.raters, columns = rater_columns(images)
        self.num_raters = len(self.raters)
        self.raters_per_image = np.array([len(c) for c in columns], np.int64)
        self.max_raters = int(self.raters_per_image.max(initial=1))
        self.sizes = np.array([len(im) for im in images], np.int64)
        self.slot_start = np.cumsum(self.raters_per_image) - self.raters_per_image
        self.slot_rater = (
            np.concatenate(columns).astype(np.int64) if columns else np.zeros(0, np.int64)
        )
        self.slot_image = np.repeat(np.arange(len(images)), self.raters_per_image)
        if self.sizes.sum():
            self.boxes = np.concatenate([im.boxes for im in images])
            self.labels = np.concatenate([im.labels for im in images])
            self.code = np.concatenate([im.rater_index for im in images])
        else:
            self.boxes = np.zeros((0, 4))
            self.labels = self.code = np.zeros(0, np.int64)
        self.box_slot = np.repeat(self.slot_start, self.sizes) + self.code
        self.slot_boxes = np.bincount(self.box_slot, minlength=len(self.slot_rater))

    def rater_pairs(self, ordered: bool, slots: np.ndarray | None = None):
        """Per group of images with the same number of (selected) raters: slots (a, b) of
        every two of an image's raters, a before b in its raters (or every ordered pair,
        a != b). ``slots``: only those slots (ascending), e.g. the raters who drew."""
        if slots is None:
            slots = np.arange(len(self.slot_rater))
        per = np.bincount(self.slot_image[slots], minlength=len(self.raters_per_image))
        start = np.cumsum(per) - per
        for d in np.unique(per[per >= 2]).tolist():
            rows = slots[start[per == d][:, None] + np.arange(d)]  # (images, d)
            if ordered:
                ia, ib = np.nonzero(~np.eye(d, dtype=bool))
            else:
                ia, ib = np.triu_indices(d, 1)
            yield rows[:, ia].reshape(-1), rows[:, ib].reshape(-1)
