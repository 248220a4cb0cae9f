"""Tests of earl_core.fusion.wbf and its engine (earl_core.fusion.wbf_engine): hand-computed
cases, ensemble-boxes 1.0.9 parity, errors.

ensemble-boxes is the oracle. It warns once per clipped / swapped / zero-area box, so its
calls run under ``warnings.catch_warnings``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import earl_core.fusion.wbf as wbf_module
import earl_core.fusion.wbf_engine as engine
from earl_core.fusion.base import build_aggregator
from earl_core.fusion.wbf import CONF_TYPES, fuse_raters, weighted_boxes_fusion
from earl_core.structures import Detections

ensemble_boxes = pytest.importorskip('ensemble_boxes')

#: Randomised parity cases against ensemble-boxes (the acceptance criterion asks >= 2,000).
NUM_PARITY_CASES = 2000


def reference(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return ensemble_boxes.weighted_boxes_fusion(*args, **kwargs)


def ours(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return weighted_boxes_fusion(*args, **kwargs)


def assert_same(got, want, atol=1e-6):
    """Same boxes, scores and labels in the same order, |delta| <= atol."""
    for name, g, w in zip(('boxes', 'scores', 'labels'), got, want):
        assert g.shape == w.shape, f'{name}: shape {g.shape} != {w.shape}'
        np.testing.assert_allclose(g, w, rtol=0, atol=atol, err_msg=name)


# ----------------------------------------------------------------------------- hand cases
SQ = [0.0, 0.0, 10.0, 10.0]  # a 10x10 box; shifted by d along x: IoU (10-d)/(10+d)


def _case(case_id: str, raters: list, kwargs: dict, want: list):
    """A hand case as the parameters of :func:`test_hand_cases`: per rater its (box, score,
    label) triples, the options, and the (box, score, label) triples fusion must give."""
    unzip = lambda triples: [[t[i] for t in triples] for i in range(3)]  # noqa: E731
    boxes, scores, labels = (list(x) for x in zip(*map(unzip, raters)))
    return pytest.param(boxes, scores, labels, kwargs, *unzip(want), id=case_id)


HAND_CASES = [
    # IoU(.667) > .5: fused x = (1*0 + .5*2)/1.5 = .667; score mean(1,.5) * 2/2 = .75.
    _case(
        'merge-avg',
        [[(SQ, 1.0, 3)], [([2, 0, 12, 10], 0.5, 3)]],
        dict(iou_thr=0.5),
        [([2 / 3, 0, 10 + 2 / 3, 10], 0.75, 3)],
    ),
    # Same boxes, IoU .667 < .7: kept apart, score s * 1 / 2 models.
    _case(
        'no-merge-below-thr',
        [[(SQ, 1.0, 3)], [([2, 0, 12, 10], 0.5, 3)]],
        dict(iou_thr=0.7),
        [(SQ, 0.5, 3), ([2, 0, 12, 10], 0.25, 3)],
    ),
    # IoU = 1/(2+2-1) = 1/3 exactly = iou_thr: strict '>' keeps them apart.
    _case(
        'iou-equal-thr-strict',
        [[([0, 0, 2, 1], 1.0, 0)], [([1, 0, 3, 1], 0.8, 0)]],
        dict(iou_thr=1 / 3),
        [([0, 0, 2, 1], 0.5, 0), ([1, 0, 3, 1], 0.4, 0)],
    ),
    # Just below: merged to the weighted mean (0*1 + 1*.8)/1.8 = .444; score .9 * 2/2.
    _case(
        'iou-above-thr',
        [[([0, 0, 2, 1], 1.0, 0)], [([1, 0, 3, 1], 0.8, 0)]],
        dict(iou_thr=0.33),
        [([0.8 / 1.8, 0, 2 + 0.8 / 1.8, 1], 0.9, 0)],
    ),
    # Different labels never fuse, even at IoU 1.
    _case(
        'labels-separate',
        [[(SQ, 1.0, 0)], [(SQ, 0.5, 1)]],
        dict(iou_thr=0.5),
        [(SQ, 0.5, 0), (SQ, 0.25, 1)],
    ),
    # Chain A-B-C (IoU .429 each neighbour pair): A (s 1) + B (.9) fuse to x1 = 3.6/1.9
    # = 1.895; C's IoU with that fused box is .242 < .4, so C stays alone.
    # Scores: mean(1, .9) * 2/3 = .633; .8 * 1/3 = .267.
    _case(
        'chain-high-score-first',
        [[(SQ, 1.0, 0)], [([4, 0, 14, 10], 0.9, 0)], [([8, 0, 18, 10], 0.8, 0)]],
        dict(iou_thr=0.4),
        [([3.6 / 1.9, 0, 22.6 / 1.9, 10], 0.95 * 2 / 3, 0), ([8, 0, 18, 10], 0.8 / 3, 0)],
    ),
    # The same chain with reversed scores: C (1) + B (.9) fuse (x1 = 11.6/1.9 = 6.105),
    # A stays alone: processing follows the score order.
    _case(
        'chain-reversed-scores',
        [[(SQ, 0.8, 0)], [([4, 0, 14, 10], 0.9, 0)], [([8, 0, 18, 10], 1.0, 0)]],
        dict(iou_thr=0.4),
        [([11.6 / 1.9, 0, 11.6 / 1.9 + 10, 10], 0.95 * 2 / 3, 0), (SQ, 0.8 / 3, 0)],
    ),
    # conf 'max', weights (2, 1): s*w = 1.8, .6; box x1 = (0 + .6*1)/2.4 = .25;
    # score max(1.8, .6) / max(w) = .9.
    _case(
        'max-weighted',
        [[(SQ, 0.9, 0)], [([1, 0, 11, 10], 0.6, 0)]],
        dict(weights=[2, 1], iou_thr=0.5, conf_type='max'),
        [([0.25, 0, 10.25, 10], 0.9, 0)],
    ),
    # One cluster of 3 boxes, model 0 twice. w = (2, 1, 1); s*w = 1.8, 1.2, .3 (order of
    # processing); x1 = (0 + 1.2*1 + 0)/3.3 = .3636. avg: mean 1.1 * min(3, 3)/4 = .825.
    _case(
        'avg-one-model-twice',
        [[(SQ, 0.9, 5), ([1, 0, 11, 10], 0.6, 5)], [(SQ, 0.3, 5)], []],
        dict(weights=[2, 1, 1], iou_thr=0.5),
        [([1.2 / 3.3, 0, 34.2 / 3.3, 10], 0.825, 5)],
    ),
    # box_and_model_avg: 1.1 * 3 / wsum(2+2+1) = .66, * w(models 0,1)=3 / sum(w)=4.
    _case(
        'box-and-model-avg',
        [[(SQ, 0.9, 5), ([1, 0, 11, 10], 0.6, 5)], [(SQ, 0.3, 5)], []],
        dict(weights=[2, 1, 1], iou_thr=0.5, conf_type='box_and_model_avg'),
        [([1.2 / 3.3, 0, 34.2 / 3.3, 10], 0.66 * 3 / 4, 5)],
    ),
    # absent_model_aware_avg: 1.1 * 3 / (wsum 5 + absent model 2's weight 1) = .55.
    _case(
        'absent-model-aware-avg',
        [[(SQ, 0.9, 5), ([1, 0, 11, 10], 0.6, 5)], [(SQ, 0.3, 5)], []],
        dict(weights=[2, 1, 1], iou_thr=0.5, conf_type='absent_model_aware_avg'),
        [([1.2 / 3.3, 0, 34.2 / 3.3, 10], 0.55, 5)],
    ),
    # 2 models, 3 boxes in the cluster: avg caps n at M: 1.1 * 2/3 = .733.
    _case(
        'avg-capped',
        [[(SQ, 0.9, 5), ([1, 0, 11, 10], 0.6, 5)], [(SQ, 0.3, 5)]],
        dict(weights=[2, 1], iou_thr=0.5),
        [([1.2 / 3.3, 0, 34.2 / 3.3, 10], 1.1 * 2 / 3, 5)],
    ),
    # allows_overflow: 1.1 * 3/3 = 1.1 > 1 (ensemble-boxes #40).
    _case(
        'avg-overflow',
        [[(SQ, 0.9, 5), ([1, 0, 11, 10], 0.6, 5)], [(SQ, 0.3, 5)]],
        dict(weights=[2, 1], iou_thr=0.5, allows_overflow=True),
        [([1.2 / 3.3, 0, 34.2 / 3.3, 10], 1.1, 5)],
    ),
    # x2 < x1 and y2 < y1: corners swapped, then a normal box (1 model: score 1).
    _case('swap-corners', [[([10, 10, 0, 0], 1.0, 2)]], {}, [(SQ, 1.0, 2)]),
    # Zero-area box (x1 = x2) dropped; the other box alone.
    _case('zero-area-dropped', [[([3, 0, 3, 10], 1.0, 0), (SQ, 0.7, 0)]], {}, [(SQ, 0.7, 0)]),
    # skip_box_thr: a score equal to the threshold stays, a lower one goes.
    _case(
        'skip-thr-inclusive',
        [[(SQ, 0.5, 0), ([50, 50, 60, 60], 0.3, 0)]],
        dict(skip_box_thr=0.5),
        [(SQ, 0.5, 0)],
    ),
    # Pixel coordinates (not clipped): the fused box is in pixels.
    _case(
        'pixels',
        [[([100, 200, 1100, 1200], 1.0, 1)], [([300, 200, 1300, 1200], 1.0, 1)]],
        dict(iou_thr=0.5),
        [([200, 200, 1200, 1200], 1.0, 1)],
    ),
    # Float labels that are integral are accepted; float labels come back (as ebx).
    _case('float-integral-labels', [[(SQ, 1.0, 4.0)]], {}, [(SQ, 1.0, 4)]),
]


@pytest.mark.parametrize(
    'boxes, scores, labels, kwargs, want_boxes, want_scores, want_labels', HAND_CASES
)
def test_hand_cases(boxes, scores, labels, kwargs, want_boxes, want_scores, want_labels):
    got = ours(boxes, scores, labels, **kwargs)
    want = (
        np.array(want_boxes, float).reshape(-1, 4),
        np.array(want_scores, float),
        np.array(want_labels, float),
    )
    assert_same(got, want, atol=1e-5)  # hand values vs float32 fused coordinates
    assert got[0].dtype == got[1].dtype == got[2].dtype == np.float64


@pytest.mark.parametrize(
    'boxes, scores, labels, kwargs, want_boxes, want_scores, want_labels',
    [c for c in HAND_CASES if c.id != 'pixels'],
)
def test_hand_cases_match_ensemble_boxes(
    boxes, scores, labels, kwargs, want_boxes, want_scores, want_labels
):
    # The hand cases in [0, 1] units (divide by 32, exact) give ensemble-boxes' answer (up
    # to its float32 fused boxes).
    scale = lambda bl: [np.asarray(b, float).reshape(-1, 4) / 32 for b in bl]  # noqa: E731
    got = ours(scale(boxes), scores, labels, **kwargs)
    want = reference(scale(boxes), scores, labels, **kwargs)
    assert_same(got, want, atol=1e-6)


def test_swap_and_zero_area_warn_once():
    with pytest.warns(UserWarning, match='corners swapped'):
        weighted_boxes_fusion([[[10, 10, 0, 0], [20, 20, 5, 5]]], [[1.0, 1.0]], [[0, 0]])
    with pytest.warns(UserWarning, match='2 zero-area'):
        weighted_boxes_fusion([[[3, 0, 3, 10], [0, 4, 9, 4]]], [[1.0, 1.0]], [[0, 0]])


def test_empty_inputs():
    for args in (([], [], []), ([[]], [[]], [[]]), ([np.zeros((0, 4))] * 2, [[], []], [[], []])):
        boxes, scores, labels = weighted_boxes_fusion(*args)
        assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


def test_all_skipped_is_empty():
    boxes, scores, _ = weighted_boxes_fusion([[SQ]], [[0.2]], [[0]], skip_box_thr=0.5)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_zero_score_cluster_is_plain_mean():
    # Documented deviation: ensemble-boxes returns NaN here (0/0); we return the mean box.
    boxes, scores, _ = weighted_boxes_fusion(
        [[SQ], [[2, 0, 12, 10]]], [[0.0], [0.0]], [[0], [0]], iou_thr=0.5
    )
    np.testing.assert_allclose(boxes, [[1, 0, 11, 10]])
    np.testing.assert_array_equal(scores, [0.0])


def test_clip_reproduces_ensemble_boxes_out_of_range():
    # Normalised input leaking outside [0, 1]: clip=True gives ensemble-boxes' result,
    # the default leaves coordinates alone (as needed for pixels).
    bl = [[[-0.1, 0.2, 0.5, 1.2]], [[0.0, 0.25, 0.55, 1.0]]]
    args = (bl, [[0.9], [0.8]], [[1], [1]])
    assert_same(ours(*args, iou_thr=0.3, clip=True), reference(*args, iou_thr=0.3))
    boxes, _, _ = ours(*args, iou_thr=0.3)
    assert boxes.min() < 0 and boxes.max() > 1


def test_power_of_two_scale_is_exact():
    # Scaling by 2**k is exact in binary floating point, so pixel input fuses to exactly the
    # scaled normalised result (WBF is scale-invariant).
    rng = np.random.default_rng(3)
    for _ in range(50):
        bl, sl, ll = _random_case(rng, 3, big=False)[:3]
        a = ours(bl, sl, ll, iou_thr=0.4)
        b = ours([np.asarray(x, float).reshape(-1, 4) * 1024.0 for x in bl], sl, ll, iou_thr=0.4)
        np.testing.assert_array_equal(a[0] * 1024.0, b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


# ------------------------------------------------------------------------------- parity
def _random_case(rng: np.random.Generator, num_models: int, big: bool):
    """One randomised WBF input in [0, 1] with clusters, chains, ties and repeats."""
    num_labels = 1 if big else int(rng.integers(1, 4))
    n_obj = int(rng.integers(40, 100) if big else rng.integers(1, 6))
    ctr = rng.uniform(0.15, 0.85, (n_obj, 2))
    if rng.random() < 0.3:  # objects in a row: neighbours overlap -> chained clusters
        ctr[:, 0] = 0.1 + 0.05 * np.arange(n_obj) % 0.8
    size = rng.uniform(0.05, 0.3, (n_obj, 2))
    obj_label = rng.integers(0, num_labels, n_obj)
    score_kind = rng.integers(0, 4)  # uniform, a few exact values (ties), all 1, mixed dtypes
    bl, sl, ll = [], [], []
    for _ in range(num_models):
        boxes, labels = [], []
        for k in range(n_obj):
            reps = rng.choice([0, 1, 1, 1, 2]) if rng.random() < 0.8 else 0  # 2 = one model twice
            for _ in range(reps):
                c = ctr[k] + rng.normal(0, 0.1, 2) * size[k]
                s = size[k] * np.exp(rng.normal(0, 0.15, 2))
                boxes.append([*(c - s / 2), *(c + s / 2)])
                labels.append(obj_label[k] if rng.random() < 0.85 else rng.integers(num_labels))
        n = len(boxes)
        b = np.clip(np.asarray(boxes, float).reshape(-1, 4), 0.0, 1.0)
        if rng.random() < 0.1 and n:  # exact duplicate box
            b[-1] = b[0]
        if score_kind == 0:
            s = rng.uniform(0.01, 1.0, n)
        elif score_kind == 1:
            s = rng.choice([0.3, 0.5, 0.8, 1.0], n)
        elif score_kind == 2:
            s = np.ones(n)
        else:
            s = rng.uniform(0.01, 1.0, n).astype(np.float32)
        lab = np.asarray(labels, np.int64)
        if rng.random() < 0.5:  # list inputs as well as arrays
            bl.append(b.tolist()), sl.append(s.tolist()), ll.append(lab.tolist())
        else:
            bl.append(b), sl.append(s), ll.append(lab)
    r = rng.random()
    if r < 0.35:
        weights = None
    elif r < 0.5:
        weights = rng.integers(1, 4, num_models).tolist()  # integer weights: more ties
    else:
        weights = rng.uniform(0.1, 3.0, num_models).tolist()
    kwargs = dict(
        weights=weights,
        iou_thr=float(
            rng.choice([0.4, 0.5, 0.55]) if rng.random() < 0.4 else rng.uniform(0.05, 0.9)
        ),
        skip_box_thr=float(0.0 if rng.random() < 0.6 else rng.uniform(0.0, 0.6)),
        allows_overflow=bool(rng.random() < 0.3),
    )
    return bl, sl, ll, kwargs


def canonical(result):
    """WBF output (boxes, scores, labels) in an order that does not depend on score ties."""
    boxes, scores, labels = result
    keys = np.column_stack([labels, np.round(boxes, 5), np.round(scores, 5)])
    order = np.lexsort(keys.T[::-1])
    return boxes[order], scores[order], labels[order]


def test_parity_with_ensemble_boxes_randomised():
    rng = np.random.default_rng(20240611)
    stats = dict(merged=0, ties=0, multi_cluster=0, big=0, empty=0)
    for case in range(NUM_PARITY_CASES):
        big = case % 40 == 0  # many clusters per label: the vectorised IoU path
        bl, sl, ll, kwargs = _random_case(rng, int(rng.integers(1, 6)), big)
        conf_type = CONF_TYPES[case % len(CONF_TYPES)]
        want = reference(bl, sl, ll, conf_type=conf_type, **kwargs)
        got = ours(bl, sl, ll, conf_type=conf_type, **kwargs)
        assert len(got[0]) == len(want[0]), f'case {case}: {len(got[0])} != {len(want[0])}'
        assert np.all(np.diff(got[1]) <= 0), f'case {case}: not sorted by score'
        # Same fused boxes, scores and labels; ensemble-boxes' float32 scores may order
        # boxes whose scores agree to ~1e-7 differently (43 of the 2,000 cases).
        for name, g, w in zip(('boxes', 'scores', 'labels'), canonical(got), canonical(want)):
            assert np.max(np.abs(g - w), initial=0.0) <= 1e-6, f'case {case} {name}'
        n_in = sum(len(b) for b in bl)
        stats['merged'] += len(want[0]) < n_in
        stats['ties'] += len(np.unique(want[1])) < len(want[1])
        stats['multi_cluster'] += len(want[0]) > 1
        # More fused boxes of one label than _VECTOR_MIN_CLUSTERS: the vectorised IoU path.
        most = int(np.max(np.unique(want[2], return_counts=True)[1], initial=0))
        stats['big'] += big and most > engine._VECTOR_MIN_CLUSTERS
        stats['empty'] += len(want[0]) == 0
    # The generator must exercise what the parity is about.
    assert stats['merged'] > NUM_PARITY_CASES // 2, stats
    assert stats['ties'] > NUM_PARITY_CASES // 10, stats
    assert stats['big'] >= NUM_PARITY_CASES // 80, stats
    assert stats['empty'] > 0, stats


# ------------------------------------------------------------------------------ errors
GOOD = ([[SQ], [[1, 0, 11, 10]]], [[0.9], [0.8]], [[0], [1]])


@pytest.mark.parametrize(
    'args, kwargs, match',
    [
        # The authors' released call: labels passed as scores -> scores outside [0, 1].
        (([[SQ, SQ]], [[3, 5]], [[1.0, 1.0]]), {}, r'scores must lie in \[0, 1\]'),
        # Scores passed as labels -> non-integral labels.
        (([[SQ, SQ]], [[1.0, 1.0]], [[0.9, 0.4]]), {}, 'labels must be integral'),
        # One more scores list than boxes lists.
        ((GOOD[0], GOOD[1] + [[1.0]], GOOD[2]), {}, 'one entry per model'),
        # A model with 1 box but 2 scores.
        (([[SQ]], [[1.0, 0.5]], [[0]]), {}, r'model 0: 1 boxes, 2 scores'),
        # A model with 1 box but no label.
        (([[SQ]], [[1.0]], [[]]), {}, r'0 labels'),
        # Boxes with 5 columns.
        (([[[0, 0, 1, 1, 0.5]]], [[1.0]], [[0]]), {}, r'shape \(N, 4\)'),
        # NaN and inf coordinates (named by model and box).
        (
            ([[SQ], [SQ, [0, np.nan, 1, 1]]], [[1.0], [1.0, 1.0]], [[0], [0, 0]]),
            {},
            'model 1 box 1 has a NaN',
        ),
        (([[[0, 0, np.inf, 1]]], [[1.0]], [[0]]), {}, 'NaN, infinite or huge'),
        # NaN score, negative score.
        (([[SQ]], [[np.nan]], [[0]]), {}, 'scores must lie'),
        (([[SQ]], [[-0.1]], [[0]]), {}, 'scores must lie'),
        # Infinite label.
        (([[SQ]], [[1.0]], [[np.inf]]), {}, 'labels must be integral'),
        # Strings.
        (([[['a', 0, 1, 1]]], [[1.0]], [[0]]), {}, 'numbers'),
        # Weights: wrong count, zero (ensemble-boxes: NaN, #44), negative, NaN.
        (GOOD, dict(weights=[1.0]), 'one value per model'),
        (GOOD, dict(weights=[1.0, 0.0]), r'finite and > 0'),
        (GOOD, dict(weights=[1.0, -1.0]), r'finite and > 0'),
        (GOOD, dict(weights=[1.0, np.nan]), r'finite and > 0'),
        # Parameters.
        (GOOD, dict(conf_type='mean'), 'conf_type must be one of'),
        (GOOD, dict(iou_thr=1.5), r'iou_thr must be a finite number in \[0, 1\)'),
        (GOOD, dict(iou_thr=1.0), r'iou_thr must be a finite number in \[0, 1\)'),
        (GOOD, dict(iou_thr=np.nan), 'iou_thr'),
        (GOOD, dict(iou_thr='0.5'), 'iou_thr'),
        (GOOD, dict(skip_box_thr=np.inf), 'skip_box_thr'),
        # Not a sequence per model.
        (([SQ], [1.0], [0]), {}, 'sequences per model'),
    ],
)
def test_bad_input_raises(args, kwargs, match, capsys):
    with pytest.raises(ValueError, match=match):
        weighted_boxes_fusion(*args, **kwargs)
    assert capsys.readouterr().out == ''  # never prints (ensemble-boxes prints and exits)


def test_import_pulls_neither_numba_nor_mmdet():
    # earl_core is framework-free: importing the fusion loads neither mmdet nor torch
    # (nor numba, which ensemble-boxes would bring).
    code = (
        'import sys; import earl_core.fusion.wbf; '
        'bad = [m for m in sys.modules if m.split(".")[0] in '
        '("numba", "mmdet", "mmengine", "torch", "earl_mmdet")]; '
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


# -------------------------------------------------------------------------- fuse_raters
def sq(x: float, y: float = 0.0) -> list[float]:
    return [x, y, x + 10.0, y + 10.0]


def image(boxes, labels, rids, raters=('A', 'B', 'C'), image_id='img1', scale=1.0):
    return Detections.from_raters(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4) * scale,
        labels=np.asarray(labels, np.int64),
        rater_ids=np.asarray(rids, dtype=str),
        raters=tuple(raters),
        image_id=image_id,
    )


# A and B (label 0) on one object (IoU .667), B twice on another object (IoU .818), C's
# lone label-1 box; rater D read the image and drew nothing (R = 4).
IM = image(
    [sq(0), sq(2), sq(50), sq(51), sq(20, 30)],
    [0, 0, 0, 0, 1],
    ['A', 'B', 'B', 'B', 'C'],
    raters=('A', 'B', 'C', 'D'),
)


@pytest.mark.parametrize(
    'kwargs, want',
    [
        # agreement: T = distinct raters (B's two boxes count once).
        (dict(confidence='agreement'), {(0, 1.0): 2.0, (0, 50.5): 1.0, (1, 20.0): 1.0}),
        # agreement_ratio (the default): T / R, R = 4 raters read the image.
        ({}, {(0, 1.0): 0.5, (0, 50.5): 0.25, (1, 20.0): 0.25}),
        # fused_score (avg, weights 1): min(n, R) / R with n = boxes, so B's pair gives 2/4.
        (dict(confidence='fused_score'), {(0, 1.0): 0.5, (0, 50.5): 0.5, (1, 20.0): 0.25}),
        # The deprecated spellings still give the same.
        (dict(score_mode='count'), {(0, 1.0): 2.0, (0, 50.5): 1.0, (1, 20.0): 1.0}),
        (dict(confidence='wbf'), {(0, 1.0): 0.5, (0, 50.5): 0.5, (1, 20.0): 0.25}),
    ],
)
def test_fuse_raters_confidence_modes(kwargs, want):
    res = fuse_raters(IM, **kwargs)
    got = {
        (int(lab), float(b[0])): float(c)
        for lab, b, c in zip(res.labels, res.boxes, res.confidence)
    }
    assert got == pytest.approx(want)
    assert res.num_raters == 4
    assert res.boxes.dtype == np.float32 and res.confidence.dtype == np.float32
    assert res.labels.dtype == np.int64 and res.agreement.dtype == np.int64


def test_fuse_raters_membership():
    res = fuse_raters(IM)
    rows = {
        float(b[0]): (m.tolist(), r, int(t))
        for b, m, r, t in zip(res.boxes, res.members, res.member_raters, res.agreement)
    }
    assert rows[1.0] == ([0, 1], ('A', 'B'), 2)
    assert rows[50.5] == ([2, 3], ('B',), 1)
    assert rows[20.0] == ([4], ('C',), 1)
    np.testing.assert_allclose(res.boxes[res.labels == 1], [sq(20, 30)])


def test_fuse_raters_weights_are_proficiency():
    # p_A = .9, p_B = .3: the fused box leans to A: x1 = (.9*0 + .3*2)/1.2 = .5.
    w = {'A': 0.9, 'B': 0.3, 'C': 0.5, 'D': 0.5, 'unused': 1.0}
    res = fuse_raters(IM, rater_weights=w, confidence='fused_score')
    ab = res.boxes[(res.labels == 0) & (res.agreement == 2)]
    np.testing.assert_allclose(ab, [[0.5, 0, 10.5, 10]], atol=1e-6)
    c = res.confidence[(res.labels == 0) & (res.agreement == 2)]
    np.testing.assert_allclose(c, [(0.9 + 0.3) / 2 * 2 / 2.2], atol=1e-6)  # mean * n / sum p


def test_fuse_raters_empty_and_unread():
    res = fuse_raters(image([], [], []))
    assert len(res) == 0 and res.num_raters == 3 and res.boxes.shape == (0, 4)
    assert res.members == [] and res.member_raters == []
    res.boxes.shape = (0, 2, 2)  # each empty result owns its array objects
    assert fuse_raters(image([], [], [])).boxes.shape == (0, 4)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        # Weights must cover every rater who read the image, and be > 0.
        (dict(rater_weights={'A': 1.0}), "no weight for rater 'B'"),
        (
            dict(rater_weights={'A': 1, 'B': 0, 'C': 1, 'D': 1}),
            r"fuse_raters: rater_weights\['B'\] must be a finite number > 0, got 0",
        ),
        # Modes.
        (dict(confidence='T'), 'confidence must be one of'),
        (dict(confidence='posterior'), 'confidence must be one of'),  # em only
        (dict(confidence='agreement', score_mode='count'), 'not both'),
        (dict(tie_break='random'), 'tie_break must be one of'),
        (dict(conf_type='median'), 'conf_type must be one of'),
    ],
)
def test_fuse_raters_bad_input(kwargs, match):
    # (Bad boxes, labels and raters cannot reach fuse_raters: Detections refuses them.)
    with pytest.raises(ValueError, match=match):
        fuse_raters(IM, **kwargs)


@pytest.mark.parametrize(
    'bad',
    [
        dict(iou_thr=1.0),  # nothing could match
        dict(iou_thr='0.4'),  # a number read as text
        dict(skip_box_thr=1.5),  # above every score: every box dropped
        dict(skip_box_thr=float('nan')),
        dict(conf_type='median'),
    ],
)
def test_wbf_parameters_have_one_check(bad):
    """weighted_boxes_fusion, fuse_raters and the wbf aggregator refuse a bad parameter
    with the same message, after the name of the caller (one check, check_wbf_params)."""
    messages = []
    calls = [
        (lambda: weighted_boxes_fusion(*GOOD, **bad), 'weighted_boxes_fusion: '),
        (lambda: fuse_raters(IM, **bad), 'fuse_raters: '),
        (lambda: build_aggregator('wbf', **bad), "aggregator 'wbf': "),
    ]
    for call, where in calls:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value).startswith(where), str(err.value)
        messages.append(str(err.value)[len(where) :])
    assert messages[0] == messages[1] == messages[2]
    assert next(iter(bad)) in messages[0]  # names the parameter


def test_wbf_aggregator_checks_once_and_fuses_as_fuse_raters(monkeypatch):
    """The aggregator checks its parameters when it is built, not again per image, and
    fuses as fuse_raters does."""
    agg = build_aggregator('wbf', iou_thr=0.5, confidence='agreement')
    checks = []
    monkeypatch.setattr(wbf_module, 'check_wbf_params', lambda *a, **k: checks.append(a))
    got = agg(IM)
    assert checks == []
    monkeypatch.undo()
    want = fuse_raters(IM, iou_thr=0.5, confidence='agreement')
    np.testing.assert_array_equal(got.boxes, want.boxes)
    np.testing.assert_array_equal(got.confidence, want.confidence)
    assert [m.tolist() for m in got.members] == [m.tolist() for m in want.members]
    with pytest.raises(AttributeError):  # checked once: the parameters are read-only
        agg.iou_thr = 2.0


def _vindr_like(rng: np.random.Generator, num_images: int) -> list[Detections]:
    """Small multi-rater set in pixels: 3 of 6 raters per image, jittered copies of findings."""
    out = []
    for i in range(num_images):
        w, h = rng.uniform(500, 3000, 2)
        raters = tuple(f'R{k}' for k in rng.choice(6, 3, replace=False))
        boxes, labels, rids = [], [], []
        n_obj = rng.integers(0, 6)
        size = rng.uniform(0.05, 0.4, (n_obj, 2)) * [w, h]
        ctr = rng.uniform(size / 2, [w, h] - size / 2)
        lab = rng.integers(0, 4, n_obj)
        for r in raters:
            for k in range(n_obj):
                for _ in range(rng.choice([0, 1, 1, 1, 2])):
                    c = ctr[k] + rng.normal(0, 0.12, 2) * size[k]
                    s = size[k] * np.exp(rng.normal(0, 0.12, 2))
                    boxes.append([*(c - s / 2), *(c + s / 2)])
                    labels.append(lab[k] if rng.random() < 0.8 else rng.integers(4))
                    rids.append(r)
        b = np.asarray(boxes, float).reshape(-1, 4)
        b[:, 0::2] = b[:, 0::2].clip(0, w)
        b[:, 1::2] = b[:, 1::2].clip(0, h)
        perm = rng.permutation(len(b))  # rater boxes interleaved, as in a CSV
        out.append(
            Detections.from_raters(
                b[perm],
                np.asarray(labels, np.int64)[perm],
                np.asarray(rids, str)[perm],
                raters,
                width=float(w),
                height=float(h),
                image_id=i,
            )
        )
    return out


@pytest.mark.parametrize('weighted', [False, True])
def test_fuse_raters_input_order_matches_ensemble_boxes(weighted):
    # tie_break='input' == ensemble-boxes on normalised coordinates, one list per rater
    # (ann.raters order, each rater's boxes in input order), scores 1, weights p_r.
    rng = np.random.default_rng(7 + weighted)
    p = {f'R{k}': float(v) for k, v in enumerate(rng.uniform(0.3, 1.0, 6))}
    for ann in _vindr_like(rng, 300):
        scale = np.array([ann.width, ann.height, ann.width, ann.height])
        bl = [ann.boxes[ann.rater_ids == r] / scale for r in ann.raters]
        sl = [np.ones(len(b)) for b in bl]
        ll = [ann.labels[ann.rater_ids == r] for r in ann.raters]
        wts = [p[r] for r in ann.raters] if weighted else None
        rb, rs, rl = reference(bl, sl, ll, weights=wts, iou_thr=0.4)
        res = fuse_raters(
            ann, confidence='fused_score', tie_break='input', rater_weights=p if weighted else None
        )
        assert len(res) == len(rb), ann.image_id
        np.testing.assert_allclose(res.boxes / scale, rb, rtol=0, atol=1e-6)
        np.testing.assert_allclose(res.confidence, rs, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(res.labels, rl)
        # Membership: the fused box is the p-weighted mean of its members (float32).
        for k, mem in enumerate(res.members):
            wm = np.array([p[r] if weighted else 1.0 for r in ann.rater_ids[mem]])
            mean = (ann.boxes[mem] * wm[:, None]).sum(0) / wm.sum()
            np.testing.assert_allclose(res.boxes[k], mean, rtol=1e-5)
            assert res.agreement[k] == len(set(ann.rater_ids[mem].tolist()))
            assert res.member_raters[k] == tuple(r for r in ann.raters if r in ann.rater_ids[mem])


def test_fuse_raters_geometry_same_clusters_mostly():
    # The default tie-break differs from ensemble-boxes only on images where the
    # processing order of tied boxes changes a greedy decision; every box is still used
    # once and the agreement mode equals T.
    rng = np.random.default_rng(11)
    for ann in _vindr_like(rng, 200):
        res = fuse_raters(ann, confidence='agreement')
        used = np.sort(np.concatenate(res.members)) if len(res) else np.zeros(0, int)
        np.testing.assert_array_equal(used, np.arange(len(ann.boxes)))
        np.testing.assert_array_equal(res.confidence, res.agreement.astype(np.float32))
