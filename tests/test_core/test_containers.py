"""Tests of the core data shapes (RaterBoxes, FusedBoxes), check_iou_thr and the confidence
modes' deprecated spellings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from earl_core.boxes import check_iou_thr
from earl_core.fusion.base import resolve_confidence
from earl_core.io.coco import FusedBoxes, RaterBoxes

SQ = [0.0, 0.0, 10.0, 10.0]


def make(boxes=(SQ,), labels=(0,), rids=('A',), raters=('A', 'B'), **kw) -> RaterBoxes:
    return RaterBoxes(list(boxes), list(labels), list(rids), raters, image_id='img1', **kw)


def test_rater_boxes_normalised():
    im = RaterBoxes([[0, 0, 10, 10]], [3.0], [7], [7, 'b'], width=100, height=50)
    assert im.boxes.dtype == np.float64 and im.boxes.shape == (1, 4)
    assert im.labels.dtype == np.int64 and im.labels.tolist() == [3]  # integral float: ok
    assert im.rater_ids.tolist() == ['7'] and im.raters == ('7', 'b')  # ids as str
    assert im.width == 100.0 and isinstance(im.width, float) and len(im) == 1
    empty = RaterBoxes([], [], [], ['a'])
    assert empty.boxes.shape == (0, 4) and empty.labels.dtype == np.int64 and len(empty) == 0
    assert empty.rater_ids.shape == (0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        im.boxes = np.zeros((0, 4))  # validated once: fields cannot be swapped afterwards


@pytest.mark.parametrize(
    'kwargs, match',
    [
        # A box by a rater who is not among the readers: names the image and the rater.
        (dict(rids=['Z']), r"image 'img1': rater 'Z' drew a box but is not in raters"),
        (dict(raters=('A', 'A')), 'duplicate rater'),
        # Labels / rater_ids not one per box.
        (dict(boxes=[SQ, SQ], rids=['A', 'A']), r'2 boxes but labels of shape \(1,\)'),
        (dict(rids=['A', 'B']), 'rater_ids of shape'),
        # Labels: integral and >= 0.
        (dict(labels=[0.5]), "image 'img1': labels must be non-negative integers"),
        (dict(labels=[-1]), 'labels must be non-negative integers'),
        (dict(labels=['cat']), 'labels must be non-negative integers'),
        # Boxes: (N, 4), finite, xyxy.
        (dict(boxes=[[0, 0, 1]]), r'shape \(N, 4\)'),
        (dict(boxes=[[0, 0, np.nan, 1]]), "'img1': box 0 has a NaN"),
        (dict(boxes=[[0, 0, np.inf, 1]]), 'box 0 has a NaN or infinite'),
        (dict(boxes=[[10, 0, 0, 10]]), r'box 0 has x2 < x1 or y2 < y1'),
        (dict(boxes=[['a', 0, 1, 1]]), 'boxes must be numbers'),
        (dict(width=0), 'width must be a finite number > 0'),
        (dict(height=float('nan')), 'height must be a finite number > 0'),
    ],
)
def test_rater_boxes_refuses(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_fused_boxes_empty():
    res = FusedBoxes.empty(3)
    assert len(res) == 0 and res.num_raters == 3 and res.boxes.shape == (0, 4)
    assert res.boxes.dtype == res.confidence.dtype == np.float32
    assert res.labels.dtype == res.agreement.dtype == np.int64
    assert res.members == [] and res.member_raters == []
    res.boxes.shape = (0, 2, 2)  # each empty result owns its array objects
    assert FusedBoxes.empty(3).boxes.shape == (0, 4)


@pytest.mark.parametrize('value', [0, 0.0, 0.4, np.float32(0.5), 0.999])
def test_check_iou_thr_accepts(value):
    assert check_iou_thr(value) == float(value)


@pytest.mark.parametrize('value', [1, 1.0, 1.5, -0.1, np.nan, '0.4', True, None])
def test_check_iou_thr_refuses(value):
    with pytest.raises(ValueError, match=r"aggregator 'x': iou_thr must be a number in \[0, 1\)"):
        check_iou_thr(value, "aggregator 'x'")


ALL = ('agreement', 'agreement_ratio', 'fused_score', 'posterior')


@pytest.mark.parametrize(
    'confidence, score_mode, want',
    [
        ('count', None, 'agreement'),
        ('fraction', None, 'agreement_ratio'),
        ('wbf', None, 'fused_score'),
        (None, 'posterior', 'posterior'),
        (None, 'count', 'agreement'),
    ],
)
def test_deprecated_confidence_spellings_warn(confidence, score_mode, want):
    with pytest.warns(DeprecationWarning, match='deprecated'):
        assert resolve_confidence(confidence, score_mode, ALL, 'posterior', 'x') == want


def test_confidence_default_and_new_names_do_not_warn(recwarn):
    assert resolve_confidence(None, None, ALL, 'agreement_ratio', 'x') == 'agreement_ratio'
    assert resolve_confidence('agreement', None, ALL, 'posterior', 'x') == 'agreement'
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
