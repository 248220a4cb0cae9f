"""Average-precision maths of the Kaggle VinBigData metric (numpy only).

* **Kaggle VinBigData metric** - PASCAL VOC 2010 all-point interpolated AP at IoU > 0.4 per
  class, mean over classes, with 'No finding' scored as one more class
  (:func:`voc_ap`, :func:`voc_map`, :func:`add_no_finding`, :func:`no_finding_score`).
* **Kaggle PredictionString** - :func:`format_prediction_string`,
  :func:`parse_prediction_string`.

The COCO-eval bridge (COCO dicts in memory, :func:`evaluate_coco`, the sliced precision
array of :func:`summarize_precision`) lives in :mod:`earl_core.metrics.coco_eval`; its names
are importable from here too.

Boxes are xyxy pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from earl_core.boxes import box_iou
from earl_core.metrics.coco_eval import (
    BACKENDS,
    COCO_AREA_RANGES,
    COCO_IOU_THRS,
    COMBINED_IOU_THRS,
    coco_gt_from_instances,
    detections_to_coco,
    evaluate_coco,
    prepare_coco_gt,
    summarize_precision,
)

__all__ = [
    'BACKENDS',
    'COCO_AREA_RANGES',
    'COCO_IOU_THRS',
    'COMBINED_IOU_THRS',
    'NO_FINDING_BOX',
    'NO_FINDING_MODES',
    'VocResult',
    'add_no_finding',
    'coco_gt_from_instances',
    'detections_to_coco',
    'evaluate_coco',
    'format_prediction_string',
    'no_finding_score',
    'parse_prediction_string',
    'prepare_coco_gt',
    'summarize_precision',
    'voc_ap',
    'voc_map',
]

#: The Kaggle VinBigData 'No finding' box (xyxy), in ground truth and predictions alike.
NO_FINDING_BOX = (0.0, 0.0, 1.0, 1.0)
#: How :func:`no_finding_score` derives the score of a predicted 'No finding' line.
NO_FINDING_MODES = ('one_minus_max', 'constant', 'none')


# --------------------------------------------------------------------------- Kaggle (VOC)
def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """PASCAL VOC 2010+ all-point interpolated AP (area under the precision envelope).

    Args:
        recall (np.ndarray): (N,) cumulative recall, non-decreasing.
        precision (np.ndarray): (N,) cumulative precision.

    Returns:
        float: AP in [0, 1].

    Examples:
        >>> voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
        0.8333333333333333
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    # Envelope: precision at recall r is the best precision at any recall >= r.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class VocResult:
    """Result of :func:`voc_map`.

    Args:
        mAP (float): mean of ``ap`` over classes with ground truth; -1 if there are none.
        ap (np.ndarray): (C,) float64 per-class AP, NaN for a class without ground truth.
        num_gt (np.ndarray): (C,) int64 ground-truth boxes per class.
        num_dets (np.ndarray): (C,) int64 detections per class.
    """

    mAP: float
    ap: np.ndarray
    num_gt: np.ndarray
    num_dets: np.ndarray


def _as_arrays(boxes: Any, labels: Any, scores: Any | None, where: str):
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if lab.shape[0] != b.shape[0] or (s is not None and s.shape[0] != b.shape[0]):
        raise ValueError(
            f'{where}: {b.shape[0]} boxes but {lab.shape[0]} labels'
            + ('' if s is None else f' and {s.shape[0]} scores')
        )
    return b, lab, s


def _per_image(
    gt_boxes: Sequence[Any],
    gt_labels: Sequence[Any],
    det_boxes: Sequence[Any],
    det_scores: Sequence[Any],
    det_labels: Sequence[Any],
) -> Iterator[tuple[np.ndarray, ...]]:
    """Per image (gt boxes, gt labels, det boxes, det labels, det scores) as arrays
    (:func:`_as_arrays`). The five sequences must have one entry per image: checked at the
    call, each image converted when it is read."""
    n_img = len(gt_boxes)
    if not n_img == len(gt_labels) == len(det_boxes) == len(det_scores) == len(det_labels):
        raise ValueError(
            'gt_boxes/gt_labels/det_boxes/det_scores/det_labels must have one entry per '
            f'image, got {n_img}/{len(gt_labels)}/{len(det_boxes)}/{len(det_scores)}/'
            f'{len(det_labels)}'
        )
    gts = (_as_arrays(gt_boxes[i], gt_labels[i], None, f'gt image #{i}') for i in range(n_img))
    dets = (
        _as_arrays(det_boxes[i], det_labels[i], det_scores[i], f'dets image #{i}')
        for i in range(n_img)
    )
    return ((gb, gl, db, dl, ds) for (gb, gl, _), (db, dl, ds) in zip(gts, dets))


def voc_map(
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    det_labels: Sequence[np.ndarray],
    num_classes: int,
    iou_thr: float = 0.4,
    strict: bool = True,
) -> VocResult:
    """PASCAL VOC 2010 mAP with all-point interpolation (the Kaggle VinBigData metric).

    Per class, detections of all images are ranked by score (ties: image order, then
    detection order - the VOC devkit's unstable sort leaves ties arbitrary). Each detection
    is compared with the ground-truth box of its class and image that it overlaps most
    (VOC semantics: not the best *free* one, as in COCO); it is a true positive when that
    IoU > ``iou_thr`` (``strict``; ``>=`` otherwise) and the box is not yet taken, else a
    false positive. IoU uses continuous coordinates (no VOC "+1" pixel).

    Args:
        gt_boxes (Sequence[np.ndarray]): per image (G, 4) xyxy.
        gt_labels (Sequence[np.ndarray]): per image (G,) int labels in [0, num_classes).
        det_boxes (Sequence[np.ndarray]): per image (D, 4) xyxy.
        det_scores (Sequence[np.ndarray]): per image (D,) scores.
        det_labels (Sequence[np.ndarray]): per image (D,) int labels.
        num_classes (int): C.
        iou_thr (float): Defaults to 0.4 (Kaggle VinBigData).
        strict (bool): IoU > thr (Kaggle, VOC python code) when True, IoU >= thr
            (COCO, VOC matlab devkit) when False. Defaults to True.

    Returns:
        VocResult: mean and per-class AP, with counts.

    Examples:
        >>> r = voc_map([np.array([[0, 0, 10, 10]])], [np.array([0])],
        ...             [np.array([[0, 0, 10, 10], [50, 50, 60, 60]])], [np.array([.4, .9])],
        ...             [np.array([0, 0])], num_classes=1)
        >>> r.mAP  # FP at 0.9 then TP at 0.4: precision 1/2 at recall 1
        0.5
    """
    images = _per_image(gt_boxes, gt_labels, det_boxes, det_scores, det_labels)
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    # Per class: detection scores, best IoU and the global id of that best gt (-1: none).
    scores_c: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    ious_c: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    gtid_c: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, np.int64)
    gt_offset = 0
    for i, (gb, gl, db, dl, ds) in enumerate(images):
        for lab, name in ((gl, 'gt'), (dl, 'detection')):
            if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
                raise ValueError(
                    f'{name} label {int(lab.min())}..{int(lab.max())} of image #{i} outside '
                    f'[0, {num_classes})'
                )
        num_gt += np.bincount(gl, minlength=num_classes)
        for c in np.unique(dl):
            dm = dl == c
            gidx = np.nonzero(gl == c)[0]
            scores_c[c].append(ds[dm])
            if gidx.size == 0:
                ious_c[c].append(np.zeros(int(dm.sum())))
                gtid_c[c].append(np.full(int(dm.sum()), -1, np.int64))
                continue
            iou = box_iou(db[dm], gb[gidx])
            best = np.argmax(iou, axis=1)
            ious_c[c].append(iou[np.arange(iou.shape[0]), best])
            gtid_c[c].append(gt_offset + gidx[best])
        gt_offset += gl.shape[0]
    ap = np.full(num_classes, np.nan)
    num_dets = np.zeros(num_classes, np.int64)
    for c in range(num_classes):
        s = np.concatenate(scores_c[c]) if scores_c[c] else np.zeros(0)
        num_dets[c] = s.size
        if num_gt[c] == 0:
            continue
        if s.size == 0:
            ap[c] = 0.0
            continue
        order = np.argsort(-s, kind='stable')
        iou = np.concatenate(ious_c[c])[order]
        gtid = np.concatenate(gtid_c[c])[order]
        hit = (iou > iou_thr) if strict else (iou >= iou_thr)
        hit &= gtid >= 0
        # Only the first (highest-ranked) hit on a gt box is a TP; later ones are duplicates.
        tp = np.zeros(s.size, bool)
        hit_idx = np.nonzero(hit)[0]
        _, first = np.unique(gtid[hit_idx], return_index=True)
        tp[hit_idx[first]] = True
        ctp = np.cumsum(tp)
        recall = ctp / num_gt[c]
        precision = ctp / np.arange(1, s.size + 1)
        ap[c] = voc_ap(recall, precision)
    valid = ~np.isnan(ap)
    mean = float(np.mean(ap[valid])) if valid.any() else -1.0
    return VocResult(mAP=mean, ap=ap, num_gt=num_gt, num_dets=num_dets)


def no_finding_score(
    scores: np.ndarray, mode: str = 'one_minus_max', constant: float = 1.0
) -> float | None:
    """Score of the predicted 'No finding' line of one image.

    Modes:
        * ``'one_minus_max'``: 1 - the image's highest box score (1.0 with no box): the
          detector's own belief that the image is normal.
        * ``'constant'``: ``constant`` on every image (Kaggle's ``14 1 0 0 1 1`` trick).
        * ``'none'``: no 'No finding' prediction (returns None).

    A classifier probability replaces this function when one is available (see
    :func:`add_no_finding`'s ``scores``).

    Args:
        scores (np.ndarray): (N,) box scores of the image, in [0, 1].
        mode (str): one of :data:`NO_FINDING_MODES`. Defaults to ``'one_minus_max'``.
        constant (float): score for ``'constant'``. Defaults to 1.0.

    Returns:
        float | None: the score, or None for ``'none'``.

    Examples:
        >>> no_finding_score(np.array([0.2, 0.7]))
        0.30000000000000004
    """
    if mode == 'one_minus_max':
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        return float(1.0 - s.max()) if s.size else 1.0
    if mode == 'constant':
        return float(constant)
    if mode == 'none':
        return None
    raise ValueError(f'no-finding mode must be one of {NO_FINDING_MODES}, got {mode!r}')


def add_no_finding(
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    det_labels: Sequence[np.ndarray],
    no_finding_label: int,
    scores: Sequence[float | None],
) -> tuple[
    list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]
]:
    """Add Kaggle's 'No finding' class: gt ``14 1 0 0 1 1`` on images without boxes.

    Every image with no gt box gets the gt box :data:`NO_FINDING_BOX` of label
    ``no_finding_label``; every image with a non-None ``scores[i]`` gets the prediction
    ``no_finding_label scores[i] 0 0 1 1``. Predicted and gt 'No finding' boxes are the
    same box (IoU 1), so the class is scored as an image-level classification by
    :func:`voc_map`.

    Args:
        gt_boxes, gt_labels, det_boxes, det_scores, det_labels: per-image arrays as in
            :func:`voc_map` (not modified).
        no_finding_label (int): label of 'No finding' (14 on VinDr-CXR).
        scores (Sequence[float | None]): per image 'No finding' score, None = no line.

    Returns:
        tuple: new per-image (gt_boxes, gt_labels, det_boxes, det_scores, det_labels).
    """
    if len(scores) != len(gt_boxes):
        raise ValueError(f'{len(scores)} no-finding scores for {len(gt_boxes)} images')
    box = np.asarray([NO_FINDING_BOX], dtype=np.float64)
    lab = np.asarray([no_finding_label], dtype=np.int64)
    gb2, gl2, db2, ds2, dl2 = [], [], [], [], []
    images = _per_image(gt_boxes, gt_labels, det_boxes, det_scores, det_labels)
    for i, (gb, gl, db, dl, ds) in enumerate(images):
        if gb.shape[0] == 0:
            gb, gl = box, lab
        if scores[i] is not None:
            db = np.concatenate([db, box])
            dl = np.concatenate([dl, lab])
            ds = np.concatenate([ds, [float(scores[i])]])
        gb2.append(gb)
        gl2.append(gl)
        db2.append(db)
        ds2.append(ds)
        dl2.append(dl)
    return gb2, gl2, db2, ds2, dl2


# --------------------------------------------------------------------------- PredictionString
def format_prediction_string(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    score_decimals: int = 4,
    box_decimals: int = 1,
) -> str:
    """Kaggle ``PredictionString``: ``'label score x1 y1 x2 y2 ...'``.

    Args:
        boxes (np.ndarray): (N, 4) xyxy in the pixels of the ORIGINAL (DICOM) image.
        scores (np.ndarray): (N,).
        labels (np.ndarray): (N,) int.
        score_decimals (int): Defaults to 4.
        box_decimals (int): Defaults to 1.

    Returns:
        str: space-separated groups of 6 (empty string for N = 0).

    Examples:
        >>> format_prediction_string(np.array([[0, 0, 1, 1]]), np.array([1.0]), np.array([14]))
        '14 1.0000 0.0 0.0 1.0 1.0'
    """
    b, lab, s = _as_arrays(boxes, labels, scores, 'prediction string')
    parts = []
    for label, score, box in zip(lab.tolist(), s.tolist(), b.tolist()):
        coords = ' '.join(f'{v:.{box_decimals}f}' for v in box)
        parts.append(f'{label} {score:.{score_decimals}f} {coords}')
    return ' '.join(parts)


def parse_prediction_string(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a Kaggle ``PredictionString`` (inverse of :func:`format_prediction_string`).

    Args:
        text (str): ``'label score x1 y1 x2 y2 ...'``; empty or NaN-like = no boxes.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: boxes (N, 4) float64 xyxy, scores (N,)
        float64, labels (N,) int64.

    Examples:
        >>> b, s, l = parse_prediction_string('14 1 0 0 1 1')
        >>> b.tolist(), s.tolist(), l.tolist()
        ([[0.0, 0.0, 1.0, 1.0]], [1.0], [14])
    """
    tokens = str(text).split() if text is not None else []
    if tokens in (['nan'], ['NaN']):
        tokens = []
    if len(tokens) % 6:
        raise ValueError(
            f'PredictionString must hold groups of 6 values, got {len(tokens)}: {text!r}'
        )
    try:
        vals = np.asarray([float(t) for t in tokens], dtype=np.float64).reshape(-1, 6)
    except ValueError:
        raise ValueError(f'PredictionString has a non-number: {text!r}') from None
    labels = vals[:, 0]
    if np.any(labels != np.round(labels)):
        raise ValueError(f'PredictionString labels must be integers: {text!r}')
    return vals[:, 2:6].copy(), vals[:, 1].copy(), labels.astype(np.int64)
