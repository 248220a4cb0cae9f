"""Tests of earl_core.metrics.rater_report (hand-computed and reference values)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from earl_core.metrics.rater_report import krippendorff_alpha_boxes, pairwise_f1, rater_report
from earl_core.structures import Detections
from tests.test_core.crowd_cases import object_layout


def sq(x: float, y: float = 0.0) -> list[float]:
    return [x, y, x + 10.0, y + 10.0]


def image(boxes, labels, rids, raters, image_id=0):
    return Detections.from_raters(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(rids, dtype=str),
        tuple(raters),
        100.0,
        100.0,
        image_id,
    )


def nominal_alpha_reference(units: list[list]) -> float:
    """Krippendorff's alpha, nominal, via the coincidence matrix (Krippendorff 2011,
    'Computing Krippendorff's alpha-reliability'); units = lists of values, None = missing."""
    values = sorted({v for u in units for v in u if v is not None}, key=str)
    ix = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in units:
        vals = [v for v in u if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for a, b in itertools.permutations(range(m), 2):
            o[ix[vals[a]], ix[vals[b]]] += 1.0 / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    d_o = (o.sum() - np.trace(o)) / n
    d_e = (n * n - (n_c**2).sum()) / (n * (n - 1))
    return 1.0 - d_o / d_e


# Krippendorff (2011), example C: 4 coders x 12 units, nominal alpha = 0.743.
KRIPP = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_alpha_krippendorff_example():
    # Each unit = one image read by the coders who coded it; every coder draws the SAME box
    # (IoU 1 everywhere, also across images) with label = the value, so the IoU distance
    # reduces to the nominal one and both alphas must equal the published 0.743.
    images = []
    for u in range(12):
        coders = [c for c in range(4) if KRIPP[c][u] is not None]
        images.append(
            image(
                [sq(20)] * len(coders),
                [KRIPP[c][u] for c in coders],
                [f'c{c}' for c in coders],
                [f'c{c}' for c in coders],
                u,
            )
        )
    out = krippendorff_alpha_boxes(images, iou_thr=0.5)
    ref = nominal_alpha_reference([[KRIPP[c][u] for c in range(4)] for u in range(12)])
    assert ref == pytest.approx(0.743, abs=5e-4)
    assert out['alpha_nominal'] == pytest.approx(ref, rel=1e-9)
    assert out['alpha'] == pytest.approx(ref, rel=1e-9)
    assert out['units'] == 11  # unit 12 has one value: not pairable
    assert out['values'] == 40


def test_alpha_nothing_values_match_reference():
    # Two raters, three images. Misses become the value 'nothing' in the unit.
    ims = [
        image([sq(0), sq(0)], [0, 0], ['a', 'b'], ['a', 'b'], 0),  # agree: (0, 0)
        image([sq(0)], [1], ['a'], ['a', 'b'], 1),  # b missed: (1, nothing)
        image([sq(0), sq(0)], [1, 1], ['a', 'b'], ['a', 'b'], 2),  # agree: (1, 1)
    ]
    ref = nominal_alpha_reference([[0, 0], [1, 'nothing'], [1, 1]])
    out = krippendorff_alpha_boxes(ims)
    assert out['alpha_nominal'] == pytest.approx(ref)
    assert out['alpha'] == pytest.approx(ref)  # identical boxes: same as nominal
    # Hand value: n = 6 values, D_o = 2/6; D_e = (30 - (2 + 6 + 0)) / 30 = 22/30 (pairs with
    # equal values: 0-0 2, 1-1 6, nothing 0) -> alpha = 1 - (1/3) / (22/30) = 6/11.
    assert out['alpha'] == pytest.approx(6 / 11)


def test_alpha_iou_graded():
    # One unit, two same-label boxes with IoU 9/11 -> distance 2/11; a second unit of
    # disjoint identical boxes. n = 4; D_o = (2 * 2/11) / 4 = 1/11.
    # D_e: pairs (ordered) 12; same-label IoU sum over ordered pairs: unit1 pair 2 * 9/11,
    # unit2 pair 2 * 1, cross-unit pairs IoU 0 (boxes far apart) -> agreement 2*9/11 + 2.
    ims = [
        image([sq(0), sq(1)], [0, 0], ['a', 'b'], ['a', 'b'], 0),
        image([sq(50, 50), sq(50, 50)], [0, 0], ['a', 'b'], ['a', 'b'], 1),
    ]
    d_o = 1 / 11
    d_e = (12 - (2 * 9 / 11 + 2)) / 12
    out = krippendorff_alpha_boxes(ims)
    assert out['alpha'] == pytest.approx(1 - d_o / d_e)
    # Every value is a label-0 box: no variation, so nominal alpha is undefined (D_e = 0).
    assert out['alpha_nominal'] is None


def test_alpha_empty_images_and_degenerate():
    ims = [image([], [], [], ['a', 'b'], 0), image([sq(0)], [0], ['a'], ['a', 'b'], 1)]
    assert krippendorff_alpha_boxes(ims)['units'] == 1
    with_empty = krippendorff_alpha_boxes(ims, include_empty_images=True)
    assert with_empty['units'] == 2 and with_empty['values'] == 4
    # nothing pairable at all -> alpha None
    assert krippendorff_alpha_boxes([image([sq(0)], [0], ['a'], ['a'])])['alpha'] is None


def test_pairwise_f1_hand():
    ims = [
        # a: two boxes; b: one matching a's first (same label), IoU .818 -> TP 1.
        image([sq(0), sq(40), sq(1)], [0, 1, 0], ['a', 'a', 'b'], ['a', 'b', 'c'], 0),
        # c drew a box with the other label where a drew: not a match.
        image([sq(0), sq(0)], [0, 1], ['a', 'c'], ['a', 'c'], 1),
        # b and d read an image with no box.
        image([], [], [], ['b', 'd'], 2),
    ]
    f1, shared = pairwise_f1(ims, ['a', 'b', 'c', 'd'], 0.5)
    assert f1[0, 1] == pytest.approx(2 * 1 / 3)  # 2 TP / (n_a + n_b) = 2 / 3
    assert f1[0, 2] == pytest.approx(0.0)  # image 0: 2 + 0 boxes, image 1: 1 + 1, no TP
    assert f1[1, 2] == 0.0  # shared image 0: b's box, nothing from c
    assert np.isnan(f1[1, 3])  # shared image 2, no box from either: undefined
    assert np.isnan(f1[0, 3])  # no shared image
    assert f1[0, 0] == 1.0 and np.isnan(f1[3, 3])  # d never drew a box
    assert shared.tolist() == [[2, 1, 2, 0], [1, 2, 1, 1], [2, 1, 2, 0], [0, 1, 0, 1]]
    np.testing.assert_array_equal(np.nan_to_num(f1), np.nan_to_num(f1.T))


def test_report_leave_one_out_hand():
    # A and B agree on one box (label 0); C draws elsewhere. Consensus = 'mv' of the OTHER
    # two raters = boxes both of them drew.
    ims = [image([sq(0), sq(1), sq(60, 60)], [0, 0, 0], ['A', 'B', 'C'], ['A', 'B', 'C'])]
    rep = rater_report(ims, iou_thr=0.5, class_names=['x'])
    json.dumps(rep, allow_nan=False)
    c = rep['per_rater']['C']
    # others A, B agree -> one consensus box; C's box does not match it.
    assert (c['tp'], c['rater_boxes_on_loo_images'], c['consensus_boxes']) == (0, 1, 1)
    assert c['precision'] == 0.0 and c['recall'] == 0.0
    a = rep['per_rater']['A']
    # others B, C do not agree -> empty consensus: precision 0/1, recall undefined.
    assert (a['tp'], a['consensus_boxes'], a['precision'], a['recall']) == (0, 0, 0.0, None)
    assert a['images_read'] == 1 and a['boxes'] == 1 and a['images_with_boxes'] == 1
    assert rep['pairwise_f1']['matrix'][0][1] == pytest.approx(1.0)  # A vs B
    assert rep['em']['classes'] == ['x', 'no_obj']
    assert rep['consensus']['leave_one_out'] is True


def test_report_other_consensus_and_errors():
    ims = [image([sq(0), sq(1), sq(60, 60)], [0, 0, 0], ['A', 'B', 'C'], ['A', 'B', 'C'])]
    # quorum 1: C's consensus = mean box of A and B (1 box), A's = union of B and C (2 boxes)
    rep = rater_report(ims, aggregator={'type': 'mv', 'quorum': 1})
    assert rep['per_rater']['A']['consensus_boxes'] == 2
    assert rep['per_rater']['A']['tp'] == 1
    assert rep['per_rater']['A']['precision'] == 1.0 and rep['per_rater']['A']['recall'] == 0.5
    with pytest.raises(ValueError, match='unknown aggregator'):
        rater_report(ims, aggregator='median')
    with pytest.raises(ValueError, match='iou_thr'):
        rater_report(ims, iou_thr=1.5)


def test_truth_quality_hand_computed():
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.metrics.rater_report import truth_quality

    # Two true objects (labels 0 and 1) and one image with no object.
    gold = [image([sq(0), sq(50)], [0, 1], ['g', 'g'], ['g']), image([], [], [], ['g'])]
    raters = [
        image(
            # object 0: A and B right, C mislabels it; object 1: only A (right)
            [sq(0), sq(1), sq(0, 1), sq(50)],
            [0, 0, 5, 1],
            ['A', 'B', 'C', 'A'],
            ['A', 'B', 'C'],
        ),
        image([sq(20)], [2], ['B'], ['A', 'B', 'C']),  # a box on the empty image
    ]
    wbf = build_aggregator('wbf', iou_thr=0.4, confidence='agreement_ratio').fuse_all(raters)
    q = truth_quality(wbf, gold)
    # fused: {A,B} label 0 (T=2, right), C label 5 (T=1, wrong), A label 1 (T=1, right),
    # B label 2 on the empty image (T=1, wrong)
    assert (q['boxes'], q['correct'], q['gold_boxes'], q['covered']) == (4, 2, 2, 2)
    assert q['precision'] == pytest.approx(0.5) and q['recall'] == pytest.approx(1.0)
    # c = T/3: right 2/3 + 1/3, wrong 1/3 + 1/3
    assert q['weighted_precision'] == pytest.approx(3 / 5)
    # false positive = overlaps no gold box at all: only B's box on the empty image (C's
    # label 5 sits on object 0: a wrong label, not clutter). Object 0's best fused box has
    # T=2, object 1's T=1: keeping T >= 2 only would miss object 1.
    columns = (
        'boxes',
        'correct',
        'precision',
        'false_positives',
        'fp_share',
        'miss_share_t_at_least',
    )
    by_agreement = {  # T: one row of the columns above
        1: (3, 1, pytest.approx(1 / 3), 1, pytest.approx(1 / 3), 0.0),
        2: (1, 1, 1.0, 0, 0.0, 0.5),
    }
    assert q['by_agreement'] == {t: dict(zip(columns, row)) for t, row in by_agreement.items()}
    assert (q['false_positives'], q['fp_share'], q['missed'], q['miss_share']) == (1, 0.25, 0, 0)
    na = truth_quality(build_aggregator('na').fuse_all(raters), gold)
    # NA: every right box counts (many-to-one), so its c-share equals its precision
    assert (na['boxes'], na['correct'], na['covered']) == (5, 3, 2)
    assert na['weighted_precision'] == pytest.approx(na['precision'])
    mv = truth_quality(build_aggregator('mv').fuse_all(raters), gold)
    assert (mv['boxes'], mv['correct'], mv['covered']) == (1, 1, 1)
    assert mv['recall'] == pytest.approx(0.5)
    with pytest.raises(ValueError, match='2 fused images but 1 gold'):
        truth_quality(wbf, gold[:1])


def test_truth_quality_iou_threshold_and_empty():
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.metrics.rater_report import truth_quality

    gold = [image([sq(0)], [0], ['g'], ['g'])]
    shifted = [image([sq(4)], [0], ['A'], ['A'])]  # IoU = 60 / 140 = 0.43
    fused = build_aggregator('na').fuse_all(shifted)
    assert truth_quality(fused, gold, iou_thr=0.4)['correct'] == 1
    assert truth_quality(fused, gold, iou_thr=0.5)['correct'] == 0
    empty = truth_quality(build_aggregator('na').fuse_all([image([], [], [], ['A'])]), gold)
    assert empty['precision'] is None and empty['recall'] == 0.0
    assert (empty['missed'], empty['miss_share'], empty['fp_share']) == (1, 1.0, None)
    assert empty['weighted_precision'] is None and empty['mean_iou'] is None


def _partner_images():
    box = lambda x1, y1, x2, y2: [float(x1), y1, x2, y2]  # noqa: E731
    return [
        # a: A1 (label 1), A2 (label 2, far away); b: B1 (label 2, IoU .8 with A1) and
        # B2 (label 1, IoU .5 with A1); c read the image but drew nothing: no pair with c.
        image(
            [box(0, 0, 10, 10), box(50, 50, 60, 60), box(0, 0, 10, 8), box(0, 0, 10, 5)],
            [1, 2, 2, 1],
            ['a', 'a', 'b', 'b'],
            ('a', 'b', 'c'),
            1,
        ),
        # only a drew: no pair at all
        image([box(20, 20, 30, 30)], [3], ['a'], ('a', 'b'), 2),
        # IoU exactly 0.4 is no partner (strict)
        image([box(0, 0, 10, 10), box(0, 0, 10, 4)], [0, 0], ['a', 'b'], ('a', 'b'), 3),
    ]


def test_partner_statistics_hand_computed():
    from earl_core.metrics.rater_report import partner_statistics

    res = partner_statistics(_partner_images())
    o = res['overall']
    # image 1, a -> b: A1's best is B1 (.8, other label): partner, not same label, but B2
    # (label 1, IoU .5) is a same-label partner; A2 has none.
    # b -> a: B1's best is A1 (.8, other label), no label-2 box of a near: partner only;
    # B2's best is A1 (.5, same label): partner, same label, same-label partner.
    # image 3: two boxes at IoU 0.4 exactly, no partner either way.
    assert (o['images'], o['boxes'], o['partners']) == (4, 6, 3)
    assert o['partner_rate'] == pytest.approx(3 / 6)
    assert o['same_label_among_partners'] == pytest.approx(1 / 3)
    assert o['same_label_partner_rate'] == pytest.approx(2 / 6)
    # partner IoUs .8, .8, .5; linear interpolation: p10 = .5 + .2 * .3
    assert o['iou_p10'] == pytest.approx(0.56)
    assert (o['iou_p50'], o['iou_p90']) == (pytest.approx(0.8), pytest.approx(0.8))
    pairs = {(p['rater'], p['other']): p for p in res['pairs']}
    assert set(pairs) == {('a', 'b'), ('b', 'a')}
    ab, ba = pairs['a', 'b'], pairs['b', 'a']
    assert (ab['boxes'], ab['partners'], ab['same_label_partner_rate']) == (3, 1, 1 / 3)
    assert ab['same_label_among_partners'] == 0.0
    assert (ba['boxes'], ba['partners'], ba['same_label_among_partners']) == (3, 2, 0.5)


def test_wbf_agreement_shares_hand_computed():
    from earl_core.metrics.rater_report import wbf_agreement_shares

    res = wbf_agreement_shares(_partner_images())
    # image 1: label 1 A1+B2 (IoU .5) -> T=2; label 2 A2, B1 apart -> two T=1;
    # image 2: one T=1; image 3: IoU 0.4 is not > 0.4 -> two T=1.
    assert res['counts'] == {'1': 5, '2': 1} and res['fused_boxes'] == 6
    assert res['shares']['1'] == pytest.approx(5 / 6)


def test_partner_statistics_empty_and_bad_threshold():
    from earl_core.metrics.rater_report import partner_statistics

    res = partner_statistics(_partner_images()[1:2])
    assert res['overall']['boxes'] == 0 and res['overall']['partner_rate'] is None
    assert res['pairs'] == []
    with pytest.raises(ValueError, match='iou_thr'):
        partner_statistics([], iou_thr=1.0)


# --- The sparse statistics equal dense references (the previous implementations) ---------


def random_images(seed: int, n_images: int = 6, n_raters: int = 4, n_classes: int = 3):
    """Varied seeded images: one image read by one rater, raters who read but drew nothing,
    several classes, duplicate boxes of one rater; even seeds put every coordinate on a
    2-px grid (exact IoU ties), odd seeds are continuous."""
    rng = np.random.default_rng(seed)
    grid = seed % 2 == 0
    raters = [f'r{k}' for k in range(n_raters)]
    out = []
    for i in range(n_images):
        read_by = raters[:1] if i == 0 else [r for r in raters if rng.random() < 0.8] or raters
        n_obj = int(rng.integers(0, 8))
        ctr, size = object_layout(rng, n_obj, grid, (0, 12), (0, 120), (10, 50))
        boxes, labels, rids = [], [], []
        for r in read_by:
            if rng.random() < 0.15:
                continue  # read, drew nothing
            for o in range(n_obj):
                if rng.random() < 0.7:
                    c = ctr[o] + (rng.integers(-1, 2, 2) * 2.0 if grid else rng.normal(0, 3, 2))
                    flip = rng.random() < 0.3
                    boxes.append([*(c - size[o] / 2), *(c + size[o] / 2)])
                    labels.append(int(rng.integers(0, n_classes)) if flip else o % n_classes)
                    rids.append(r)
                    if rng.random() < 0.1:  # the same rater twice on one object
                        boxes.append(boxes[-1])
                        labels.append(labels[-1])
                        rids.append(r)
        out.append(image(boxes, labels, rids, read_by, i))
    return out


def pairwise_f1_dense(images, raters, iou_thr):
    from earl_core.fusion.matching import match_boxes

    idx = {r: i for i, r in enumerate(raters)}
    n = len(raters)
    tp, tot = np.zeros((n, n)), np.zeros((n, n))
    for im in images:
        read_by = [str(r) for r in im.raters if str(r) in idx]
        rids = np.asarray(im.rater_ids)
        for ai, a in enumerate(read_by):
            for b in read_by[ai + 1 :]:
                sa, sb = rids == a, rids == b
                m = len(
                    match_boxes(im.boxes[sa], im.boxes[sb], iou_thr, im.labels[sa], im.labels[sb])[
                        0
                    ]
                )
                i, j = idx[a], idx[b]
                tp[i, j] += m
                tp[j, i] += m
                tot[i, j] += sa.sum() + sb.sum()
                tot[j, i] += sa.sum() + sb.sum()
    return tp, tot


def partner_dense(images, thr):
    """(rater, other) -> [boxes, partner IoUs, same-label best, same-label partner]."""
    from earl_core.fusion.matching import box_iou

    out: dict = {}
    for im in images:
        rids = np.asarray(im.rater_ids)
        drew = [r for r in dict.fromkeys(im.raters) if np.any(rids == r)]
        for a in drew:
            for b in drew:
                if a == b:
                    continue
                sa, sb = rids == a, rids == b
                iou = box_iou(im.boxes[sa], im.boxes[sb])
                same = im.labels[sa][:, None] == im.labels[sb][None, :]
                arg = iou.argmax(1)
                best = iou[np.arange(len(arg)), arg]
                part = best > thr
                e = out.setdefault((a, b), [0, [], 0, 0])
                e[0] += int(sa.sum())
                e[1] += best[part].tolist()
                e[2] += int(same[np.arange(len(arg)), arg][part].sum())
                e[3] += int(np.any((iou > thr) & same, 1).sum())
    return out


def alpha_dense_observed(images, iou_thr):
    """(units, values, D_o * n) with the units' within pairs from dense matrices."""
    from earl_core.fusion.matching import box_iou, cluster_boxes

    units = vals = 0
    d_o = 0.0
    for im in images:
        m = len(im.raters)
        if m < 2 or len(im.labels) == 0:
            continue
        for mem in cluster_boxes(im.boxes, im.rater_ids, iou_thr):
            k = len(mem)
            iou = box_iou(im.boxes[mem], im.boxes[mem])
            same = im.labels[mem][:, None] == im.labels[mem][None, :]
            off = ~np.eye(k, dtype=bool)
            d_o += (np.where(same, 1 - iou, 1.0)[off].sum() + 2.0 * k * (m - k)) / (m - 1)
            units += 1
            vals += m
    return units, vals, d_o


@pytest.mark.parametrize('seed', range(8))
@pytest.mark.parametrize('thr', [0.0, 0.3, 0.5, 0.8])
def test_sparse_statistics_equal_dense(seed, thr):
    from earl_core.metrics.rater_report import partner_statistics

    ims = random_images(seed)
    raters = sorted({r for im in ims for r in im.raters})
    f1, _ = pairwise_f1(ims, raters, thr)
    tp, tot = pairwise_f1_dense(ims, raters, thr)
    off = ~np.eye(len(raters), dtype=bool)
    with np.errstate(invalid='ignore', divide='ignore'):
        ref = np.where(tot > 0, 2 * tp / np.where(tot > 0, tot, 1), np.nan)
    np.testing.assert_array_equal(f1[off], ref[off])

    ps = partner_statistics(ims, thr)
    dense = partner_dense(ims, thr)
    assert [(p['rater'], p['other']) for p in ps['pairs']] == sorted(dense)
    for p in ps['pairs']:
        boxes, ious, same_best, same_ok = dense[p['rater'], p['other']]
        assert (p['boxes'], p['partners']) == (boxes, len(ious))
        assert p['same_label_partner_rate'] == (same_ok / boxes if boxes else None)
        assert p['same_label_among_partners'] == (same_best / len(ious) if ious else None)
        assert p['iou_p25'] == (np.quantile(ious, 0.25) if ious else None)

    alpha = krippendorff_alpha_boxes(ims, thr)
    units, vals, d_o = alpha_dense_observed(ims, thr)
    assert (alpha['units'], alpha['values']) == (units, vals)
    if vals >= 2:
        assert alpha['observed_disagreement'] == pytest.approx(d_o / vals, rel=1e-12, abs=1e-15)


def test_same_label_iou_sum_equals_dense():
    from earl_core.fusion.matching import box_iou
    from earl_core.metrics.rater_report.alpha import _same_label_iou_sum

    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 50, 400):
        xy = np.round(rng.uniform(0, 100, (n, 2)))
        boxes = np.concatenate([xy, xy + np.round(rng.uniform(0, 30, (n, 2)))], 1)
        iou = box_iou(boxes, boxes)
        ref = float(iou.sum() - np.trace(iou))  # zero-area boxes: IoU 0 with themselves
        got = _same_label_iou_sum(boxes, np.random.default_rng(0))
        assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)


LOO_SPECS = [
    'mv',
    {'type': 'mv', 'quorum': 1},
    {'type': 'mv', 'quorum': 0.5, 'box_mode': 'union'},
    {'type': 'mv', 'quorum': 2, 'box_mode': 'intersection', 'iou_thr': 0.2},
    {'type': 'mv', 'class_agnostic': False, 'linkage': 'complete', 'iou_thr': 0.0},
    {'type': 'mv', 'linkage': 'single', 'iou_thr': 0.6},
]


@pytest.mark.filterwarnings('ignore:aggregator .mv.. quorum')
@pytest.mark.parametrize('spec', LOO_SPECS)
def test_leave_one_out_mv_equals_refitting(spec):
    # The derived leave-one-out mv == mv run on each image without the rater.
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.fusion.matching import match_boxes
    from earl_core.metrics.rater_report.consensus import (
        _rater_boxes,
        _without,
        leave_one_out_counts,
    )

    for seed in range(8):
        ims = random_images(seed, n_images=8, n_raters=5)
        raters = sorted({r for im in ims for r in im.raters})
        for thr in (0.3, 0.5):
            got = leave_one_out_counts(ims, spec, raters, thr)
            for r in raters:
                src = [im for im in ims if len(im.raters) >= 2 and r in im.raters]
                ref = [0, 0, 0]
                for im in src:
                    cons = build_aggregator(spec)(_without(im, r))
                    b, lab = _rater_boxes(im, r)
                    ref[0] += len(match_boxes(b, cons.boxes, thr, lab, cons.labels)[0])
                    ref[1] += len(lab)
                    ref[2] += len(cons)
                assert got[r] == tuple(ref), (seed, thr, r)


@pytest.mark.filterwarnings('ignore:aggregator .mv.. quorum')
@pytest.mark.parametrize(
    'batch',
    [
        1 << 22,  # the default: every leave-one-out image of these in one batch
        1,  # one leave-one-out image per batch
        200,  # a few per batch
    ],
)
def test_leave_one_out_mv_consensus_boxes_equal_mv(monkeypatch, batch):
    # Boxes and labels, not only the counts: every image without each reader, clustered and
    # voted on in batches, gives mv's boxes on that image without the reader.
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.metrics.rater_report import consensus
    from earl_core.metrics.rater_report.consensus import _loo_consensus, _without

    monkeypatch.setattr(consensus, '_LOO_BATCH_PAIRS', batch)

    for spec in LOO_SPECS:
        agg = build_aggregator(spec)
        for seed in range(6):
            ims = [im for im in random_images(seed, n_images=5, n_raters=5) if len(im.raters) > 1]
            loo = _loo_consensus(ims, agg)
            v = 0
            for im in ims:
                for r in im.raters:
                    ref = build_aggregator(spec)(_without(im, r))
                    np.testing.assert_array_equal(loo['boxes'][loo['v'] == v], ref.boxes)
                    np.testing.assert_array_equal(loo['labels'][loo['v'] == v], ref.labels)
                    v += 1
            assert v == loo['num']


def test_report_wbf_consensus_uses_refitting():
    # Other aggregators keep the generic path (fit on the leave-one-out data, then fuse).
    ims = random_images(3)
    rep = rater_report(ims, aggregator='wbf', class_names=['a', 'b', 'c'])
    assert rep['consensus']['aggregator'] == 'wbf'
    assert sum(v['loo_images'] for v in rep['per_rater'].values()) > 0


def test_loo_exact_max_readers_is_the_old_name_of_loo_exact_max_raters():
    # LOO_EXACT_MAX_READERS (until 0.2) keeps working until 0.3, with a FutureWarning, from
    # the package and from .consensus (where the report reads LOO_EXACT_MAX_RATERS)
    from earl_core.metrics import rater_report as package
    from earl_core.metrics.rater_report import consensus

    assert package.LOO_EXACT_MAX_RATERS == consensus.LOO_EXACT_MAX_RATERS == 100
    for module in (package, consensus):
        with pytest.warns(FutureWarning, match=r'LOO_EXACT_MAX_READERS.*LOO_EXACT_MAX_RATERS'):
            assert module.LOO_EXACT_MAX_READERS == 100
