"""Writing COCO files: the one place that lays out a box, an image and a file.

Every tool that writes a COCO detection file builds it here: ``tools/make_medmnist.py``
(MED-MNIST's gold and multi-rater files), ``tools/convert_vindr.py`` (VinDr-CXR, through
:func:`earl_core.sources.vindr.build_coco`) and ``tools/fuse_annotations.py`` (fused boxes
with their confidence). The multi-rater fields are the ones
:func:`earl_core.io.coco.load_multirater_coco` reads (``docs/data_format.md``): an
annotation's ``annotator_id`` (the rater who drew the box) and an image's ``annotators``
(the raters who read it, those who drew nothing included).

Boxes come in as xyxy pixels and are written as COCO ``[x, y, w, h]``. With ``decimals``
the corner is rounded and the size is measured from the rounded corner, so that
``x + w`` lands on the rounded far edge: what a reader gets back from the file is the box
rounded once, not twice.

Example:
    >>> ann = coco_annotation(1, 7, 2, (10.004, 5.0, 30.0, 25.5), decimals=2, rater='R1')
    >>> ann['bbox'], ann['area'], ann['annotator_id']
    ([10.0, 5.0, 20.0, 20.5], 410.0, 'R1')
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from earl_core.deprecation import warn_renamed
from earl_core.io.safe_output import atomic_write

__all__ = [
    'coco_annotation',
    'coco_categories',
    'coco_file',
    'coco_image',
    'write_canonical_json',
    'write_coco',
    'xyxy_to_xywh',
]


def xyxy_to_xywh(box: Sequence[float], decimals: int | None = None) -> list[float]:
    """COCO ``[x, y, w, h]`` of an xyxy box (floats).

    Args:
        box (Sequence[float]): ``(x1, y1, x2, y2)`` in pixels.
        decimals (int | None): round ``x`` and ``y``, then ``w = x2 - x`` and ``h = y2 - y``,
            to this many decimals. Defaults to None (no rounding).

    Returns:
        list[float]: ``[x, y, w, h]``.

    Examples:
        >>> xyxy_to_xywh((1.0, 2.0, 4.5, 3.0))
        [1.0, 2.0, 3.5, 1.0]
        >>> xyxy_to_xywh((0.126, 0.0, 0.3, 1.0), decimals=2)  # w from x = 0.13
        [0.13, 0.0, 0.17, 1.0]
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if decimals is None:
        return [x1, y1, x2 - x1, y2 - y1]
    x, y = round(x1, decimals), round(y1, decimals)
    return [x, y, round(x2 - x, decimals), round(y2 - y, decimals)]


def coco_annotation(
    ann_id: int,
    image_id: int,
    category_id: int,
    box: Sequence[float],
    *,
    decimals: int | None = None,
    area_decimals: int | None = None,
    rater: str | None = None,
    **extra: Any,
) -> dict:
    """One COCO annotation record of an xyxy box.

    Args:
        ann_id (int): the annotation's ``id``.
        image_id (int): its image's ``id``.
        category_id (int): the COCO category id (not the 0-based label).
        box (Sequence[float]): ``(x1, y1, x2, y2)`` in pixels.
        decimals (int | None): rounding of the box, see :func:`xyxy_to_xywh`. Defaults to
            None.
        area_decimals (int | None): rounding of ``area = w * h``. Defaults to None.
        rater (str | None): the rater who drew the box (``annotator_id``); None: a box of a
            gold or fused file. Defaults to None.
        **extra: further fields, written after the standard ones in this order (e.g.
            ``score``, ``agreement``).

    Returns:
        dict: ``id``, ``image_id``, ``category_id``, ``bbox``, ``area``, ``iscrowd`` (0),
        then ``annotator_id`` and ``extra``.
    """
    bbox = xyxy_to_xywh(box, decimals)
    area = bbox[2] * bbox[3]
    ann = dict(
        id=ann_id,
        image_id=image_id,
        category_id=category_id,
        bbox=bbox,
        area=area if area_decimals is None else round(area, area_decimals),
        iscrowd=0,
    )
    if rater is not None:
        ann['annotator_id'] = rater
    ann.update(extra)
    return ann


def coco_image(
    image_id: int,
    file_name: str,
    width: int,
    height: int,
    *,
    raters: Iterable[str] | None = None,
    **extra: Any,
) -> dict:
    """One COCO image record; with ``raters``, the multi-rater ``annotators`` list.

    Args:
        image_id (int): the image's ``id``.
        file_name (str): its file, relative to the image folder.
        width (int): width in pixels.
        height (int): height in pixels.
        raters (Iterable[str] | None): the raters who read the image, in order (an empty
            list: nobody did, the image is unlabelled); None: a gold file. ``readers`` is
            its deprecated name (until 0.3). Defaults to None.
        **extra: further fields (e.g. ``orig_width``).
    """
    if 'readers' in extra:  # the name until 0.2
        if raters is not None:
            raise TypeError('coco_image: give raters= only (readers= is its deprecated name)')
        warn_renamed('coco_image(readers=)', 'coco_image(raters=)')
        raters = extra.pop('readers')
    image = dict(id=image_id, file_name=file_name, width=width, height=height, **extra)
    if raters is not None:
        image['annotators'] = list(raters)
    return image


def coco_categories(names: Sequence[str], supercategory: str) -> list[dict]:
    """Category records with 1-based ids in the order of ``names`` (COCO's convention).

    Examples:
        >>> coco_categories(['0', '1'], 'digit')[1]
        {'id': 2, 'name': '1', 'supercategory': 'digit'}
    """
    return [dict(id=i + 1, name=name, supercategory=supercategory) for i, name in enumerate(names)]


def coco_file(
    images: list[dict],
    annotations: list[dict],
    categories: list[dict],
    *,
    info: Mapping | None = None,
    licenses: list | None = None,
) -> dict:
    """The file's dict: ``info`` and ``licenses`` (when given), ``images``, ``annotations``,
    ``categories``, in that order."""
    coco: dict[str, Any] = {}
    if info is not None:
        coco['info'] = dict(info)
    if licenses is not None:
        coco['licenses'] = licenses
    coco.update(images=images, annotations=annotations, categories=categories)
    return coco


def write_canonical_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> None:
    """Sorted keys, fixed separators and a final newline: the same object gives the same
    bytes (written to a temporary file and renamed; ``inputs`` must not be overwritten)."""
    sep = (',', ':') if indent is None else (',', ': ')
    # json.dumps (not json.dump) so that the C encoder runs when indent is None.
    text = json.dumps(obj, sort_keys=True, separators=sep, indent=indent)
    atomic_write(path, text + '\n', inputs=inputs)


def write_coco(
    path: str | os.PathLike,
    coco: Mapping,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    canonical: bool = True,
) -> None:
    """Write a COCO dict (temporary file + rename; ``inputs`` must not be overwritten).

    Args:
        path (str | os.PathLike): the file to write.
        coco (Mapping): the COCO dict (:func:`coco_file`).
        inputs (Iterable): files the writing tool reads. Defaults to ().
        canonical (bool): :func:`write_canonical_json` (the generated and converted sets:
            byte-identical for the same input). False: the dict's own key order and
            :func:`json.dumps`'s default separators, no final newline (the fused files of
            ``tools/fuse_annotations.py``, as they have always been written). Defaults to
            True.
    """
    if canonical:
        write_canonical_json(path, coco, inputs=inputs)
    else:
        atomic_write(path, json.dumps(coco), inputs=inputs)
