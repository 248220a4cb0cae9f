"""Tests of earl_core.fusion.matching and box_ops.box_iou (hand-computed IoUs: 10x10 boxes
shifted by d px along x have IoU (10 - d) / (10 + d))."""

from __future__ import annotations

import numpy as np
import pytest

from earl_core.boxes import box_iou
from earl_core.fusion import matching
from earl_core.fusion.matching import (
    _check_cluster_args,
    _greedy_merge,
    cluster_boxes,
    cluster_segments,
    iou_pairs,
    match_boxes,
    merge_pair,
    overlap_components,
    segment_iou_pairs,
)


def dense_greedy(b, g_idx, lab, iou_thr, linkage):
    """The greedy merge as first written: rescans the (N, N) linkage matrix at every merge
    (O(N^3)); :func:`_greedy_merge` must merge the same pairs in the same order."""
    n = b.shape[0]
    iou = box_iou(b, b)
    conflict = g_idx[:, None] == g_idx[None, :]
    if lab is not None:
        conflict |= lab[:, None] != lab[None, :]
    link_sum = iou.copy()
    size = np.ones(n)
    active = np.ones(n, bool)
    members = [[i] for i in range(n)]
    upper = np.triu(np.ones((n, n), bool), k=1)
    while True:
        link = link_sum / (size[:, None] * size[None, :]) if linkage == 'average' else link_sum
        valid = ~conflict & active[:, None] & active[None, :] & upper & (link > iou_thr)
        if not valid.any():
            break
        a, c = divmod(int(np.argmax(np.where(valid, link, -np.inf))), n)
        # the merge step is shared; what this oracle checks is the dense search for the pair
        merge_pair(a, c, linkage, members, link_sum, conflict, size, active)
    clusters = [np.asarray(sorted(members[i]), np.int64) for i in np.flatnonzero(active)]
    return sorted(clusters, key=lambda m: int(m[0]))


def sq(x: float, y: float = 0.0, s: float = 10.0) -> list[float]:
    return [x, y, x + s, y + s]


@pytest.mark.parametrize(
    'a, b, expected',
    [
        (sq(0), sq(0), 1.0),  # identical
        (sq(0), sq(1), 9 / 11),  # shift 1 px: inter 90, union 110
        (sq(0), sq(5, 5), 25 / 175),  # diagonal shift: inter 5x5
        (sq(0), sq(10), 0.0),  # touching edges
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # two empty boxes: 0, not NaN
    ],
)
def test_box_iou_hand(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


def test_box_iou_shapes_and_errors():
    assert box_iou(np.zeros((0, 4)), np.array([sq(0)])).shape == (0, 1)
    with pytest.raises(ValueError, match='shape'):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match='NaN'):
        box_iou(np.array([[0, 0, np.nan, 1]]), np.zeros((1, 4)))


# a0 at x=0, a1 at x=3; b0 at x=1, b1 at x=-3. IoU: a0-b0 9/11=.818, a1-b0 8/12=.667,
# a0-b1 7/13=.538, a1-b1 4/16=.25. Greedy takes a0-b0 and is stuck (a1-b1 < .5); Hungarian
# takes a0-b1 + a1-b0 (sum 1.205 > .818).
A = np.array([sq(0), sq(3)])
B = np.array([sq(1), sq(-3)])


@pytest.mark.parametrize(
    'method, ia, ib',
    [
        ('greedy', [0], [0]),
        ('hungarian', [0, 1], [1, 0]),
    ],
)
def test_match_greedy_vs_hungarian(method, ia, ib):
    got_a, got_b, ious = match_boxes(A, B, 0.5, method=method)
    assert got_a.tolist() == ia
    assert got_b.tolist() == ib
    assert np.all(ious > 0.5)


def test_match_labels_and_threshold_strict():
    # Same geometry, labels forbid a0-b0: greedy then takes a1-b0 (.667) and a0-b1 (.538).
    ia, ib, _ = match_boxes(A, B, 0.5, np.array([0, 1]), np.array([1, 0]))
    assert (ia.tolist(), ib.tolist()) == ([0, 1], [1, 0])
    # IoU exactly at the threshold does not match (strict >).
    ia, _, _ = match_boxes(np.array([sq(0)]), np.array([sq(1)]), 9 / 11)
    assert ia.size == 0
    with pytest.raises(ValueError, match='both'):
        match_boxes(A, B, 0.5, labels_a=np.array([0, 1]))
    with pytest.raises(ValueError, match='iou_thr'):
        match_boxes(A, B, 1.0)


def test_cluster_one_box_per_rater():
    # r1's two boxes both overlap r2's box: only the better one (IoU .818) joins it.
    boxes = np.array([sq(0), sq(1), sq(0, 1)])
    clusters = cluster_boxes(boxes, np.array(['r1', 'r2', 'r1']), 0.4)
    assert [c.tolist() for c in clusters] == [[0, 1], [2]]


def test_cluster_labels_and_linkage():
    # x = 0, 3, 6: neighbours IoU 7/13 = .538, ends 4/16 = .25.
    boxes = np.array([sq(0), sq(3), sq(6)])
    raters = np.array(['a', 'b', 'c'])
    # average: {0,1} first (tie with {1,2}, first index), then mean(.25, .538) = .394 < .4.
    assert [c.tolist() for c in cluster_boxes(boxes, raters, 0.4)] == [[0, 1], [2]]
    # single linkage chains through the middle box.
    assert [c.tolist() for c in cluster_boxes(boxes, raters, 0.4, linkage='single')] == [[0, 1, 2]]
    # complete: min(.25, .538) = .25 < .4.
    assert len(cluster_boxes(boxes, raters, 0.4, linkage='complete')) == 2
    # with labels, different labels never merge.
    got = cluster_boxes(boxes, raters, 0.4, labels=np.array([0, 1, 1]))
    assert [c.tolist() for c in got] == [[0], [1, 2]]


def test_cluster_rater_order_invariant():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 30, (30, 2))], 1)
    raters = rng.choice(['a', 'b', 'c', 'd'], 30)
    ref = {frozenset(c.tolist()) for c in cluster_boxes(boxes, raters, 0.3)}
    perm = rng.permutation(30)
    got = cluster_boxes(boxes[perm], raters[perm], 0.3)
    assert {frozenset(perm[c].tolist()) for c in got} == ref
    for c in got:  # one box per rater per cluster
        assert len(set(raters[perm][c])) == len(c)


def test_cluster_empty_and_errors():
    assert cluster_boxes(np.zeros((0, 4)), np.array([])) == []
    with pytest.raises(ValueError, match='linkage'):
        cluster_boxes(A, np.array(['a', 'b']), linkage='ward')
    with pytest.raises(ValueError, match='groups'):
        cluster_boxes(A, np.array(['a']))


def _random_boxes(rng: np.random.Generator, n_obj: int, n_raters: int, canvas: float, grid: bool):
    """Jittered reads of n_obj objects; grid=True puts coordinates on a 1-px grid and adds
    exact duplicates, so that exact IoU ties occur."""
    centre = rng.uniform(0, canvas, (n_obj, 2))
    size = rng.uniform(5, 30, (n_obj, 2))
    boxes, groups = [], []
    for r in range(n_raters):
        seen = rng.random(n_obj) < 0.8
        c = centre[seen] + rng.normal(0, 3, (seen.sum(), 2))
        s = size[seen] * rng.uniform(0.8, 1.2, (seen.sum(), 2))
        boxes.append(np.concatenate([c - s / 2, c + s / 2], 1))
        groups += [f'r{r}'] * int(seen.sum())
    b = np.concatenate(boxes)
    g = np.array(groups)
    if grid:
        b = np.round(b)
        dup = rng.choice(len(b), len(b) // 4)
        b = np.concatenate([b, b[dup]])
        g = np.concatenate([g, rng.choice([f'r{r}' for r in range(n_raters)], len(dup))])
    perm = rng.permutation(len(b))
    return b[perm], g[perm]


def dense_reference(boxes, groups, thr, labels, linkage):
    """cluster_boxes' greedy over all boxes at once (O(N^2) memory), the dense way."""
    b, g_idx, lab = _check_cluster_args(boxes, groups, thr, labels, linkage)
    return dense_greedy(b, g_idx, lab, thr, linkage)


@pytest.mark.parametrize('linkage', ['average', 'complete', 'single'])
@pytest.mark.parametrize('with_labels', [False, True])
@pytest.mark.parametrize('grid', [False, True])  # True: exact IoU ties and duplicate boxes
def test_cluster_equals_dense_reference(linkage, with_labels, grid):
    # Per-component greedy == the dense greedy over all boxes, cluster for cluster.
    for seed in range(25):
        rng = np.random.default_rng(seed)
        n_obj = int(rng.integers(1, 25))
        canvas = float(rng.choice([40.0, 150.0]))  # 40: crowded, objects overlap a lot
        boxes, groups = _random_boxes(rng, n_obj, int(rng.integers(2, 6)), canvas, grid)
        labels = rng.integers(0, 2, len(boxes)) if with_labels else None
        thr = float(rng.choice([0.0, 0.2, 0.4, 0.6, 9 / 11]))
        got = cluster_boxes(boxes, groups, thr, labels=labels, linkage=linkage)
        ref = dense_reference(boxes, groups, thr, labels, linkage)
        assert [c.tolist() for c in got] == [c.tolist() for c in ref], seed
        assert all(c.dtype == np.int64 for c in got)


@pytest.mark.parametrize('linkage', ['average', 'complete', 'single'])
def test_cluster_equals_dense_reference_ties(linkage):
    # Exact ties everywhere: 10x10 squares on a 1-px grid, shifts of 0-3 px, repeated boxes.
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 30))
        xy = rng.integers(0, 12, (n, 2)).astype(float)
        boxes = np.concatenate([xy, xy + 10], 1)
        groups = rng.integers(0, 4, n)
        labels = rng.integers(0, 2, n) if seed % 2 else None
        thr = float(rng.choice([0.0, 7 / 13, 9 / 11, 0.25, 8 / 12]))
        got = cluster_boxes(boxes, groups, thr, labels=labels, linkage=linkage)
        ref = dense_reference(boxes, groups, thr, labels, linkage)
        assert [c.tolist() for c in got] == [c.tolist() for c in ref], seed


def _crowd(rng: np.random.Generator, n_raters: int, n_obj: int, spread: float, grid: bool):
    """n_raters raters each drawing every one of n_obj nearby objects, jittered by
    ``spread`` x its size: one component, no clique (the greedy merge runs on all of it)."""
    ctr = rng.uniform(30, 50, (n_obj, 2))
    size = rng.uniform(10, 30, (n_obj, 2))
    c = ctr[None] + rng.normal(0, spread, (n_raters, n_obj, 2)) * size
    s = size * np.exp(rng.normal(0, spread, (n_raters, n_obj, 2)))
    boxes = np.concatenate([c - s / 2, c + s / 2], -1).reshape(-1, 4)
    if grid:
        boxes = np.round(boxes)
    return boxes, np.repeat(np.arange(n_raters), n_obj)


@pytest.mark.parametrize(
    'n_raters, n_obj, spread, grid, labelled',
    [
        (60, 1, 0.25, False, False),  # a crowd on one object, loose boxes
        (40, 3, 0.15, False, True),  # three neighbours, merges within a label only
        (50, 2, 0.2, True, False),  # integer boxes: exact linkage ties, duplicates
        (5, 8, 0.3, True, True),  # few raters, many overlapping objects
    ],
)
@pytest.mark.parametrize('linkage', ['average', 'complete', 'single'])
def test_greedy_merge_equals_dense_rescans(n_raters, n_obj, spread, grid, labelled, linkage):
    # The cached row maxima merge the same pairs in the same order as rescanning the whole
    # matrix at every merge, ties included (whole crowd components, no clique shortcut).
    for seed in range(4):
        rng = np.random.default_rng(seed)
        boxes, groups = _crowd(rng, n_raters, n_obj, spread, grid)
        labels = rng.integers(0, 2, len(boxes)) if labelled else None
        for thr in (0.0, 0.3, 0.5, 9 / 11):
            b, g, lab = _check_cluster_args(boxes, groups, thr, labels, linkage)
            got = _greedy_merge(b, g, lab, thr, linkage)
            ref = dense_greedy(b, g, lab, thr, linkage)
            assert [c.tolist() for c in got] == [c.tolist() for c in ref], (seed, thr)


def test_cluster_components_bounded_chunks():
    # Tiny chunks (one row at a time) find the same components as one big chunk.
    rng = np.random.default_rng(3)
    boxes, groups = _random_boxes(rng, 40, 4, 200.0, True)
    _, g_idx = np.unique(groups, return_inverse=True)
    big = overlap_components(boxes, g_idx, 0.3)[0]
    small = overlap_components(boxes, g_idx, 0.3, max_pairs=1)[0]
    assert np.array_equal(big, small)
    assert big.max() > 0  # more than one component


@pytest.mark.parametrize('grid', [False, True])
def test_iou_pairs_equal_dense(grid):
    # The sweep finds exactly the pairs i < j of the dense matrix with IoU > thr (different
    # group, same label), with the same IoUs, whatever the chunk size.
    from earl_core.fusion.matching import iou_pairs, overlap_components

    for seed in range(10):
        rng = np.random.default_rng(seed)
        boxes, groups = _random_boxes(rng, int(rng.integers(1, 20)), 3, 60.0, grid)
        labels = rng.integers(0, 2, len(boxes))
        iou = box_iou(boxes, boxes)
        for thr in (0.0, 0.3, 9 / 11):
            ok = np.triu(iou > thr, 1) & (groups[:, None] != groups[None, :])
            ok &= labels[:, None] == labels[None, :]
            ri, rj = np.nonzero(ok)
            for max_pairs in (1, 7, 1 << 18):
                i, j, v = iou_pairs(boxes, thr, groups, labels, max_pairs)
                assert (i.tolist(), j.tolist()) == (ri.tolist(), rj.tolist())
                np.testing.assert_array_equal(v, iou[ri, rj])
        comp, clique = overlap_components(boxes, groups, 0.3)
        for c in range(comp.max() + 1):
            m = np.flatnonzero(comp == c)
            sub = (iou[np.ix_(m, m)] > 0.3) & (groups[m][:, None] != groups[m][None, :])
            assert clique[c] == bool(sub[~np.eye(len(m), dtype=bool)].all())
    assert [x.shape for x in iou_pairs(np.zeros((0, 4)))] == [(0,), (0,), (0,)]


def _segments(seed: int, big: bool):
    """Seeded box sets (images): 0-3 objects, 2-7 raters, some crowded; ``big`` adds sets
    above the dense path's 64 boxes. Groups as rater codes, labels in {0, 1}."""
    rng = np.random.default_rng(seed)
    sets = []
    for k in range(int(rng.integers(5, 25))):
        n_obj = int(rng.integers(12, 20)) if big and k % 6 == 0 else int(rng.integers(0, 4))
        b, g = _random_boxes(rng, n_obj, int(rng.integers(2, 8)), float(rng.choice([40, 150])),
                             seed % 2 == 0)  # fmt: skip
        g = np.unique(g, return_inverse=True)[1].reshape(-1)
        sets.append((b.reshape(-1, 4), g, rng.integers(0, 2, len(b))))
    return sets


@pytest.mark.parametrize(
    'seed, big, linkage, with_labels',
    [
        (0, False, 'average', False),  # small sets only (the dense batches), grid ties
        (1, False, 'complete', True),  # per label, continuous coordinates
        (2, True, 'average', True),  # some sets above 64 boxes (one by one, the sweep)
        (3, True, 'single', False),
        (4, False, 'single', True),
    ],
)
def test_segments_equal_one_set_at_a_time(seed, big, linkage, with_labels):
    # cluster_segments / segment_iou_pairs on every set at once == cluster_boxes /
    # iou_pairs on each set, cluster for cluster and pair for pair (IoUs bit for bit).
    sets = _segments(seed, big)
    sizes = np.array([len(b) for b, _, _ in sets])
    boxes = np.concatenate([b for b, _, _ in sets])
    groups = np.concatenate([g for _, g, _ in sets])
    labels = np.concatenate([lab for _, _, lab in sets]) if with_labels else None
    for thr in (0.0, 0.3, 0.5, 9 / 11):
        cid = cluster_segments(boxes, sizes, groups, thr, labels, linkage)
        i, j, v = segment_iou_pairs(boxes, sizes, thr, groups, labels)
        off = n_cl = 0
        ref_pairs = []
        for b, g, lab in sets:
            lab = lab if with_labels else None
            ref = cluster_boxes(b, g, thr, lab, linkage)
            mine = cid[off : off + len(b)]
            got = [np.flatnonzero(mine == c) for c in range(n_cl, n_cl + len(ref))]
            assert [c.tolist() for c in got] == [c.tolist() for c in ref], (thr, off)
            a, c, w = iou_pairs(b, thr, g, lab)
            ref_pairs.append((a + off, c + off, w))
            off += len(b)
            n_cl += len(ref)
        assert n_cl == (cid.max() + 1 if len(cid) else 0)
        ri, rj, rv = (np.concatenate(x) for x in zip(*ref_pairs))
        assert np.array_equal(i, ri) and np.array_equal(j, rj) and np.array_equal(v, rv)


@pytest.mark.parametrize('with_labels', [False, True])
@pytest.mark.parametrize('grid', [False, True])  # True: exact IoU ties, duplicate boxes
def test_dense_small_path_equals_sweep(monkeypatch, grid, with_labels):
    # Up to 64 boxes, components and IoU pairs come from the dense matrix; the sweep and
    # scipy's graph routines (forced with _SMALL = 0) give the same pairs, IoUs, components.
    for seed in range(12):
        rng = np.random.default_rng(seed)
        boxes, groups = _random_boxes(rng, int(rng.integers(1, 12)), 4, 60.0, grid)
        g = np.unique(groups, return_inverse=True)[1].reshape(-1)
        labels = rng.integers(0, 2, len(boxes)) if with_labels else None
        thr = float(rng.choice([0.0, 0.3, 0.5]))
        res = {}
        for small in (64, 0):
            monkeypatch.setattr(matching, '_SMALL', small)
            res[small] = (
                iou_pairs(boxes, thr, g, labels),
                overlap_components(boxes, g, thr, labels),
                cluster_boxes(boxes, g, thr, labels),
            )
        (p1, c1, k1), (p0, c0, k0) = res[64], res[0]
        assert all(np.array_equal(a, b) for a, b in zip(p1, p0)), seed
        assert np.array_equal(c1[0], c0[0]) and np.array_equal(c1[1], c0[1]), seed
        assert [c.tolist() for c in k1] == [c.tolist() for c in k0], seed
