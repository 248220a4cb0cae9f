"""DetectionMAPMetric driven like mmdet's own CocoMetric tests (fake data samples)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
from mmdet.evaluation import CocoMetric  # noqa: E402
from mmdet.registry import METRICS  # noqa: E402

import earl_mmdet  # noqa: E402,F401  (registers DetectionMAPMetric)
from earl_mmdet.evaluation.metrics import DetectionMAPMetric  # noqa: E402
from tests.test_core.test_ap import FAST_ATOL, random_set, reference  # noqa: E402


def dummy_gold() -> dict:
    """mmdet's test_coco_metric fixture: one 640x640 image, 4 boxes, 2 classes."""
    boxes = [[50, 60, 20, 20], [100, 120, 30, 30], [150, 160, 40, 40], [250, 260, 100, 100]]
    cats = [0, 0, 1, 0]
    return dict(
        images=[dict(id=0, width=640, height=640, file_name='fake.jpg')],
        annotations=[
            dict(id=i + 1, image_id=0, category_id=c, bbox=b, area=b[2] * b[3], iscrowd=0)
            for i, (b, c) in enumerate(zip(boxes, cats))
        ],
        categories=[dict(id=0, name='car'), dict(id=1, name='bicycle')],
    )


def dummy_pred() -> dict:
    return dict(
        bboxes=torch.tensor(
            [[50, 60, 70, 80], [100, 120, 130, 150], [150, 160, 190, 200], [250, 260, 350, 360]],
            dtype=torch.float32,
        ),
        scores=torch.tensor([1.0, 0.98, 0.96, 0.95]),
        labels=torch.tensor([0, 0, 1, 0]),
    )


def write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def run(metric, samples, classes):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


def test_registered_and_perfect_predictions(tmp_path):
    ann = write(tmp_path / 'gold.json', dummy_gold())
    metric = METRICS.build(dict(type='DetectionMAPMetric', ann_file=ann))
    assert isinstance(metric, DetectionMAPMetric)
    res = run(
        metric,
        [dict(pred_instances=dummy_pred(), img_id=0, ori_shape=(640, 640))],
        ['car', 'bicycle'],
    )
    assert list(res)[0] == 'coco/mAP_40'  # save_best='auto' tracks the paper's metric
    assert res == {
        k: 1.0
        for k in [
            'coco/mAP_40',
            'coco/mAP',
            'coco/mAP_50',
            'coco/mAP_75',
            'coco/mAP_s',
            'coco/mAP_m',
            'coco/mAP_l',
        ]
    }
    table = metric.report['tables']['per_class']
    assert table['columns'] == ['class', 'num_gt', 'AP@0.4', 'AP@[.5:.95]', 'AP50', 'AP75']
    assert table['rows'] == [['car', 3, 1.0, 1.0, 1.0, 1.0], ['bicycle', 1, 1.0, 1.0, 1.0, 1.0]]
    assert metric.report['metrics'] == res


@pytest.mark.parametrize(
    'iou_thrs, classwise, error',
    [
        # per-class table at 0.4: indexes IoU positions 0 and 5 (mmdet issue #11345)
        (np.array([0.4]), True, IndexError),
        # a list, as configs write it: with numpy 2, COCOeval.summarize() runs np.where on
        # `0.5 == [0.4]` (a 0-d bool) and raises, even without classwise
        ([0.4], False, ValueError),
    ],
)
def test_mmdet_cocometric_crashes_where_we_do_not(tmp_path, iou_thrs, classwise, error):
    # The traps this metric exists for (docs/metric.md).
    ann = write(tmp_path / 'gold.json', dummy_gold())
    samples = [dict(pred_instances=dummy_pred(), img_id=0, ori_shape=(640, 640))]
    with pytest.raises(error):
        run(
            CocoMetric(ann_file=ann, iou_thrs=iou_thrs, classwise=classwise),
            samples,
            ['car', 'bicycle'],
        )
    metric = DetectionMAPMetric(ann_file=ann)
    assert run(metric, samples, ['car', 'bicycle'])['coco/mAP_40'] == 1.0
    assert metric.last_tables['per_class']['rows'][0][2] == 1.0  # AP@0.4 of 'car'


def _samples(gt: dict, dets: list[dict], with_instances: bool = False) -> list[dict]:
    """mmdet data samples (label = index of the category in file order)."""
    label_of = {c['id']: i for i, c in enumerate(gt['categories'])}
    out = []
    for im in gt['images']:
        mine = [d for d in dets if d['image_id'] == im['id']]
        b = np.array([d['bbox'] for d in mine], dtype=np.float64).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        sample = dict(
            img_id=im['id'],
            ori_shape=(im['height'], im['width']),
            pred_instances=dict(
                bboxes=torch.from_numpy(b),  # float64 on purpose: process() casts like mmdet
                scores=torch.tensor([d['score'] for d in mine], dtype=torch.float64),
                labels=torch.tensor([label_of[d['category_id']] for d in mine], dtype=torch.int64),
            ),
        )
        if with_instances:
            sample['instances'] = [
                dict(
                    bbox=[
                        a['bbox'][0],
                        a['bbox'][1],
                        a['bbox'][0] + a['bbox'][2],
                        a['bbox'][1] + a['bbox'][3],
                    ],
                    bbox_label=label_of[a['category_id']],
                    ignore_flag=0,
                )
                for a in gt['annotations']
                if a['image_id'] == im['id']
            ]
        out.append(sample)
    return out


@pytest.mark.parametrize('backend, atol', [('pycocotools', 0.0), ('faster_coco_eval', FAST_ATOL)])
@pytest.mark.parametrize('seed', [2, 5, 8, 12, 14, 20])  # int image ids, area = w*h
def test_parity_through_process_and_evaluate(tmp_path, seed, backend, atol):
    gt, dets = random_set(seed)
    # mmdet boxes are float32: the reference sees the same float32-rounded boxes.
    for d in dets:
        x1, y1 = np.float32(d['bbox'][0]), np.float32(d['bbox'][1])
        x2 = np.float32(d['bbox'][0] + d['bbox'][2])
        y2 = np.float32(d['bbox'][1] + d['bbox'][3])
        d['bbox'] = [float(x1), float(y1), float(x2) - float(x1), float(y2) - float(y1)]
        d['score'] = float(np.float32(d['score']))
    std, at40 = reference(gt, dets), reference(gt, dets, iou_thrs=[0.4])
    classes = [c['name'] for c in gt['categories']]
    ann = write(tmp_path / 'gold.json', gt)
    res = run(DetectionMAPMetric(ann_file=ann, backend=backend), _samples(gt, dets), classes)
    expected = dict(
        zip(
            ['coco/mAP', 'coco/mAP_50', 'coco/mAP_75', 'coco/mAP_s', 'coco/mAP_m', 'coco/mAP_l'],
            std.stats[:6],
        )
    )
    expected['coco/mAP_40'] = at40.stats[0]
    assert res.keys() == expected.keys()
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=atol, rel=0), k
    # Converting the dataset's gt (no ann_file) gives the same numbers.
    res2 = run(DetectionMAPMetric(backend=backend), _samples(gt, dets, True), classes)
    for k, v in res.items():
        assert res2[k] == pytest.approx(v, abs=1e-12, rel=0), k


# The hand-computed Kaggle case of tests/test_core/test_ap.py, as a gold file + samples:
# class 0 AP .8333, class 1 AP 1, No finding AP by mode -> kaggle_mAP_40.
KAGGLE_GOLD = dict(
    images=[dict(id=i, width=100, height=100) for i in (1, 2, 3)],
    categories=[dict(id=1, name='c0'), dict(id=2, name='c1')],
    annotations=[
        dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 10, 10]),
        dict(id=2, image_id=2, category_id=1, bbox=[0, 0, 10, 10]),
        dict(id=3, image_id=2, category_id=2, bbox=[50, 50, 20, 20]),
    ],
)
KAGGLE_PREDS = {
    1: ([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8, 0.3], [0, 0, 1]),
    2: ([[1, 1, 11, 11], [50, 50, 70, 70]], [0.7, 0.6], [0, 1]),
    3: ([[0, 0, 10, 10]], [0.5], [0]),
}


def _kaggle_samples():
    return [
        dict(
            img_id=i,
            ori_shape=(100, 100),
            pred_instances=dict(
                bboxes=torch.tensor(b, dtype=torch.float32),
                scores=torch.tensor(s),
                labels=torch.tensor(lab),
            ),
        )
        for i, (b, s, lab) in KAGGLE_PREDS.items()
    ]


@pytest.mark.parametrize(
    'kwargs, nf_ap',
    [
        (dict(), 1.0),  # one_minus_max: image 3 (the normal one) gets .5, the others .1/.3
        (dict(no_finding='constant'), 1 / 3),  # a tie in image order: FP FP TP
        (dict(no_finding='none'), 0.0),  # no 'No finding' line
        # a classifier's scores: image 3 ranked last -> rec 0 0 1, prec 0 0 1/3
        (dict(no_finding_scores={'1': 0.9, '2': 0.8, '3': 0.1}), 1 / 3),
    ],
)
def test_kaggle_mode_hand_computed(tmp_path, kwargs, nf_ap):
    ann = write(tmp_path / 'gold.json', KAGGLE_GOLD)
    metric = DetectionMAPMetric(ann_file=ann, kaggle=True, **kwargs)
    res = run(metric, _kaggle_samples(), ['c0', 'c1'])
    assert res['coco/kaggle_mAP_40'] == pytest.approx((0.5 + 0.5 * 2 / 3 + 1.0 + nf_ap) / 3)
    rows = metric.report['tables']['kaggle_per_class']['rows']
    assert [r[1] for r in rows] == ['c0', 'c1', 'No finding']
    assert [r[2] for r in rows] == [2, 1, 1]  # num_gt
    assert rows[2][4] == pytest.approx(nf_ap)


def test_no_finding_scores_file_must_cover_images(tmp_path):
    ann = write(tmp_path / 'gold.json', KAGGLE_GOLD)
    scores = write(tmp_path / 'nf.json', {'1': 0.5})
    metric = DetectionMAPMetric(ann_file=ann, kaggle=True, no_finding_scores=scores)
    with pytest.raises(ValueError, match='no score for image 2'):
        run(metric, _kaggle_samples(), ['c0', 'c1'])


def test_outfile_prefix_and_format_only(tmp_path):
    ann = write(tmp_path / 'gold.json', dummy_gold())
    samples = [dict(pred_instances=dummy_pred(), img_id=0, ori_shape=(640, 640))]
    prefix = str(tmp_path / 'out' / 'test')
    (tmp_path / 'out').mkdir()
    run(DetectionMAPMetric(ann_file=ann, outfile_prefix=prefix), samples, ['car', 'bicycle'])
    report = json.loads((tmp_path / 'out' / 'test.metric.json').read_text())
    assert report['metrics']['coco/mAP_40'] == 1.0
    assert len(json.loads((tmp_path / 'out' / 'test.bbox.json').read_text())) == 4
    res = run(
        DetectionMAPMetric(ann_file=ann, outfile_prefix=prefix, format_only=True),
        samples,
        ['car', 'bicycle'],
    )
    assert res == {}


def test_empty_predictions_give_zero(tmp_path):
    ann = write(tmp_path / 'gold.json', dummy_gold())
    empty = dict(
        bboxes=torch.zeros((0, 4)), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64)
    )
    res = run(
        DetectionMAPMetric(ann_file=ann),
        [dict(pred_instances=empty, img_id=0, ori_shape=(640, 640))],
        ['car', 'bicycle'],
    )
    assert res['coco/mAP_40'] == 0.0 and res['coco/mAP'] == 0.0


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(backend='detectron2'), 'backend'),
        (dict(no_finding='max'), 'no_finding'),
        (dict(max_dets=0), 'max_dets'),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectionMAPMetric(**kwargs)


def test_unknown_class_name(tmp_path):
    ann = write(tmp_path / 'gold.json', dummy_gold())
    with pytest.raises(ValueError, match=r"\['truck'\]"):
        run(
            DetectionMAPMetric(ann_file=ann),
            [dict(pred_instances=dummy_pred(), img_id=0, ori_shape=(640, 640))],
            ['car', 'truck'],
        )
