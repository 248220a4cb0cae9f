"""Tests of earl_core.fusion.aggregators with hand-computed expectations.

Geometry used throughout: 10x10 boxes shifted by d px along x have IoU (10-d)/(10+d):
d=1 -> .818, d=2 -> .667, d=3 -> .538.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earl_core.fusion.aggregators import (
    AGGREGATORS,
    EMAggregator,
    MajorityVoteAggregator,
    NoAggregation,
    PresenceEMAggregator,
    SingleRater,
    build_aggregator,
)
from earl_core.fusion.wbf import WBFAggregator, fuse_raters
from earl_core.structures import Detections


def sq(x: float, y: float = 0.0) -> list[float]:
    return [x, y, x + 10.0, y + 10.0]


def image(boxes, labels, raters_of_boxes, raters=('A', 'B', 'C'), image_id=1):
    return Detections.from_raters(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        rater_ids=np.asarray(raters_of_boxes, dtype=str),
        raters=tuple(raters),
        width=100.0,
        height=100.0,
        image_id=image_id,
    )


# One object seen by A (label 0, x=0), B (label 0, x=2), C (label 1, x=1), and a lone box of
# C far away. Class-agnostic clustering: A-C .818 merge first, then B joins (mean(.667,
# .818) = .742 > .4). Votes: label 0 by A, B (T = 2), label 1 by C.
IM = image([sq(0), sq(2), sq(1), sq(50, 50)], [0, 0, 1, 2], ['A', 'B', 'C', 'C'])


# ----------------------------------------------------------------------------- registry
def test_registry_names():
    assert set(AGGREGATORS) == {'na', 'rater', 'mv', 'wbf', 'em', 'presence_em', 'bayes'}


@pytest.mark.parametrize(
    'spec, params, cls',
    [
        ('na', {}, NoAggregation),
        ('rater:R8', {}, SingleRater),
        ({'type': 'rater', 'rater': 'R8'}, {}, SingleRater),
        ('mv', {'quorum': 2}, MajorityVoteAggregator),
        ({'type': 'mv', 'quorum': 1}, {'quorum': 2}, MajorityVoteAggregator),  # kwarg wins
        ('wbf', {'iou_thr': 0.5}, WBFAggregator),
        ('em', {'max_iter': 5}, EMAggregator),
        ('presence_em', {'max_iter': 5, 'confidence': 'posterior'}, PresenceEMAggregator),
        ({'type': 'presence_em', 'box_averaging': 'uniform'}, {}, PresenceEMAggregator),
    ],
)
def test_build(spec, params, cls):
    agg = build_aggregator(spec, **params)
    assert type(agg) is cls
    # get_params round-trips through build_aggregator.
    assert build_aggregator(agg.get_params()).get_params() == agg.get_params()


@pytest.mark.parametrize('name', ['em', 'presence_em'])
def test_box_weights_is_the_old_name_of_box_averaging(name):
    # the EM option box_weights (until 0.2) keeps working until 0.3, with a FutureWarning
    with pytest.warns(FutureWarning, match=f"'{name}': box_weights=.*box_averaging="):
        agg = build_aggregator(name, box_weights='uniform')
    assert agg.box_averaging == 'uniform' and agg.get_params()['box_averaging'] == 'uniform'
    assert 'box_weights' not in agg.get_params()
    with pytest.raises(ValueError, match=f"'{name}': give box_averaging= only"):
        build_aggregator(name, box_weights='uniform', box_averaging='box')
    assert build_aggregator(name).box_averaging == 'box'  # the default, named


def test_build_rater_and_override():
    assert build_aggregator('rater:R8').rater == 'R8'
    assert build_aggregator({'type': 'mv', 'quorum': 1}, quorum=2).quorum == 2


@pytest.mark.parametrize(
    'spec, params, match',
    [
        (
            'bogus',
            {},
            r"unknown aggregator 'bogus'; valid names: na, rater:<id>, mv, wbf, em, presence_em, "
            'bayes',
        ),
        ('rater:', {}, 'needs a rater id'),
        ('rater', {}, 'needs a rater id'),
        ({'quorum': 2}, {}, "needs a 'type'"),
        (3, {}, 'must be a name or a dict'),
        ('na', {'iou_thr': 0.4}, "invalid parameters for aggregator 'na'"),  # not an na option
        ('mv', {'quorum': 0}, 'quorum must be >= 1'),
        ('mv', {'quorum': 1.5}, r'fraction of R in \(0, 1\]'),
        ('mv', {'quorum': True}, 'quorum must be int'),
        ('mv', {'box_mode': 'median'}, 'box_mode'),
        ('mv', {'iou_thr': 1.0}, r"aggregator 'mv': iou_thr must be a finite number in \[0, 1\)"),
        (
            'wbf',
            {'iou_thr': '0.4'},
            r"aggregator 'wbf': iou_thr must be a finite number in \[0, 1\)",
        ),
        ('wbf', {'rater_weights': {'A': 0}}, r"rater_weights\['A'\] must be a finite number > 0"),
        ('wbf', {'confidence': 'posterior'}, "aggregator 'wbf': confidence must be one of"),
        ('wbf', {'score_mode': 'posterior'}, 'confidence must be one of'),  # deprecated name
        ('mv', {'confidence': 'agreement', 'score_mode': 'count'}, 'not both'),
        ('wbf', {'conf_type': 'mean'}, 'conf_type must be one of'),
        ('wbf', {'tie_break': 'random'}, 'tie_break must be one of'),
        ('em', {'box_averaging': 'x'}, 'box_averaging'),
        ('em', {'prior_diag': 2.0}, 'prior_diag'),
        ('em', {'bogus': 1}, "aggregator 'em'"),
        ('em', {'confidence': 'presence'}, "aggregator 'em': confidence must be one of"),
        ('presence_em', {'confidence': 'agreement'}, "'presence_em': confidence must be one of"),
        ('presence_em', {'box_averaging': 'proficiency'}, "box_averaging must be 'box' or"),
        ('presence_em', {'fp_prior': 1.0}, r'fp_prior must be a finite number in \(0, 1\)'),
        ('presence_em', {'bogus': 1}, "aggregator 'presence_em'"),
        ('rater:A', {'on_missing': 'ignore'}, 'on_missing'),
        ('na', {'confidence': 'avg'}, 'confidence must be one of'),
    ],
)
def test_build_errors(spec, params, match):
    with pytest.raises(ValueError, match=match):
        build_aggregator(spec, **params)


# ----------------------------------------------------------------------------- na / rater
@pytest.mark.parametrize(
    'params, confidence',
    [
        ({}, 1.0),  # default 'agreement', the baseline: every box weighs T = 1
        ({'confidence': 'agreement_ratio'}, 1 / 3),  # a one-rater cluster out of R = 3
        ({'confidence': 'fused_score'}, 1 / 3),  # WBF 'avg' of a singleton: min(1, R) / R
        ({'score_mode': 'fraction'}, 1 / 3),  # deprecated spelling
    ],
)
def test_na(params, confidence):
    res = build_aggregator('na', **params)(IM)
    assert isinstance(res, Detections)
    np.testing.assert_array_equal(res.boxes, IM.boxes.astype(np.float32))
    np.testing.assert_array_equal(res.labels, IM.labels)
    np.testing.assert_allclose(res.confidence, confidence, rtol=1e-6)
    assert res.agreement.tolist() == [1, 1, 1, 1]
    assert res.num_raters == 3
    assert res.member_raters == [('A',), ('B',), ('C',), ('C',)]
    assert all(type(r) is str for mr in res.member_raters for r in mr)  # not np.str_
    assert [m.tolist() for m in res.members] == [[0], [1], [2], [3]]


def test_single_rater():
    res = build_aggregator('rater:C')(IM)
    assert res.labels.tolist() == [1, 2]
    assert [m.tolist() for m in res.members] == [[2], [3]]
    assert res.num_raters == 1 and res.confidence.tolist() == [1.0, 1.0]
    # A rater who read the image but drew nothing: empty, R = 1 (a negative).
    none = build_aggregator('rater:A')(image([], [], [], raters=('A', 'B')))
    assert len(none) == 0 and none.num_raters == 1


def test_single_rater_missing():
    im = image([sq(0)], [0], ['A'], raters=('A', 'B'), image_id=7)
    with pytest.raises(ValueError, match=r"rater 'Z' did not read image 7"):
        build_aggregator('rater:Z')(im)
    res = build_aggregator('rater:Z', on_missing='skip')(im)
    assert len(res) == 0 and res.num_raters == 0  # R = 0: nobody read it


# ----------------------------------------------------------------------------- mv
@pytest.mark.parametrize(
    'box_mode, box',
    [
        ('average', [1, 0, 11, 10]),  # mean of A (x=0) and B (x=2); C voted label 1
        ('union', [0, 0, 12, 10]),
        ('intersection', [2, 0, 10, 10]),
    ],
)
def test_mv_box_modes(box_mode, box):
    res = build_aggregator('mv', box_mode=box_mode)(IM)
    assert res.boxes.tolist() == [box]
    assert res.labels.tolist() == [0]
    assert res.agreement.tolist() == [2]  # A and B; the quorum 2 of R = 3 is met
    assert res.confidence.tolist() == [pytest.approx(2 / 3)]  # default: T / R
    assert res.member_raters == [('A', 'B')]
    assert [m.tolist() for m in res.members] == [[0, 1]]


def test_mv_intersection_fallback():
    # Three boxes in a chain whose common area is empty -> average box (single linkage).
    im = image([[0, 0, 10, 10], [6, 0, 16, 10], [11, 0, 21, 10]], [0, 0, 0], ['A', 'B', 'C'])
    res = build_aggregator('mv', box_mode='intersection', iou_thr=0.1, linkage='single')(im)
    np.testing.assert_allclose(res.boxes, [[17 / 3, 0, 47 / 3, 10]], rtol=1e-6)


@pytest.mark.parametrize(
    'quorum, raters, kept_t',
    [
        (None, ('A', 'B', 'C'), [2]),  # strict majority of 3 = 2: the lone C box is dropped
        (None, ('A', 'B', 'C', 'D'), []),  # majority of 4 = 3 (D read it, drew nothing)
        (0.5, ('A', 'B', 'C', 'D'), [2]),  # half of 4 = 2
        (1, ('A', 'B', 'C'), [2, 1]),  # one rater suffices: C's far box survives
        (3, ('A', 'B', 'C'), []),
    ],
)
def test_mv_quorum(quorum, raters, kept_t):
    im = image(IM.boxes, IM.labels, IM.rater_ids, raters=raters)
    res = build_aggregator('mv', quorum=quorum)(im)
    assert res.agreement.tolist() == kept_t
    assert res.num_raters == len(raters)


def test_mv_required_votes_is_the_old_name_of_required_agreement():
    # required_votes (until 0.2) keeps working until 0.3, with a FutureWarning
    agg = build_aggregator('mv', quorum=0.5)
    assert agg.required_agreement(4) == 2
    assert agg.required_agreement(np.array([3, 4])).tolist() == [2, 2]
    with pytest.warns(FutureWarning, match=r'required_votes\(\).*required_agreement\(\)'):
        assert agg.required_votes(4) == 2


def test_mv_quorum_above_r_warns_once():
    agg = build_aggregator('mv', quorum=7)
    im = image(IM.boxes, IM.labels, IM.rater_ids, raters=('A', 'B', 'C'))
    with pytest.warns(UserWarning, match=r'quorum 7 exceeds the R = 3 raters who read image'):
        assert len(agg(im)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # once per aggregator, not once per image
        agg(im)
        build_aggregator('mv', quorum=3)(im)  # a quorum of R is reachable: no warning


@pytest.mark.parametrize(
    'mode, confidence', [('agreement', 2.0), ('agreement_ratio', 2 / 3), ('fused_score', 2 / 3)]
)
def test_mv_confidence_modes(mode, confidence):
    res = build_aggregator('mv', confidence=mode)(IM)
    assert res.confidence[0] == pytest.approx(confidence)


def test_mv_tie_and_per_label():
    # A says 1, B says 0 on one object: tie, quorum 1 -> the smaller label wins.
    im = image([sq(0), sq(1)], [1, 0], ['A', 'B'], raters=('A', 'B'))
    res = build_aggregator('mv', quorum=1)(im)
    assert res.labels.tolist() == [0] and res.member_raters == [('B',)]
    # Per-label clustering (WBF-like): C's label-1 box is its own cluster, T = 1.
    res = build_aggregator('mv', quorum=1, class_agnostic=False)(IM)
    assert sorted(zip(res.labels.tolist(), res.agreement.tolist())) == [(0, 2), (1, 1), (2, 1)]


def test_mv_empty_and_unread():
    res = build_aggregator('mv')(image([], [], []))
    assert len(res) == 0 and res.num_raters == 3 and res.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match=r"rater 'Z' drew a box but is not in raters"):
        build_aggregator('mv')(image([sq(0)], [0], ['Z']))  # (Detections refuses it)


# ----------------------------------------------------------------------------- presence_em
@pytest.fixture(scope='module')
def presence_data():
    """The presence model's own data: 4 raters read all 300 images, sites in grid cells."""
    from tests.test_core.test_presence_em import FP, SENS, confusions, generate

    return generate(300, SENS[:4], FP[:4], confusions(4), seed=3)[0]


@pytest.mark.parametrize('mode', ['presence', 'posterior'])
def test_presence_em_is_the_model_posterior(presence_data, mode):
    """Every cluster kept: label = argmax P(y | z = 1), c = the mode, box = the mean."""
    agg = build_aggregator('presence_em', confidence=mode, box_averaging='uniform')
    assert agg.fit(presence_data) is agg and agg.model.num_classes_ == 4
    low = 0
    for im in presence_data[:40]:
        post, res = agg.model.posterior(im), agg(im)
        assert res.num_raters == len(im.raters) == 4
        assert [m.tolist() for m in res.members] == [c.tolist() for c in post.clustered.clusters]
        np.testing.assert_array_equal(res.labels, post.labels)
        np.testing.assert_array_equal(res.confidence, np.float32(post.confidence(mode)))
        for k, members in enumerate(res.members):
            np.testing.assert_allclose(res.boxes[k], im.boxes[members].mean(0), rtol=1e-6)
            assert res.agreement[k] == (im.labels[members] == res.labels[k]).sum()
            assert res.member_raters[k] == tuple(im.rater_ids[members])
        low += int((res.confidence < 0.5).sum())
    assert low > 10  # unlikely clusters are kept, with a low c
    assert agg.sensitivity.keys() == agg.fp_rate.keys() == {'r0', 'r1', 'r2', 'r3'}
    assert agg.sensitivity['r0'] == agg.model.sensitivity_[0]


def test_presence_em_box_is_em_box_model(presence_data):
    """box_averaging='box': weights 1/sigma_r^2 of RaterEM fitted on the same images."""
    from earl_core.fusion.em import RaterEM

    agg = build_aggregator('presence_em').fit(presence_data)
    w = RaterEM(num_classes=4).fit(presence_data).rater_weights('box')
    assert len(set(w.values())) == 4  # the raters' box errors differ
    im = presence_data[0]
    ref = build_aggregator('presence_em', box_averaging='uniform').fit(presence_data)(im)
    res = agg(im)
    np.testing.assert_array_equal(res.confidence, ref.confidence)
    for k, members in enumerate(res.members):
        wk = np.array([w[r] for r in im.rater_ids[members]])
        expected = (im.boxes[members] * wk[:, None]).sum(0) / wk.sum()
        np.testing.assert_allclose(res.boxes[k], expected, rtol=1e-6)


def test_presence_em_needs_fit_and_handles_empty_images(presence_data):
    agg = build_aggregator('presence_em')
    with pytest.raises(ValueError, match="'presence_em' must be fitted first"):
        agg(presence_data[0])
    agg.fit(presence_data)
    res = agg(image([], [], [], raters=('r0', 'r1')))
    assert len(res) == 0 and res.num_raters == 2 and res.boxes.shape == (0, 4)


# ----------------------------------------------------------------------------- wbf
def test_wbf_hand():
    # Label-wise: A and B (label 0, IoU .667 > .4) fuse to the mean box, T = 2; C's label-1
    # box and its far label-2 box stay alone (T = 1).
    res = build_aggregator('wbf', iou_thr=0.4)(IM)
    got = {
        int(lab): (box.tolist(), int(t), float(c))
        for lab, box, t, c in zip(res.labels, res.boxes, res.agreement, res.confidence)
    }
    # default confidence: T / R (R = 3)
    assert got[0] == ([1.0, 0.0, 11.0, 10.0], 2, pytest.approx(2 / 3))
    assert got[1][1:] == (1, pytest.approx(1 / 3))
    assert got[2][1:] == (1, pytest.approx(1 / 3))
    assert res.num_raters == 3


@pytest.mark.parametrize('mode', ['agreement', 'agreement_ratio', 'fused_score'])
def test_wbf_delegates_to_fuse_raters(mode):
    w = {'A': 0.9, 'B': 0.5, 'C': 0.7}
    res = build_aggregator('wbf', confidence=mode, rater_weights=w)(IM)
    ref = fuse_raters(IM, iou_thr=0.4, confidence=mode, rater_weights=w)
    np.testing.assert_array_equal(res.boxes, ref.boxes)
    np.testing.assert_array_equal(res.confidence, ref.confidence)
    np.testing.assert_array_equal(res.agreement, ref.agreement)


# ----------------------------------------------------------------------------- properties
@st.composite
def random_image(draw):
    n_raters = draw(st.integers(1, 4))
    raters = tuple(f'r{i}' for i in range(n_raters))
    n = draw(st.integers(0, 12))
    xy = draw(st.lists(st.tuples(st.floats(0, 80), st.floats(0, 80)), min_size=n, max_size=n))
    wh = draw(st.lists(st.tuples(st.floats(1, 30), st.floats(1, 30)), min_size=n, max_size=n))
    boxes = [[x, y, x + w, y + h] for (x, y), (w, h) in zip(xy, wh)]
    labels = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    rids = draw(st.lists(st.sampled_from(raters), min_size=n, max_size=n))
    return image(boxes, labels, rids, raters=raters)


@settings(max_examples=60, deadline=None)
@given(im=random_image(), box_mode=st.sampled_from(['average', 'union', 'intersection']))
def test_mv_properties(im, box_mode):
    res = build_aggregator('mv', quorum=1, box_mode=box_mode)(im)  # default c = T / R
    r = len(im.raters)
    for k in range(len(res)):
        m = res.members[k]
        # one box per rater, all voters carry the fused label, T = voters
        assert len(set(im.rater_ids[m])) == len(m) == res.agreement[k]
        assert np.all(im.labels[m] == res.labels[k])
        assert 0 < res.confidence[k] <= 1 and res.confidence[k] == pytest.approx(len(m) / r)
        # the fused box lies inside the hull of its members
        hull = np.concatenate([im.boxes[m, :2].min(0), im.boxes[m, 2:].max(0)])
        b = res.boxes[k].astype(np.float64)
        assert np.all(b[:2] >= hull[:2] - 1e-3) and np.all(b[2:] <= hull[2:] + 1e-3)
    # quorum 1 keeps every box in exactly one cluster (minority-label boxes are dropped)
    kept = np.concatenate(res.members) if len(res) else np.zeros(0, int)
    assert len(set(kept.tolist())) == len(kept) <= len(im.labels)
