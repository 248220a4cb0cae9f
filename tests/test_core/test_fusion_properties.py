"""Hypothesis properties of earl_core.fusion.wbf.fuse_raters (boxes in pixels)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from earl_core.boxes import box_iou
from earl_core.fusion.wbf import fuse_raters
from earl_core.structures import Detections

SETTINGS = settings(max_examples=100, deadline=None)

coord = st.floats(0.0, 200.0, allow_nan=False, width=32)
offset = st.floats(-12.0, 12.0, allow_nan=False, width=32)
extent = st.floats(1.0, 60.0, allow_nan=False, width=32)


@st.composite
def images(draw, max_raters: int = 5, max_boxes: int = 14, num_raters: int | None = None):
    """A Detections with random raters (some may draw nothing) and boxes.

    Boxes are drawn around 1-4 object positions, so that overlaps and chains are common.
    """
    r = num_raters or draw(st.integers(1, max_raters))
    raters = tuple(f'r{k}' for k in range(r))
    centres = draw(st.lists(st.tuples(coord, coord), min_size=1, max_size=4))
    n = draw(st.integers(0, max_boxes))
    boxes, labels, rids = [], [], []
    for _ in range(n):
        cx, cy = draw(st.sampled_from(centres))
        x, y, w, h = cx + draw(offset), cy + draw(offset), draw(extent), draw(extent)
        boxes.append([x, y, x + w, y + h])
        labels.append(draw(st.integers(0, 2)))
        rids.append(draw(st.sampled_from(raters)))
    return Detections.from_raters(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        rater_ids=np.asarray(rids, dtype=str),
        raters=raters,
        image_id='h',
    )


iou_thrs = st.floats(0.05, 0.95)


def result_set(res, rename=lambda r: r):
    """The fused result as a sorted list (order-free), raters mapped through ``rename``."""
    return sorted(
        (
            int(lab),
            tuple(box.tolist()),
            int(t),
            float(c),
            tuple(sorted(rename(x) for x in mr)),
        )
        for lab, box, t, c, mr in zip(
            res.labels, res.boxes, res.agreement, res.confidence, res.member_raters
        )
    )


@SETTINGS
@given(
    ann=images(),
    iou_thr=iou_thrs,
    weights=st.lists(st.floats(0.05, 1.0), min_size=5, max_size=5),
    tie_break=st.sampled_from(['geometry', 'input']),
)
def test_fused_box_inside_hull_of_members(ann, iou_thr, weights, tie_break):
    p = dict(zip([f'r{k}' for k in range(5)], weights))
    res = fuse_raters(ann, iou_thr=iou_thr, rater_weights=p, tie_break=tie_break)
    used = []
    for box, lab, mem in zip(res.boxes, res.labels, res.members):
        assert len(mem) >= 1
        assert np.all(ann.labels[mem] == lab)  # WBF clusters one label at a time
        lo = ann.boxes[mem].min(0) - 1e-3  # float32 fused coordinates
        hi = ann.boxes[mem].max(0) + 1e-3
        assert np.all(lo <= box) and np.all(box <= hi), (box, ann.boxes[mem])
        used.extend(mem.tolist())
    assert sorted(used) == list(range(len(ann.boxes)))  # every box in exactly one cluster


@SETTINGS
@given(ann=images(), iou_thr=iou_thrs, mode=st.sampled_from(['agreement', 'agreement_ratio']))
def test_agreement_bounds_and_fraction_in_unit_interval(ann, iou_thr, mode):
    res = fuse_raters(ann, iou_thr=iou_thr, confidence=mode)
    r = len(ann.raters)
    assert np.all(res.agreement >= 1) and np.all(res.agreement <= r)
    for t, mr, mem in zip(res.agreement, res.member_raters, res.members):
        assert t == len(mr) == len(set(ann.rater_ids[mem].tolist()))
    if mode == 'agreement_ratio':
        assert np.all(res.confidence > 0) and np.all(res.confidence <= 1)
        np.testing.assert_allclose(res.confidence, res.agreement / r, rtol=1e-6)
    else:
        np.testing.assert_array_equal(res.confidence, res.agreement)


@SETTINGS
@given(ann=images(), iou_thr=iou_thrs, data=st.data(), p=st.sampled_from([None, 0.7]))
def test_equal_weight_rater_permutation_invariance(ann, iou_thr, data, p):
    # Relabel the raters (a bijection to new names), shuffle their order and the order of
    # the boxes: with equal weights the fused result is the same set.
    n = len(ann.boxes)
    # Exception documented in fuse_raters: two raters drawing the very same box and label.
    owners: dict = {}
    for b, lab, r in zip(ann.boxes.tolist(), ann.labels.tolist(), ann.rater_ids.tolist()):
        owners.setdefault((tuple(b), lab), set()).add(r)
    assume(all(len(v) == 1 for v in owners.values()))
    new_names = data.draw(st.permutations([f's{k}' for k in range(len(ann.raters))]))
    rename = dict(zip(ann.raters, new_names))
    perm = np.asarray(data.draw(st.permutations(range(n))), dtype=np.int64)
    raters2 = tuple(data.draw(st.permutations([rename[r] for r in ann.raters])))
    ann2 = Detections.from_raters(
        boxes=ann.boxes[perm],
        labels=ann.labels[perm],
        rater_ids=np.asarray([rename[r] for r in ann.rater_ids[perm]], dtype=str),
        raters=raters2,
        image_id='h2',
    )
    w1 = None if p is None else {r: p for r in ann.raters}
    w2 = None if p is None else {r: p for r in raters2}
    for mode in ('agreement', 'fused_score'):
        a = fuse_raters(ann, iou_thr=iou_thr, confidence=mode, rater_weights=w1)
        b = fuse_raters(ann2, iou_thr=iou_thr, confidence=mode, rater_weights=w2)
        assert result_set(a, rename.get) == result_set(b)


@SETTINGS
@given(ann=images(num_raters=1, max_boxes=10), extra=st.integers(0, 3), iou_thr=iou_thrs)
def test_one_rater_in_same_boxes_out(ann, extra, iou_thr):
    # A single rater's boxes (other raters read the image but drew nothing). What holds
    # always: every fused box has T = 1 and c = 1/R, and there are at most as many fused
    # boxes as input boxes. When no two of the rater's boxes of one label overlap with
    # IoU > iou_thr, nothing fuses: exactly the input boxes come out.
    raters = ann.raters + tuple(f'x{k}' for k in range(extra))
    ann = Detections.from_raters(ann.boxes, ann.labels, ann.rater_ids, raters, image_id='one')
    res = fuse_raters(ann, iou_thr=iou_thr, confidence='agreement_ratio')
    assert np.all(res.agreement == 1) and len(res) <= len(ann.boxes)
    np.testing.assert_allclose(res.confidence, 1 / len(raters))
    iou = box_iou(ann.boxes, ann.boxes)
    same_label = ann.labels[:, None] == ann.labels[None, :]
    np.fill_diagonal(same_label, False)
    if not np.any((iou > iou_thr) & same_label):
        assert len(res) == len(ann.boxes)
        got = sorted(map(tuple, np.c_[res.labels, res.boxes].tolist()))
        want = sorted(map(tuple, np.c_[ann.labels, ann.boxes.astype(np.float32)].tolist()))
        assert got == want
        assert all(len(m) == 1 for m in res.members)


@SETTINGS
@given(
    raters=st.lists(st.text('abc', min_size=1, max_size=3), unique=True, max_size=4),
    iou_thr=iou_thrs,
    mode=st.sampled_from(['agreement', 'agreement_ratio', 'fused_score']),
)
def test_empty_in_empty_out(raters, iou_thr, mode):
    ann = Detections.from_raters(
        np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, str), tuple(raters), image_id=0
    )
    res = fuse_raters(ann, iou_thr=iou_thr, confidence=mode)
    assert len(res) == 0 and res.boxes.shape == (0, 4) and res.num_raters == len(raters)
    assert res.members == [] and res.member_raters == [] and res.agreement.shape == (0,)


@SETTINGS
@given(
    cells=st.lists(
        st.tuples(
            st.floats(0.0, 40.0),
            st.floats(0.0, 40.0),
            st.floats(1.0, 50.0),
            st.floats(1.0, 50.0),
            st.integers(0, 2),
        ),
        max_size=12,
    ),
    iou_thr=st.floats(0.0, 0.95),
)
def test_one_rater_disjoint_boxes_come_out_unchanged(cells, iou_thr):
    # Box k lies inside its own 100x100 grid cell, so no two boxes overlap at all: with one
    # rater every box is its own cluster, returned unchanged (float32), T = 1, c = 1.
    boxes = [
        [100 * (k % 4) + x, 100 * (k // 4) + y, 100 * (k % 4) + x + w, 100 * (k // 4) + y + h]
        for k, (x, y, w, h, _) in enumerate(cells)
    ]
    ann = Detections.from_raters(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray([c[4] for c in cells], np.int64),
        rater_ids=np.asarray(['solo'] * len(cells), dtype=str),
        raters=('solo',),
        image_id='grid',
    )
    res = fuse_raters(ann, iou_thr=iou_thr)
    order = np.argsort(np.concatenate(res.members)) if len(res) else np.zeros(0, int)
    np.testing.assert_array_equal(res.boxes[order], ann.boxes.astype(np.float32))
    np.testing.assert_array_equal(res.labels[order], ann.labels)
    assert np.all(res.agreement == 1) and np.all(res.confidence == 1.0)
