"""earl_core.metrics.ap: COCO parity with pycocotools, Kaggle VOC AP, PredictionStrings."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earl_core.metrics import ap

pytest.importorskip('pycocotools')
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

# faster-coco-eval's C++ accumulate rounds precision differently from numpy in the last bit
# (measured: |diff| <= 2.2e-16); pycocotools through our glue is bit-identical.
FAST_ATOL = 1e-12


def random_set(seed: int) -> tuple[dict, list[dict]]:
    """A random gold COCO dict and detections, covering the awkward cases.

    Every set has an empty class (the last one: no gt, a few false positives), images
    without predictions and images without gt; scores are rounded to 0.1 so that ties
    across and within images are frequent. Some sets use string image ids, file ``area``
    values that differ from w*h (pycocotools uses the file's), or > 100 boxes on an image.
    """
    rng = np.random.default_rng(seed)
    n_img = int(rng.integers(5, 25))
    k = int(rng.integers(2, 6))
    str_ids = seed % 7 == 3
    images = [
        dict(id=f'img{i:03d}' if str_ids else int(3 * i + 1), width=300, height=300)
        for i in rng.permutation(n_img)  # file order != id order
    ]
    cats = [dict(id=int(5 + 2 * c), name=f'class{c}') for c in range(k)]
    anns, dets = [], []
    file_area = seed % 5 == 1
    for im in images:
        no_preds = rng.uniform() < 0.2
        for _ in range(int(rng.integers(0, 5))):
            x, y = rng.uniform(0, 250, 2)
            w, h = rng.uniform(3, 120, 2)
            c = int(rng.integers(0, k - 1))
            area = float(w * h * rng.uniform(0.5, 1.0)) if file_area else float(w * h)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=im['id'],
                    category_id=cats[c]['id'],
                    bbox=[float(x), float(y), float(w), float(h)],
                    area=area,
                    iscrowd=0,
                )
            )
            if no_preds:
                continue
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.15 * min(w, h), 4)
                cc = c if rng.uniform() < 0.85 else int(rng.integers(0, k))
                dets.append(
                    dict(
                        image_id=im['id'],
                        category_id=cats[cc]['id'],
                        bbox=[
                            float(x + j[0]),
                            float(y + j[1]),
                            float(max(w + j[2], 1)),
                            float(max(h + j[3], 1)),
                        ],
                        score=float(np.round(rng.uniform(), 1)),
                    )
                )
        if not no_preds:
            for _ in range(int(rng.integers(0, 3))):
                x, y = rng.uniform(0, 250, 2)
                w, h = rng.uniform(3, 120, 2)
                dets.append(
                    dict(
                        image_id=im['id'],
                        category_id=cats[int(rng.integers(0, k))]['id'],
                        bbox=[float(x), float(y), float(w), float(h)],
                        score=float(np.round(rng.uniform(), 1)),
                    )
                )
    if seed % 10 == 0:  # one crowded image: maxDets=100 truncation matters
        im = images[0]
        c = cats[0]['id']
        for _ in range(130):
            x, y = rng.uniform(0, 250, 2)
            dets.append(
                dict(
                    image_id=im['id'],
                    category_id=c,
                    bbox=[float(x), float(y), 30.0, 30.0],
                    score=float(rng.uniform()),
                )
            )
        anns.append(
            dict(
                id=len(anns) + 1,
                image_id=im['id'],
                category_id=c,
                bbox=[10.0, 10.0, 30.0, 30.0],
                area=900.0,
                iscrowd=0,
            )
        )
        dets.append(
            dict(image_id=im['id'], category_id=c, bbox=[10.0, 10.0, 30.0, 30.0], score=0.001)
        )  # a TP ranked 131st: cut by maxDets
    return dict(images=images, categories=cats, annotations=anns), dets


def reference(gt: dict, dets: list[dict], iou_thrs=None, max_dets=None) -> COCOeval:
    """Plain pycocotools, as a user would run it on the files."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, 'bbox')
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs)
        if max_dets is not None:
            ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
        if max_dets is None:  # summarize() needs the three default maxDets
            ev.summarize()
    return ev


def _class_ap(precision: np.ndarray) -> np.ndarray:
    """(T, R, K, A, M) reference precision -> per-class mean at area all, last maxDets."""
    out = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1]
        out.append(p[p > -1].mean() if (p > -1).any() else np.nan)
    return np.array(out)


@pytest.mark.parametrize('seed', range(60))
def test_parity_with_pycocotools(seed):
    gt, dets = random_set(seed)
    std = reference(gt, dets)  # default params: mAP@[.5:.95], AP50, AP75, APs/m/l
    at40 = reference(gt, dets, iou_thrs=[0.4])  # stats[0] = mAP@0.4
    gold = ap.prepare_coco_gt(gt)
    for backend, atol in (('pycocotools', 0.0), ('faster_coco_eval', FAST_ATOL)):
        precision = ap.evaluate_coco(gold, dets, backend=backend)
        # Slices of the combined run equal separate runs, entry by entry.
        np.testing.assert_allclose(precision[1:], std.eval['precision'][..., -1], rtol=0, atol=atol)
        np.testing.assert_allclose(
            precision[:1], at40.eval['precision'][..., -1], rtol=0, atol=atol
        )
        scalars, per_class = ap.summarize_precision(precision, ap.COMBINED_IOU_THRS)
        expected = dict(zip(['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'], std.stats))
        expected['mAP_40'] = at40.stats[0]
        assert set(scalars) == set(expected)
        for key, value in expected.items():
            assert scalars[key] == pytest.approx(value, abs=atol, rel=0), (backend, key)
        np.testing.assert_allclose(
            per_class['AP'], _class_ap(std.eval['precision']), atol=atol, rtol=0
        )
        np.testing.assert_allclose(
            per_class['AP_40'], _class_ap(at40.eval['precision']), atol=atol, rtol=0
        )
        # The last class never has gt: NaN in the per-class table.
        assert np.isnan(per_class['AP_40'][-1]) and np.isnan(per_class['AP'][-1])


@pytest.mark.parametrize('max_dets', [1, 3, 10])
def test_max_dets_matches_reference(max_dets):
    gt, dets = random_set(10)  # has the 131-detection image
    ref = reference(gt, dets, max_dets=max_dets)
    precision = ap.evaluate_coco(
        ap.prepare_coco_gt(gt), dets, backend='pycocotools', max_dets=max_dets
    )
    np.testing.assert_array_equal(precision[1:], ref.eval['precision'][..., 0])


def test_crowded_image_is_truncated_at_100():
    gt, dets = random_set(0)
    gold = ap.prepare_coco_gt(gt)
    p100 = ap.evaluate_coco(gold, dets, backend='pycocotools')
    p200 = ap.evaluate_coco(gold, dets, backend='pycocotools', max_dets=200)
    assert not np.array_equal(p100, p200)  # the 131st box only counts with max_dets=200


def test_per_class_at_04_only_works():
    # mmdet's CocoMetric(iou_thrs=[0.4], classwise=True) indexes IoU 0 and 5 and crashes.
    gt, dets = random_set(3)
    precision = ap.evaluate_coco(
        ap.prepare_coco_gt(gt), dets, iou_thrs=[0.4], backend='pycocotools'
    )
    scalars, per_class = ap.summarize_precision(precision, [0.4])
    assert set(scalars) == {'mAP_40'} and set(per_class) == {'AP_40'}
    ref = reference(gt, dets, iou_thrs=[0.4])
    np.testing.assert_array_equal(per_class['AP_40'], _class_ap(ref.eval['precision']))


@pytest.mark.parametrize('backend', ap.BACKENDS)
def test_empty_detections(backend):
    gt, _ = random_set(4)
    precision = ap.evaluate_coco(ap.prepare_coco_gt(gt), [], backend=backend)
    scalars, per_class = ap.summarize_precision(precision, ap.COMBINED_IOU_THRS)
    assert scalars['mAP_40'] == 0.0 and scalars['mAP'] == 0.0
    assert np.all(per_class['AP'][:-1] == 0.0)


def test_no_ground_truth_gives_minus_one():
    gt = dict(
        images=[dict(id=1, width=10, height=10)], categories=[dict(id=1, name='a')], annotations=[]
    )
    dets = [dict(image_id=1, category_id=1, bbox=[0, 0, 5, 5], score=0.5)]
    precision = ap.evaluate_coco(ap.prepare_coco_gt(gt), dets, backend='pycocotools')
    scalars, per_class = ap.summarize_precision(precision, ap.COMBINED_IOU_THRS)
    assert scalars['mAP_40'] == -1.0 and np.isnan(per_class['AP_40'][0])


def test_cat_ids_order_is_kept():
    gt, dets = random_set(5)
    gold = ap.prepare_coco_gt(gt)
    ids = [c['id'] for c in gold['categories']]
    fwd = ap.evaluate_coco(gold, dets, backend='pycocotools', cat_ids=ids)
    rev = ap.evaluate_coco(gold, dets, backend='pycocotools', cat_ids=ids[::-1])
    np.testing.assert_array_equal(fwd[:, :, ::-1], rev)


def test_prepare_coco_gt_renumbers_and_defaults():
    gt = dict(
        images=[dict(id=7, width=10, height=10)],
        categories=[dict(id=3, name='a')],
        annotations=[dict(id=0, image_id=7, category_id=3, bbox=[1, 1, 2, 4])],
    )
    out = ap.prepare_coco_gt(gt)
    assert out['annotations'] == [
        dict(id=1, image_id=7, category_id=3, bbox=[1.0, 1.0, 2.0, 4.0], area=8.0, iscrowd=0)
    ]
    assert gt['annotations'][0]['id'] == 0  # input untouched


@pytest.mark.parametrize(
    'ann, match',
    [
        (dict(image_id=9, category_id=3, bbox=[0, 0, 1, 1]), "'image_id' 9"),  # unknown image
        (dict(image_id=7, category_id=4, bbox=[0, 0, 1, 1]), "'category_id' 4"),  # unknown cat
        (dict(image_id=7, category_id=3, bbox=[0, 0, 1]), "'bbox'"),  # 3 numbers
        (dict(image_id=7, category_id=3, bbox=[0, 0, 1, float('nan')]), "'bbox'"),  # NaN
    ],
)
def test_prepare_coco_gt_errors(ann, match):
    gt = dict(
        images=[dict(id=7, width=10, height=10)],
        categories=[dict(id=3, name='a')],
        annotations=[dict(id=1, **ann)],
    )
    with pytest.raises(ValueError, match=match):
        ap.prepare_coco_gt(gt)


def test_coco_gt_from_instances_matches_mmdet_layout():
    gts = [
        dict(
            img_id=4,
            width=20,
            height=10,
            anns=[dict(bbox=[1, 2, 5, 8], bbox_label=1, ignore_flag=1)],
        )
    ]
    out = ap.coco_gt_from_instances(gts, ['a', 'b'])
    assert out['categories'] == [dict(id=0, name='a'), dict(id=1, name='b')]
    assert out['annotations'][0] == dict(
        id=1, image_id=4, category_id=1, bbox=[1.0, 2.0, 4.0, 6.0], area=24.0, iscrowd=1
    )
    with pytest.raises(ValueError, match='bbox_label 2'):
        ap.coco_gt_from_instances(
            [dict(img_id=0, width=1, height=1, anns=[dict(bbox=[0, 0, 1, 1], bbox_label=2)])], ['a']
        )


def test_detections_to_coco_errors():
    with pytest.raises(ValueError, match='label 1 outside'):
        ap.detections_to_coco([0], [np.zeros((1, 4))], [np.ones(1)], [np.array([1])], [5])
    with pytest.raises(ValueError, match='2 boxes, 1 scores'):
        ap.detections_to_coco([0], [np.zeros((2, 4))], [np.ones(1)], [np.zeros(2)], [5])


def test_evaluate_coco_rejects_unknown_image_and_backend():
    gt, _ = random_set(1)
    gold = ap.prepare_coco_gt(gt)
    with pytest.raises(ValueError, match='not a gold image'):
        ap.evaluate_coco(
            gold,
            [
                dict(
                    image_id=-5,
                    category_id=gold['categories'][0]['id'],
                    bbox=[0, 0, 1, 1],
                    score=1.0,
                )
            ],
            backend='pycocotools',
        )
    with pytest.raises(ValueError, match='backend'):
        ap.evaluate_coco(gold, [], backend='detectron')


# --------------------------------------------------------------------------- VOC / Kaggle
@pytest.mark.parametrize(
    'recall, precision, expected',
    [
        ([1.0], [1.0], 1.0),  # one TP
        ([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], 0.5 + 0.5 * 2 / 3),  # TP FP TP
        ([0.0, 0.5], [0.0, 0.5], 0.25),  # FP TP, half the gt found
        ([], [], 0.0),  # no detections
    ],
)
def test_voc_ap_hand_computed(recall, precision, expected):
    assert ap.voc_ap(np.array(recall), np.array(precision)) == pytest.approx(expected)


def _one(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


@pytest.mark.parametrize(
    'det_box, strict, expected',
    [
        ([0, 0, 4, 10], True, 0.0),  # IoU exactly 0.4: Kaggle needs IoU > 0.4 -> FP
        ([0, 0, 4, 10], False, 1.0),  # COCO/VOC-matlab rule IoU >= 0.4 -> TP
        ([0, 0, 4.1, 10], True, 1.0),  # IoU 0.41 -> TP either way
    ],
)
def test_voc_map_iou_boundary(det_box, strict, expected):
    res = ap.voc_map(
        [_one([0, 0, 10, 10])],
        [np.array([0])],
        [_one(det_box)],
        [np.array([0.9])],
        [np.array([0])],
        num_classes=1,
        strict=strict,
    )
    assert res.mAP == expected


def test_voc_map_matches_best_gt_even_if_taken():
    # VOC: det2's best gt (g1) is already taken -> FP, although g2 overlaps it with IoU .875.
    # COCO would match det2 to the free g2 (AP 1).
    gt = [_one([0, 0, 10, 10], [0, 0, 10, 12])]
    det = [_one([0, 0, 10, 10], [0, 0, 10, 10.5])]
    res = ap.voc_map(
        gt, [np.array([0, 0])], det, [np.array([0.9, 0.8])], [np.array([0, 0])], num_classes=1
    )
    assert res.mAP == pytest.approx(0.5)  # rec [.5, .5], prec [1, .5]
    coco_gt = dict(
        images=[dict(id=1, width=20, height=20)],
        categories=[dict(id=1, name='a')],
        annotations=[
            dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 10, 10]),
            dict(id=2, image_id=1, category_id=1, bbox=[0, 0, 10, 12]),
        ],
    )
    coco_dt = ap.detections_to_coco([1], det, [np.array([0.9, 0.8])], [np.array([0, 0])], [1])
    p = ap.evaluate_coco(
        ap.prepare_coco_gt(coco_gt), coco_dt, iou_thrs=[0.4], backend='pycocotools'
    )
    assert ap.summarize_precision(p, [0.4])[0]['mAP_40'] == 1.0


# A hand-computed Kaggle case: classes 0, 1 and 'No finding' = 2.
#   image A: gt 0@[0,0,10,10];  dets 0@.9 same box (TP), 0@.8 far (FP), 1@.3 (FP, no gt 1)
#   image B: gt 0@[0,0,10,10], 1@[50,50,70,70];  dets 0@.7 [1,1,11,11] (IoU .68, TP), 1@.6 (TP)
#   image C: no gt -> gt 'No finding';  dets 0@.5 (FP)
# class 0: .9 TP, .8 FP, .7 TP, .5 FP -> rec .5 .5 1 1, prec 1 .5 .667 .5 -> AP .8333
# class 1: .6 TP, .3 FP -> AP 1
KAGGLE_GT_B = [_one([0, 0, 10, 10]), _one([0, 0, 10, 10], [50, 50, 70, 70]), _one()]
KAGGLE_GT_L = [np.array([0]), np.array([0, 1]), np.zeros(0, np.int64)]
KAGGLE_DT_B = [
    _one([0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]),
    _one([1, 1, 11, 11], [50, 50, 70, 70]),
    _one([0, 0, 10, 10]),
]
KAGGLE_DT_S = [np.array([0.9, 0.8, 0.3]), np.array([0.7, 0.6]), np.array([0.5])]
KAGGLE_DT_L = [np.array([0, 0, 1]), np.array([0, 1]), np.array([0])]


@pytest.mark.parametrize(
    'mode, nf_ap',
    [
        # 1 - max score: A .1, B .3, C .5 -> C (the only normal image) ranks first: AP 1
        ('one_minus_max', 1.0),
        # constant 1: a three-way tie kept in image order A, B, C -> FP FP TP: AP 1/3
        ('constant', 1 / 3),
        # no 'No finding' line at all: the class has gt but no detection: AP 0
        ('none', 0.0),
    ],
)
def test_kaggle_hand_computed(mode, nf_ap):
    scores = [ap.no_finding_score(s, mode) for s in KAGGLE_DT_S]
    gb, gl, db, ds, dl = ap.add_no_finding(
        KAGGLE_GT_B,
        KAGGLE_GT_L,
        KAGGLE_DT_B,
        KAGGLE_DT_S,
        KAGGLE_DT_L,
        no_finding_label=2,
        scores=scores,
    )
    assert gl[2].tolist() == [2] and gb[2].tolist() == [list(ap.NO_FINDING_BOX)]
    res = ap.voc_map(gb, gl, db, ds, dl, num_classes=3)
    np.testing.assert_allclose(res.ap, [0.5 + 0.5 * 2 / 3, 1.0, nf_ap])
    assert res.mAP == pytest.approx((0.5 + 0.5 * 2 / 3 + 1.0 + nf_ap) / 3)
    assert res.num_gt.tolist() == [2, 1, 1]


def test_voc_map_class_without_gt_is_nan_and_excluded():
    res = ap.voc_map(
        [_one([0, 0, 10, 10])],
        [np.array([0])],
        [_one([0, 0, 10, 10], [0, 0, 5, 5])],
        [np.array([0.9, 0.8])],
        [np.array([0, 1])],
        num_classes=2,
    )
    assert res.ap[0] == 1.0 and np.isnan(res.ap[1]) and res.mAP == 1.0
    assert res.num_dets.tolist() == [1, 1]


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(gt_labels=[np.array([3])]), 'outside'),  # label >= num_classes
        (dict(det_scores=[np.array([0.5, 0.2])]), 'scores'),  # length mismatch
        (dict(det_boxes=[]), 'one entry per image'),  # image count mismatch
    ],
)
def test_voc_map_errors(kwargs, match):
    args = dict(
        gt_boxes=[_one([0, 0, 1, 1])],
        gt_labels=[np.array([0])],
        det_boxes=[_one([0, 0, 1, 1])],
        det_scores=[np.array([0.5])],
        det_labels=[np.array([0])],
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ap.voc_map(**args, num_classes=2)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_voc_map_properties(seed):
    rng = np.random.default_rng(seed)
    gb, gl = [], []
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 50, (n, 2))
        gb.append(np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], axis=1))
        gl.append(rng.integers(0, 3, n))
    # Perfect predictions score 1 on every class with gt.
    perfect = ap.voc_map(gb, gl, gb, [np.ones(len(b)) for b in gb], gl, num_classes=3)
    assert np.all(perfect.ap[perfect.num_gt > 0] == 1.0)
    # Noisy predictions stay in [0, 1]; an extra low-scored FP never raises AP.
    noisy = [b + rng.normal(0, 3, b.shape) for b in gb]
    s = [rng.uniform(0.2, 1, len(b)) for b in gb]
    base = ap.voc_map(gb, gl, noisy, s, gl, num_classes=3)
    extra = ap.voc_map(
        gb,
        gl,
        [np.vstack([b, [[200, 200, 210, 210]]]) for b in noisy],
        [np.append(x, 0.1) for x in s],
        [np.append(x, 0) for x in gl],
        num_classes=3,
    )
    valid = base.num_gt > 0
    assert np.all((base.ap[valid] >= 0) & (base.ap[valid] <= 1))
    assert extra.ap[0] <= base.ap[0] + 1e-12 or np.isnan(base.ap[0])


@pytest.mark.parametrize(
    'scores, mode, expected',
    [
        ([0.2, 0.7], 'one_minus_max', 1 - 0.7),  # the detector's own belief
        ([], 'one_minus_max', 1.0),  # no box at all: surely normal
        ([0.2], 'constant', 1.0),  # Kaggle's `14 1 0 0 1 1` on every image
        ([0.2], 'none', None),
    ],
)
def test_no_finding_score(scores, mode, expected):
    assert ap.no_finding_score(np.array(scores), mode) == (
        expected if expected is None else pytest.approx(expected)
    )


def test_no_finding_score_rejects_mode():
    with pytest.raises(ValueError, match='one_minus_max'):
        ap.no_finding_score(np.zeros(1), 'max')


# --------------------------------------------------------------------------- PredictionString
def test_prediction_string_round_trip():
    boxes = np.array([[10.25, 20.5, 30.0, 40.75], [0, 0, 1, 1]])
    scores = np.array([0.87654, 1.0])
    labels = np.array([3, 14])
    text = ap.format_prediction_string(boxes, scores, labels, score_decimals=3, box_decimals=2)
    assert text == '3 0.877 10.25 20.50 30.00 40.75 14 1.000 0.00 0.00 1.00 1.00'
    b, s, lab = ap.parse_prediction_string(text)
    np.testing.assert_allclose(b, boxes)
    np.testing.assert_allclose(s, [0.877, 1.0])
    assert lab.tolist() == [3, 14] and lab.dtype == np.int64


@pytest.mark.parametrize(
    'text, match',
    [
        ('14 1 0 0 1', 'groups of 6'),  # one value short
        ('14 1 0 0 one 1', 'non-number'),
        ('1.5 1 0 0 1 1', 'integers'),  # a fractional class id
    ],
)
def test_parse_prediction_string_errors(text, match):
    with pytest.raises(ValueError, match=match):
        ap.parse_prediction_string(text)


@pytest.mark.parametrize('text', ['', 'nan', None])
def test_parse_prediction_string_empty(text):
    b, s, lab = ap.parse_prediction_string(text)
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)
