"""Box geometry of the package (numpy only): the one IoU and areas.

Boxes are xyxy (x1, y1, x2, y2) in any unit, float64 in the computations. Two boxes *match*
when IoU > ``iou_thr`` (strict, as in WBF and the PASCAL VOC criterion), with ``iou_thr``
in [0, 1) (:func:`earl_core.fusion.base.check_iou_thr`; at 1 nothing could ever match).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ['as_boxes', 'box_area', 'box_iou', 'check_iou_thr', 'paired_box_iou']


def check_iou_thr(iou_thr: Any, where: str = '') -> float:
    """Deprecated (removed in 0.3): use :func:`earl_core.fusion.base.check_iou_thr`.

    The one check of numeric options is :func:`earl_core.fusion.base.check_number`; IoU
    thresholds are checked with it, in the owner's name.

    Args:
        iou_thr (Any): the value to check.
        where (str): the owner named in the error message.

    Returns:
        float: ``iou_thr`` as a float.
    """
    warnings.warn(
        'earl_core.boxes.check_iou_thr moved to earl_core.fusion.base.check_iou_thr in '
        'earl-mmdet 0.2 and is removed in 0.3 (docs/migration.md)',
        FutureWarning,
        stacklevel=2,
    )
    from earl_core.fusion.base import check_iou_thr as check  # fusion imports this module

    return check(iou_thr, where or 'iou_thr')


def as_boxes(boxes: Any, name: str = 'boxes') -> np.ndarray:
    """``boxes`` as a finite float64 (N, 4) array (an empty input gives (0, 4)).

    Raises:
        ValueError: naming ``name``, for another shape or a NaN / infinite coordinate.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f'{name} must have shape (N, 4) (xyxy), got {b.shape}')
    if not np.all(np.isfinite(b)):
        raise ValueError(f'{name} contains NaN or inf: {b[~np.isfinite(b).all(1)].tolist()}')
    return b


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of xyxy boxes in the last axis, 0 for a reversed side: shape ``boxes.shape[:-1]``."""
    # np.maximum(x, 0) rather than np.clip: same result, far less overhead on tiny arrays.
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(
        boxes[..., 3] - boxes[..., 1], 0
    )


def paired_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[..., :]`` with ``b[..., :]`` (xyxy in the last axis, broadcast), no checks.

    Returns:
        np.ndarray: float64 IoU in [0, 1] of the broadcast shape; 0 where the union is empty
        (two zero-area boxes).
    """
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = box_area(a) + box_area(b) - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """Pairwise IoU of two sets of xyxy boxes (as ``torchvision.ops.box_iou``, in numpy).

    Args:
        boxes1 (np.ndarray): (N, 4) xyxy.
        boxes2 (np.ndarray): (M, 4) xyxy.

    Returns:
        np.ndarray: (N, M) float64 IoU in [0, 1]; 0 where the union is empty (two
        zero-area boxes).

    Raises:
        ValueError: for boxes that are not (N, 4) or not finite.

    Examples:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])).round(4).tolist()
        [[0.3333]]
    """
    a = as_boxes(boxes1, 'boxes1')
    b = as_boxes(boxes2, 'boxes2')
    return paired_box_iou(a[:, None], b[None, :])
