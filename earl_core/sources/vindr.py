"""VinDr-CXR labels -> multi-rater / gold COCO, and DICOM pixels -> 8 bits (numpy only).

What ``tools/convert_vindr.py`` does with the parsed label CSVs
(:mod:`earl_core.sources.vindr_csv`, whose names are importable from here too): keep some
radiologists (:func:`filter_raters`, Rads-VinDr-CXR), split train / val
(:func:`split_train_val`), lay the boxes out as COCO at the written image size
(:func:`build_coco`: every image lists the raters who read it, 'No finding' rows included, so
normal images stay true negatives; boxes outside the image are an error or, with
``repair``, clipped and counted), and scale a decoded DICOM to an 8-bit image
(:func:`to_uint8`). See docs/vindr.md.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from earl_core.io.coco_writer import coco_annotation, coco_categories, coco_file, coco_image
from earl_core.sources import vindr_csv as _vindr_csv
from earl_core.sources.vindr_csv import *  # noqa: F403  (the parser's names, importable here)
from earl_core.sources.vindr_csv import VindrBox, VindrLabels

__all__ = [
    *_vindr_csv.__all__,
    'build_coco',
    'filter_raters',
    'resized_size',
    'split_train_val',
    'to_uint8',
]

logger = logging.getLogger(__name__)


def filter_raters(
    labels: VindrLabels, raters: Sequence[str], match: str = 'all'
) -> tuple[VindrLabels, dict[str, int]]:
    """Keep only the given radiologists (Rads-VinDr-CXR: R8, R9, R10; paper 4.1.3).

    Args:
        labels (VindrLabels): parsed training labels.
        raters (Sequence[str]): radiologist ids to keep.
        match (str): ``'all'`` keeps the images read by every listed radiologist (with 3
            raters per image and 3 ids, the images read only by them: the paper's
            sub-dataset); ``'any'`` keeps images read by at least one of them. Other
            radiologists' rows are removed either way. Defaults to 'all'.

    Returns:
        tuple: the filtered labels and counts (``images_kept``, ``images_removed``,
        ``boxes_kept``, ``boxes_removed``) to report, since boxes are removed on purpose.
    """
    if match not in ('all', 'any'):
        raise ValueError(f"match must be 'all' or 'any', got {match!r}")
    keep = [str(r) for r in raters]
    if not keep:
        raise ValueError('filter_raters needs at least one rater id')
    unknown = sorted(set(keep) - {r for rs in labels.raters.values() for r in rs})
    if unknown:
        raise ValueError(f'{labels.source}: rater(s) {unknown} never appear in the file')
    wanted = set(keep)
    read_by: dict[str, list[str]] = {}
    for image_id, rs in labels.raters.items():
        present = [r for r in rs if r in wanted]
        ok = set(present) == wanted if match == 'all' else bool(present)
        if ok:
            read_by[image_id] = present
    boxes = [b for b in labels.boxes if b.image_id in read_by and b.rater in wanted]
    stats = dict(
        images_kept=len(read_by),
        images_removed=len(labels.raters) - len(read_by),
        boxes_kept=len(boxes),
        boxes_removed=len(labels.boxes) - len(boxes),
    )
    return dataclasses.replace(labels, raters=read_by, boxes=boxes), stats


def split_train_val(
    labels: VindrLabels, val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Seeded split of the images, stratified by positive (has a box) / negative.

    Args:
        labels (VindrLabels): parsed labels.
        val_fraction (float): fraction of images for validation, in [0, 1).
        seed (int): split seed.

    Returns:
        tuple[list[str], list[str]]: sorted train and val image ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must lie in [0, 1), got {val_fraction}')
    rng = np.random.default_rng(seed)
    pos = labels.positives()
    groups = (
        sorted(i for i in labels.raters if i in pos),
        sorted(i for i in labels.raters if i not in pos),
    )
    # Round half up (not to even) the total, then give the positives their share of it.
    n_val = int(math.floor(val_fraction * len(labels.raters) + 0.5))
    n_pos = min(n_val, int(math.floor(val_fraction * len(groups[0]) + 0.5)))
    train: list[str] = []
    val: list[str] = []
    for group, n in zip(groups, (n_pos, n_val - n_pos)):
        order = rng.permutation(len(group))
        val += [group[i] for i in order[:n]]
        train += [group[i] for i in order[n:]]
    return sorted(train), sorted(val)


def resized_size(width: int, height: int, longest: int | None) -> tuple[int, int]:
    """Size after resizing the longest side to ``longest`` (None: unchanged).

    Examples:
        >>> resized_size(2000, 2500, 1024)
        (819, 1024)
    """
    if longest is None:
        return int(width), int(height)
    if longest < 1:
        raise ValueError(f'resize target must be >= 1 pixel, got {longest}')
    s = longest / max(width, height)
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def build_coco(
    labels: VindrLabels,
    sizes: Mapping[str, tuple[int, int]],
    image_ids: Sequence[str] | None = None,
    *,
    resized: Mapping[str, tuple[int, int]] | None = None,
    gold: bool = False,
    repair: bool = False,
    id_of: Mapping[str, int] | None = None,
    info: Mapping | None = None,
) -> tuple[dict, collections.Counter]:
    """Multi-rater (or gold) COCO dict for ``image_ids``.

    Boxes are checked against the original image size (a box outside the image is an
    error naming the CSV line, or with ``repair`` clipped and counted), then scaled by the
    per-axis resize factor.

    Args:
        labels (VindrLabels): parsed labels.
        sizes (Mapping[str, tuple[int, int]]): image id -> original (width, height).
        image_ids (Sequence[str] | None): images to include. Defaults to all, sorted.
        resized (Mapping[str, tuple[int, int]] | None): image id -> written (width,
            height); None = original size.
        gold (bool): plain COCO (no ``annotators``/``annotator_id``). Defaults to False.
        repair (bool): clip boxes extending outside the image. Defaults to False.
        id_of (Mapping[str, int] | None): image id -> COCO image id. Defaults to
            1-based position in the sorted ids of ``labels`` (stable across train/val).
        info (Mapping | None): COCO ``info`` entry.

    Returns:
        tuple: the COCO dict and the repair counts.
    """
    ids = sorted(labels.raters) if image_ids is None else list(image_ids)
    if id_of is None:
        id_of = {k: i + 1 for i, k in enumerate(sorted(labels.raters))}
    missing = [i for i in ids if i not in sizes]
    if missing:
        raise ValueError(
            f'{labels.source}: no image size for {len(missing)} image(s), e.g. '
            f'{missing[:3]} (missing DICOM or size-table row)'
        )
    cat_id = {name: i + 1 for i, name in enumerate(labels.classes)}
    by_image: dict[str, list[VindrBox]] = collections.defaultdict(list)
    for b in labels.boxes:
        by_image[b.image_id].append(b)
    repairs: collections.Counter = collections.Counter()
    images, anns = [], []
    for image_id in ids:
        w0, h0 = sizes[image_id]
        w1, h1 = (resized or {}).get(image_id, (w0, h0))
        sx, sy = w1 / w0, h1 / h0
        images.append(
            coco_image(
                id_of[image_id],
                f'{image_id}.png',
                int(w1),
                int(h1),
                raters=None if gold else labels.raters[image_id],
                orig_width=int(w0),
                orig_height=int(h0),
                vindr_id=image_id,
            )
        )
        for b in by_image.get(image_id, []):
            c = _inside_image(b, w0, h0, image_id, labels.source, repair, repairs)
            ann = coco_annotation(
                len(anns) + 1,
                id_of[image_id],
                cat_id[b.class_name],
                (c[0] * sx, c[1] * sy, c[2] * sx, c[3] * sy),
                decimals=3,
                area_decimals=3,
                rater=None if gold else b.rater,
            )
            w, h = ann['bbox'][2:]
            if not (w > 0 and h > 0):  # the loader would refuse it: say which line
                raise ValueError(
                    f'{labels.source}: line {b.line}, field '
                    f"'{'x_max' if w <= 0 else 'y_max'}': box {list(b.box)} is "
                    f'narrower than 0.001 px once written (image {image_id}, scale '
                    f'{sx:g} x {sy:g}); it cannot be stored'
                )
            anns.append(ann)
    categories = coco_categories(labels.classes, 'finding')
    coco = coco_file(images, anns, categories, info=info)
    if repairs:
        logger.info('%s: repairs: %s', labels.source, dict(repairs))
    return coco, repairs


def _inside_image(
    b: VindrBox,
    w: float,
    h: float,
    image_id: str,
    source: str,
    repair: bool,
    repairs: collections.Counter,
) -> tuple[float, float, float, float]:
    """The box clipped to the ``w`` x ``h`` image: unchanged when inside; else an error
    naming the CSV line and field, or with ``repair`` the clipped box (counted)."""
    x1, y1, x2, y2 = b.box
    c = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
    if c == b.box:
        return c
    outside = [
        name
        for name, bad in (
            ('x_min', x1 < 0 or x1 > w),
            ('y_min', y1 < 0 or y1 > h),
            ('x_max', x2 > w or x2 < 0),
            ('y_max', y2 > h or y2 < 0),
        )
        if bad
    ]
    where = f"{source}: line {b.line}, field '{(outside or ['x_min'])[0]}'"
    if c[2] <= c[0] or c[3] <= c[1]:
        raise ValueError(f'{where}: box {list(b.box)} lies outside the {w}x{h} image {image_id}')
    if not repair:
        raise ValueError(
            f'{where}: box {list(b.box)} extends outside the '
            f'{w}x{h} image {image_id} (pass --repair to clip)'
        )
    repairs['clipped_to_image'] += 1
    logger.debug('%s: clipped %s to the image', where, list(b.box))
    return c


def to_uint8(pixels: np.ndarray, photometric: str = 'MONOCHROME2') -> np.ndarray:
    """Scale a grey image (after the modality and VOI LUTs) to 8 bits, bright = dense.

    MONOCHROME1 images (low values displayed white) are inverted so that every output has
    MONOCHROME2 polarity; then the image is min-max scaled to 0..255.

    Args:
        pixels (np.ndarray): (H, W) numeric.
        photometric (str): DICOM PhotometricInterpretation. Defaults to 'MONOCHROME2'.

    Returns:
        np.ndarray: (H, W) uint8 (all zeros for a constant image).

    Examples:
        >>> to_uint8(np.array([[0, 10], [20, 40]]), 'MONOCHROME1').tolist()
        [[255, 191], [128, 0]]
    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f'expected a single-frame grey image (H, W), got shape {a.shape}')
    pi = str(photometric).strip().upper()
    if pi not in ('MONOCHROME1', 'MONOCHROME2'):
        raise ValueError(
            f'PhotometricInterpretation {photometric!r} is not a grey X-ray '
            '(MONOCHROME1 / MONOCHROME2)'
        )
    if pi == 'MONOCHROME1':
        a = a.max() - a
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
