"""The COCO-eval bridge: COCO dicts in memory, one evaluation, its precision array sliced.

Build COCO dicts in memory (:func:`prepare_coco_gt`, :func:`coco_gt_from_instances`,
:func:`detections_to_coco`), run one COCO evaluation with several IoU thresholds through
``faster-coco-eval`` or ``pycocotools`` (:func:`evaluate_coco`; the backend is imported when
it runs) and slice its 101-point precision array into mAP@0.4, mAP@[.5:.95], AP50, AP75 and
per-class tables (:func:`summarize_precision`). In COCOeval every IoU threshold is matched
independently, so a slice of one evaluation with thresholds ``[0.4, 0.5, ..., 0.95]`` equals
separate evaluations at ``[0.4]`` and at the default ``[0.5:0.95]`` exactly (tested).

Every name here is also importable from :mod:`earl_core.metrics.ap`, the AP maths of the
Kaggle metric. Boxes are xyxy pixels unless a name says ``xywh`` (COCO's ``bbox`` field).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    'BACKENDS',
    'COCO_AREA_RANGES',
    'COCO_IOU_THRS',
    'COMBINED_IOU_THRS',
    'coco_gt_from_instances',
    'detections_to_coco',
    'evaluate_coco',
    'prepare_coco_gt',
    'summarize_precision',
]

#: pycocotools' default IoU thresholds 0.50:0.05:0.95, built exactly as ``COCOeval.Params``
#: builds them, so that ``==`` finds 0.5 and 0.75 and slices compare equal to a default run.
COCO_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: ``[0.4, 0.5, 0.55, ..., 0.95]``: one evaluation yields mAP@0.4 and mAP@[.5:.95].
COMBINED_IOU_THRS = np.concatenate([[0.4], COCO_IOU_THRS])
#: ``COCOeval.Params`` area ranges in pixels^2: all, small, medium, large.
COCO_AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
_AREA_LABELS = ('all', 'small', 'medium', 'large')
#: COCO evaluation libraries accepted by :func:`evaluate_coco`.
BACKENDS = ('faster_coco_eval', 'pycocotools')


def _bbox_xywh(value: Any, where: str) -> list[float]:
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field 'bbox' must be 4 numbers [x, y, w, h], got {value!r}"
        ) from None
    if len(box) != 4 or not all(np.isfinite(box)):
        raise ValueError(f"{where}: field 'bbox' must be 4 finite numbers, got {value!r}")
    return box


def prepare_coco_gt(gt: Mapping) -> dict:
    """Normalise a gold COCO detection dict for evaluation (a new dict; input unchanged).

    Annotations are renumbered ``1..N`` (pycocotools treats a matched gt id 0 as "no
    match"), ``iscrowd`` defaults to 0 (pycocotools raises ``KeyError`` without it) and
    ``area`` to ``w * h``; every other annotation key (segmentation, annotator ids) is
    dropped because a box evaluation never reads it.

    Args:
        gt (Mapping): COCO dict with ``images``, ``categories`` and ``annotations``
            (``bbox`` xywh pixels).

    Returns:
        dict: ``images`` (id, width, height), ``categories`` (id, name) in file order,
        ``annotations`` (id, image_id, category_id, bbox, area, iscrowd).

    Raises:
        ValueError: missing sections, a bbox that is not 4 finite numbers, an annotation
            whose image or category is not declared.
    """
    for key in ('images', 'categories'):
        if not isinstance(gt.get(key), list):
            raise ValueError(f"gold COCO dict: '{key}' must be a list, got {type(gt.get(key))}")
    images = [
        dict(id=im['id'], width=im.get('width', 0), height=im.get('height', 0))
        for im in gt['images']
    ]
    categories = [dict(id=c['id'], name=str(c.get('name', c['id']))) for c in gt['categories']]
    img_ids = {im['id'] for im in images}
    cat_ids = {c['id'] for c in categories}
    anns = []
    for k, ann in enumerate(gt.get('annotations') or []):
        where = f'gold COCO annotation #{k} (id {ann.get("id")!r})'
        if ann.get('image_id') not in img_ids:
            raise ValueError(f"{where}: 'image_id' {ann.get('image_id')!r} is not an image id")
        if ann.get('category_id') not in cat_ids:
            raise ValueError(
                f"{where}: 'category_id' {ann.get('category_id')!r} is not a category id"
            )
        box = _bbox_xywh(ann.get('bbox'), where)
        area = ann.get('area')
        anns.append(
            dict(
                id=len(anns) + 1,
                image_id=ann['image_id'],
                category_id=ann['category_id'],
                bbox=box,
                area=float(box[2] * box[3] if area is None else area),
                iscrowd=int(bool(ann.get('iscrowd', 0))),
            )
        )
    return dict(images=images, categories=categories, annotations=anns)


def coco_gt_from_instances(gts: Sequence[Mapping], classes: Sequence[str]) -> dict:
    """Build a gold COCO dict from mmdet-style per-image ground truth.

    Mirrors mmdet's ``CocoMetric.gt_to_coco_json`` (category id = label index, an
    ``ignore_flag`` box becomes ``iscrowd`` so COCOeval ignores it) without a file round trip.

    Args:
        gts (Sequence[Mapping]): per image ``img_id``, ``width``, ``height`` and ``anns``, a
            list of dicts with ``bbox`` (xyxy pixels), ``bbox_label`` (int) and optional
            ``ignore_flag``.
        classes (Sequence[str]): class names; label ``i`` is ``classes[i]``.

    Returns:
        dict: a COCO dict in the form returned by :func:`prepare_coco_gt`.
    """
    categories = [dict(id=i, name=str(n)) for i, n in enumerate(classes)]
    images, anns = [], []
    for idx, g in enumerate(gts):
        img_id = g.get('img_id', idx)
        images.append(dict(id=img_id, width=g['width'], height=g['height']))
        for ann in g.get('anns') or []:
            label = int(ann['bbox_label'])
            if not 0 <= label < len(classes):
                raise ValueError(
                    f'image {img_id!r}: bbox_label {label} outside [0, {len(classes)})'
                )
            x1, y1, x2, y2 = (float(v) for v in ann['bbox'])
            w, h = x2 - x1, y2 - y1
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=img_id,
                    category_id=label,
                    bbox=[x1, y1, w, h],
                    area=w * h,
                    iscrowd=int(bool(ann.get('ignore_flag', 0))),
                )
            )
    return dict(images=images, categories=categories, annotations=anns)


def detections_to_coco(
    img_ids: Sequence[Any],
    bboxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    cat_ids: Sequence[Any],
) -> list[dict]:
    """Per-image detection arrays to a COCO results list.

    Args:
        img_ids (Sequence): image id of each entry.
        bboxes (Sequence[np.ndarray]): per image (N, 4) xyxy pixels.
        scores (Sequence[np.ndarray]): per image (N,) scores.
        labels (Sequence[np.ndarray]): per image (N,) label indices into ``cat_ids``.
        cat_ids (Sequence): COCO category id of each label index.

    Returns:
        list[dict]: ``image_id``, ``category_id``, ``bbox`` (xywh), ``score`` per detection.

    Examples:
        >>> detections_to_coco([7], [np.array([[1., 2., 4., 6.]])], [np.array([.9])],
        ...                    [np.array([0])], cat_ids=[3])
        [{'image_id': 7, 'category_id': 3, 'bbox': [1.0, 2.0, 3.0, 4.0], 'score': 0.9}]
    """
    if not len(img_ids) == len(bboxes) == len(scores) == len(labels):
        raise ValueError(
            f'img_ids/bboxes/scores/labels lengths differ: {len(img_ids)}/{len(bboxes)}/'
            f'{len(scores)}/{len(labels)}'
        )
    cats = list(cat_ids)
    out: list[dict] = []
    for img_id, b, s, lab in zip(img_ids, bboxes, scores, labels):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        lab = np.asarray(lab).reshape(-1).astype(np.int64)
        if not b.shape[0] == s.shape[0] == lab.shape[0]:
            raise ValueError(
                f'image {img_id!r}: {b.shape[0]} boxes, {s.shape[0]} scores, {lab.shape[0]} labels'
            )
        if lab.size and (lab.min() < 0 or lab.max() >= len(cats)):
            raise ValueError(
                f'image {img_id!r}: label {int(lab.max())} outside [0, {len(cats)}) classes'
            )
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1).tolist()
        for box, score, label in zip(xywh, s.tolist(), lab.tolist()):
            out.append(dict(image_id=img_id, category_id=cats[label], bbox=box, score=score))
    return out


def _coco_api(backend: str) -> tuple[Any, Any]:
    if backend == 'faster_coco_eval':
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if backend == 'pycocotools':
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')


def _make_coco(coco_cls: Any, dataset: dict) -> Any:
    coco = coco_cls()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def evaluate_coco(
    gt: Mapping,
    dets: Sequence[Mapping],
    *,
    iou_thrs: Sequence[float] | np.ndarray = COMBINED_IOU_THRS,
    max_dets: int = 100,
    area_ranges: Sequence[Sequence[float]] | None = COCO_AREA_RANGES,
    backend: str = 'faster_coco_eval',
    img_ids: Sequence[Any] | None = None,
    cat_ids: Sequence[Any] | None = None,
) -> np.ndarray:
    """One COCO box evaluation (``evaluate`` + ``accumulate``) with several IoU thresholds.

    The detections COCO object is built directly (each detection gets ``id`` 1..N,
    ``area = w * h``, ``iscrowd = 0``), which is what ``COCO.loadRes`` does for boxes, but
    it also accepts an empty list (``loadRes`` raises ``IndexError`` there).

    Args:
        gt (Mapping): gold COCO dict in :func:`prepare_coco_gt` form.
        dets (Sequence[Mapping]): COCO results (``image_id``, ``category_id``, ``bbox``
            xywh, ``score``).
        iou_thrs (Sequence[float]): IoU thresholds; a detection matches at threshold t
            when IoU >= t (COCO). Defaults to :data:`COMBINED_IOU_THRS`.
        max_dets (int): detections kept per image and class, by score. Defaults to 100
            (COCO's default for AP).
        area_ranges (Sequence[Sequence[float]] | None): (lo, hi) pixel^2 ranges, the first
            being "all"; None = only all. Defaults to :data:`COCO_AREA_RANGES`.
        backend (str): ``'faster_coco_eval'`` or ``'pycocotools'``.
        img_ids (Sequence | None): images to evaluate; None = all gold images.
        cat_ids (Sequence | None): categories, in the order of the output's class axis;
            None = gold categories in file order.

    Returns:
        np.ndarray: precision, shape (T, 101, K, A) float64, -1 where a class has no gt in
        an area range (pycocotools' convention).
    """
    coco_cls, eval_cls = _coco_api(backend)
    if max_dets < 1:
        raise ValueError(f'max_dets must be >= 1, got {max_dets}')
    thrs = np.asarray(iou_thrs, dtype=np.float64).reshape(-1)
    if thrs.size == 0 or np.any((thrs < 0) | (thrs > 1)):
        raise ValueError(f'iou_thrs must be a non-empty list in [0, 1], got {thrs.tolist()}')
    ranges = [list(COCO_AREA_RANGES[0])] if area_ranges is None else [list(r) for r in area_ranges]
    cat_order = [c['id'] for c in gt['categories']] if cat_ids is None else list(cat_ids)
    # faster-coco-eval needs int ids, so ids are renumbered 1..N. COCOeval visits images in
    # sorted id order, and that order breaks score ties between images in accumulate():
    # the renumbering keeps it. Classes are renumbered 1..K in the caller's order, which
    # COCOeval's own sort then preserves.
    gt_img_ids = [im['id'] for im in gt['images']]
    try:
        ordered = sorted(set(gt_img_ids))
    except TypeError:  # mixed id types: no order to keep
        ordered = list(dict.fromkeys(gt_img_ids))
    img_map = {v: i + 1 for i, v in enumerate(ordered)}
    cat_map = {c: k + 1 for k, c in enumerate(cat_order)}
    gold_cats = {c['id'] for c in gt['categories']}
    if len(cat_map) != len(cat_order) or not gold_cats.issuperset(cat_order):
        raise ValueError(f'cat_ids must be distinct gold category ids, got {cat_order}')
    sizes = {im['id']: (im.get('width', 0), im.get('height', 0)) for im in gt['images']}
    images = [dict(id=img_map[i], width=sizes[i][0], height=sizes[i][1]) for i in ordered]
    categories = [dict(id=cat_map[c], name=str(c)) for c in cat_order]
    gt_anns = []
    for a in gt['annotations']:
        if a['category_id'] not in cat_map:
            continue
        box = list(a['bbox'])
        gt_anns.append(
            dict(
                id=len(gt_anns) + 1,
                image_id=img_map[a['image_id']],
                category_id=cat_map[a['category_id']],
                bbox=box,
                area=a.get('area', box[2] * box[3]),
                iscrowd=int(bool(a.get('iscrowd', 0))),
            )
        )
    dt_anns = []
    for k, d in enumerate(dets):
        if d['image_id'] not in img_map:
            raise ValueError(f'detection #{k}: image_id {d["image_id"]!r} is not a gold image')
        if d['category_id'] not in cat_map:
            continue  # not an evaluated class (COCOeval ignores it too)
        x, y, w, h = d['bbox']
        dt_anns.append(
            dict(
                id=len(dt_anns) + 1,
                image_id=img_map[d['image_id']],
                category_id=cat_map[d['category_id']],
                bbox=[x, y, w, h],
                area=w * h,
                iscrowd=0,
                score=d['score'],
            )
        )
    eval_ids = ordered if img_ids is None else list(img_ids)
    missing = [i for i in eval_ids if i not in img_map]
    if missing:
        raise ValueError(f'img_ids not in the gold file: {missing[:10]}')
    # pycocotools prints progress to stdout; library code stays quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _make_coco(
            coco_cls, dict(images=images, categories=categories, annotations=gt_anns)
        )
        coco_dt = _make_coco(
            coco_cls, dict(images=images, categories=categories, annotations=dt_anns)
        )
        ev = eval_cls(coco_gt, coco_dt, 'bbox')
        ev.params.iouThrs = thrs
        ev.params.maxDets = [int(max_dets)]
        ev.params.areaRng = ranges
        ev.params.areaRngLbl = ['all'] + [f'range{i}' for i in range(1, len(ranges))]
        ev.params.imgIds = [img_map[i] for i in eval_ids]
        ev.params.catIds = list(range(1, len(cat_order) + 1))
        ev.evaluate()
        ev.accumulate()
    precision = np.asarray(ev.eval['precision'], dtype=np.float64)
    return precision[..., 0]


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize_precision(
    precision: np.ndarray, iou_thrs: Sequence[float] | np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Slice a (T, R, K, A) precision array into COCO summary numbers and per-class APs.

    A number is computed only when its thresholds were evaluated: ``mAP_40`` needs 0.4;
    ``mAP``, ``mAP_50``, ``mAP_75`` need all of :data:`COCO_IOU_THRS`; ``mAP_s``/``mAP_m``/
    ``mAP_l`` need the four :data:`COCO_AREA_RANGES` (A == 4). Each equals the corresponding
    ``COCOeval.stats`` entry (mean over the valid entries; -1 when there are none).

    Args:
        precision (np.ndarray): (T, R, K, A) as returned by :func:`evaluate_coco`.
        iou_thrs (Sequence[float]): the T thresholds, in the same order.

    Returns:
        tuple[dict[str, float], dict[str, np.ndarray]]: scalars (keys above) and per-class
        APs (keys ``AP_40``, ``AP``, ``AP_50``, ``AP_75``; (K,) float64, NaN for a class
        without ground truth).
    """
    thrs = np.asarray(iou_thrs, dtype=np.float64).reshape(-1)
    if precision.ndim != 4 or precision.shape[0] != thrs.size:
        raise ValueError(
            f'precision must be (T, R, K, A) with T={thrs.size}, got {precision.shape}'
        )
    sel: dict[str, np.ndarray] = {}
    if np.any(thrs == 0.4):
        sel['40'] = np.nonzero(thrs == 0.4)[0][:1]
    # Exact float equality on purpose: thresholds come from the same linspace as COCOeval's.
    std = np.array(
        [np.nonzero(thrs == t)[0][0] if np.any(thrs == t) else -1 for t in COCO_IOU_THRS]
    )
    if np.all(std >= 0):
        sel[''] = std
        sel['50'] = std[:1]
        sel['75'] = std[5:6]
    scalars: dict[str, float] = {}
    per_class: dict[str, np.ndarray] = {}
    for name in ('40', '', '50', '75'):
        if name not in sel:
            continue
        key = 'mAP' + (f'_{name}' if name else '')
        p = precision[sel[name], :, :, 0]
        scalars[key] = _mean_valid(p)
        per_class['AP' + (f'_{name}' if name else '')] = np.array(
            [_mean_valid(p[:, :, k]) for k in range(p.shape[2])], dtype=np.float64
        )
    if '' in sel and precision.shape[3] == 4:
        for a, suffix in zip((1, 2, 3), ('s', 'm', 'l')):
            scalars[f'mAP_{suffix}'] = _mean_valid(precision[sel[''], :, :, a])
    for arr in per_class.values():
        arr[arr == -1.0] = np.nan
    return scalars, per_class
