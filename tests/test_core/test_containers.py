"""Tests of the core container (Detections: raters' boxes and fused boxes, selection, the
deprecated RaterBoxes / FusedBoxes), check_iou_thr and the confidence modes' deprecated
spellings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from earl_core import boxes
from earl_core.fusion.base import check_iou_thr, resolve_confidence
from earl_core.io.coco import FusedBoxes, RaterBoxes
from earl_core.structures import Detections

SQ = [0.0, 0.0, 10.0, 10.0]


def make(boxes=(SQ,), labels=(0,), rids=('A',), raters=('A', 'B'), **kw) -> Detections:
    return Detections.from_raters(
        list(boxes), list(labels), list(rids), raters, image_id='img1', **kw
    )


def test_rater_boxes_normalised():
    im = Detections.from_raters([[0, 0, 10, 10]], [3.0], [7], [7, 'b'], width=100, height=50)
    assert im.boxes.dtype == np.float64 and im.boxes.shape == (1, 4)
    assert im.labels.dtype == np.int64 and im.labels.tolist() == [3]  # integral float: ok
    assert im.rater_ids.tolist() == ['7'] and im.raters == ('7', 'b')  # ids as str
    assert im.width == 100.0 and isinstance(im.width, float) and len(im) == 1
    assert im.rater.tolist() == im.rater_index.tolist() == [0]
    assert im.confidence.tolist() == [1.0] and im.confidence.dtype == np.float32
    assert im.agreement.tolist() == [1] and im.members == [] and im.num_raters == 2
    empty = Detections.from_raters([], [], [], ['a'])
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
    res = Detections.empty(3)
    assert len(res) == 0 and res.num_raters == 3 and res.boxes.shape == (0, 4)
    assert res.boxes.dtype == res.confidence.dtype == np.float32
    assert res.labels.dtype == res.agreement.dtype == np.int64
    assert res.members == [] and res.member_raters == []
    res.boxes.shape = (0, 2, 2)  # each empty result owns its array objects
    assert Detections.empty(3).boxes.shape == (0, 4)


def fused() -> Detections:
    """Three fused boxes of the image ``make`` builds with three raters' boxes."""
    image = make(boxes=[SQ, SQ, SQ], labels=[0, 1, 0], rids=['A', 'B', 'A'], width=20, height=30)
    return Detections.fused(
        np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], np.float32),
        np.array([0, 1, 2]),
        np.array([0.5, 1.0, 0.25], np.float32),
        np.array([2, 1, 1]),
        2,
        [np.array([0, 1]), np.array([2]), np.array([0])],
        [('A', 'B'), ('A',), ('A',)],
        image=image,
    )


def test_fused_boxes_keep_dtypes_and_the_image():
    res = fused()
    assert res.boxes.dtype == np.float32 and res.confidence.dtype == np.float32  # as given
    assert res.rater.tolist() == [-1, -1, -1] and res.rater_ids.tolist() == [None] * 3
    assert res.member_raters == [('A', 'B'), ('A',), ('A',)]  # a list of tuples
    assert res.extras['member_raters'].dtype == object
    assert (res.raters, res.num_raters, res.width, res.height, res.image_id) == (
        ('A', 'B'),
        2,
        20.0,
        30.0,
        'img1',
    )


@pytest.mark.parametrize(
    'key, want',
    [
        (np.array([True, False, True]), [0, 2]),  # boolean mask
        ([2, 0], [2, 0]),  # int indices, any order
        (np.array([-1]), [2]),  # negative: from the end
        (slice(1, None), [1, 2]),  # slice
        (1, [1]),  # an int: a one-box Detections
        (-3, [0]),
        ([], []),  # empty selection
        (np.zeros(3, bool), []),  # empty mask
    ],
)
def test_selection_keeps_every_field_aligned(key, want):
    res = fused()
    res.rater_ids  # noqa: B018  (the cached names are selected too)
    sel = res[key]
    assert isinstance(sel, Detections) and len(sel) == len(want)
    assert sel.boxes.tolist() == res.boxes[want].tolist() and sel.boxes.dtype == np.float32
    for name in ('labels', 'rater', 'confidence', 'agreement', 'rater_ids'):
        assert getattr(sel, name).tolist() == getattr(res, name)[want].tolist(), name
    assert [m.tolist() for m in sel.members] == [res.members[i].tolist() for i in want]
    assert sel.member_raters == [res.member_raters[i] for i in want]
    assert (sel.raters, sel.num_raters, sel.width, sel.image_id) == (
        res.raters,
        res.num_raters,
        res.width,
        res.image_id,
    )


def test_selection_of_raters_boxes():
    im = make(boxes=[SQ, [1, 1, 5, 5], [2, 2, 9, 9]], labels=[0, 1, 1], rids=['B', 'A', 'B'])
    sel = im[im.rater_ids == 'B']
    assert sel.boxes.dtype == np.float64 and sel.boxes[:, 0].tolist() == [0.0, 2.0]
    assert sel.rater_ids.tolist() == ['B', 'B'] and sel.rater.tolist() == [1, 1]
    assert sel.labels.tolist() == [0, 1] and sel.members == [] and sel.raters == ('A', 'B')
    assert [len(d) for d in im] == [1, 1, 1]  # iterating gives one-box Detections


@pytest.mark.parametrize(
    'key, error, match',
    [
        (np.array([True, False]), ValueError, r"'img1': 3 boxes but a boolean mask of shape"),
        ([True] * 4, ValueError, 'boolean mask of shape'),
        (3, IndexError, 'box 3 out of range for 3 boxes'),
        ([0, 5], IndexError, 'box 5 out of range'),
        (np.array([0.5]), TypeError, 'int indices'),
        (True, TypeError, 'boolean mask'),
    ],
)
def test_selection_refuses(key, error, match):
    with pytest.raises(error, match=match):
        fused()[key]


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(rater=[0, 2]), r'rater must be -1 or a position in the 2 raters'),
        (dict(rater=[0]), r'2 boxes but rater of shape \(1,\)'),
        (dict(confidence=[0.5, np.nan]), 'confidence must be finite'),
        (dict(confidence=[1.0]), 'confidence of shape'),
        (dict(agreement=[1, -2]), r'agreement must be integers >= 0 \(-1: unknown\)'),
        (dict(agreement=[1.5, 1]), 'agreement must be integers'),
        (dict(members=[np.array([0])]), '2 boxes but 1 members'),
        (dict(extras={'note': np.zeros(3)}), r"extras\['note'\] of shape \(3,\)"),
        (dict(extras={'labels': np.zeros(2)}), 'shadows the field'),
        (dict(num_raters=-1), 'num_raters must be an int >= 0'),
    ],
)
def test_detections_refuses(kwargs, match):
    with pytest.raises(ValueError, match=f"image 'x': .*{match}"):
        Detections(np.zeros((2, 4)), [0, 1], raters=('a', 'b'), image_id='x', **kwargs)


def test_detections_defaults():
    det = Detections(np.zeros((2, 4), np.float32), [0, 1], raters=['a', 7])
    assert det.boxes.dtype == np.float32 and det.raters == ('a', '7') and det.num_raters == 2
    assert det.rater.tolist() == [-1, -1] and det.confidence.tolist() == [1.0, 1.0]
    assert det.agreement.tolist() == [1, 1] and det.members == [] and det.extras == {}
    assert Detections([[0, 0, 1, 1]], [0]).boxes.dtype == np.float64  # not an array: float64


def test_deprecated_constructors_warn_and_return_detections():
    with pytest.warns(FutureWarning, match=r'RaterBoxes\(\.\.\.\) is deprecated .* 0\.3'):
        im = RaterBoxes([[0, 0, 10, 10]], [1], ['a'], ('a', 'b'), 10, 20, 'i')
    new = Detections.from_raters([[0, 0, 10, 10]], [1], ['a'], ('a', 'b'), 10, 20, 'i')
    assert type(im) is Detections and isinstance(im, RaterBoxes) and isinstance(im, FusedBoxes)
    for name in ('boxes', 'labels', 'rater', 'confidence', 'agreement'):
        assert getattr(im, name).tolist() == getattr(new, name).tolist()
    assert (im.raters, im.width, im.height, im.image_id) == (('a', 'b'), 10.0, 20.0, 'i')
    with pytest.warns(FutureWarning, match=r'FusedBoxes\(\.\.\.\) is deprecated'):
        res = FusedBoxes(
            np.zeros((1, 4), np.float32), [0], np.ones(1, np.float32), [1], 3, [np.array([0])]
        )
    assert type(res) is Detections and res.num_raters == 3 and len(res.members) == 1
    with pytest.warns(FutureWarning, match=r'FusedBoxes\.empty\(\.\.\.\) is deprecated'):
        assert FusedBoxes.empty(2).num_raters == 2
    assert not isinstance(object(), RaterBoxes)


@pytest.mark.parametrize('value', [0, 0.0, 0.4, np.float32(0.5), 0.999])
def test_check_iou_thr_accepts(value):
    assert check_iou_thr(value, 'x') == float(value)


@pytest.mark.parametrize('value', [1, 1.0, 1.5, -0.1, np.nan, '0.4', True, None])
def test_check_iou_thr_refuses(value):
    msg = r"aggregator 'x': iou_thr must be a finite number in \[0, 1\)"
    with pytest.raises(ValueError, match=msg):
        check_iou_thr(value, "aggregator 'x'")


def test_old_check_iou_thr_path_warns_and_checks_alike():
    """earl_core.boxes.check_iou_thr (until 0.1) is the one check, behind a FutureWarning."""
    with pytest.warns(FutureWarning, match='earl_core.fusion.base.check_iou_thr'):
        assert boxes.check_iou_thr(0.4) == 0.4
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match=r'^m: iou_thr must be'):
        boxes.check_iou_thr(1.0, 'm')


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


def test_unchecked_fused_results_equal_checked_ones():
    """WBF builds its results with ``Detections.fused(validate=False)``: on varied images
    (empty, one box, overlapping clusters, several labels, fused_score) the fields, their
    dtypes and shapes are what the checked constructor makes of the same arguments."""
    from earl_core.fusion.wbf import fuse_raters

    rng = np.random.default_rng(0)
    seen = 0
    for i in range(60):
        n = int(rng.integers(0, 9))
        xy = rng.uniform(0, 50, (n, 2))
        wh = rng.uniform(1, 30, (n, 2))
        im = Detections.from_raters(
            np.concatenate([xy, xy + wh], 1),
            rng.integers(0, 3, n),
            rng.choice(['a', 'b', 'c'], n).tolist(),
            ['a', 'b', 'c', 'd'],
            width=100,
            height=80,
            image_id=i,
        )
        mode = ('agreement_ratio', 'fused_score')[i % 2]
        res = fuse_raters(im, iou_thr=0.3, confidence=mode)
        checked = Detections.fused(
            res.boxes, res.labels, res.confidence, res.agreement, res.num_raters,
            res.members, res.member_raters, image=im,
        )  # fmt: skip
        for name in ('boxes', 'labels', 'rater', 'confidence', 'agreement'):
            a, b = getattr(res, name), getattr(checked, name)
            assert a.dtype == b.dtype and a.shape == b.shape, (i, name)
            assert np.array_equal(a, b), (i, name)
        assert [m.tolist() for m in res.members] == [m.tolist() for m in checked.members]
        assert res.member_raters == checked.member_raters
        assert (res.raters, res.num_raters, res.width, res.height, res.image_id) == (
            checked.raters, checked.num_raters, checked.width, checked.height, checked.image_id
        )  # fmt: skip
        assert res[res.labels == 0].rater_ids.tolist() == [None] * int((res.labels == 0).sum())
        seen += len(res) > 1
    assert seen > 10  # the cases reach multi-box results
