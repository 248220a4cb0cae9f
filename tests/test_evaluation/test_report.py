"""earl_core.metrics.report: Markdown report and Kaggle submission CSV."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from earl_core.metrics.ap import parse_prediction_string
from earl_core.metrics.report import (
    markdown_table,
    write_kaggle_submission,
    write_markdown_report,
)

REPORT = dict(
    metrics={'coco/mAP_40': 0.5, 'coco/mAP': 0.25},
    tables=dict(
        per_class=dict(
            columns=['class', 'num_gt', 'AP@0.4'],
            rows=[['Nodule/Mass', 3, 0.5], ['Pneumothorax', 0, None]],
        ),
    ),
    settings=dict(backend='faster_coco_eval'),
)


def test_markdown_table_alignment_and_missing_values():
    text = markdown_table(['class', 'n', 'AP'], [['a|b', 2, float('nan')], ['c', 1, 0.25]])
    assert text.splitlines() == [
        '| class | n | AP |',
        '| --- | ---: | ---: |',
        '| a\\|b | 2 | - |',  # pipes escaped, NaN printed as '-'
        '| c | 1 | 0.2500 |',
    ]
    with pytest.raises(ValueError, match='row 0 has 1 cells'):
        markdown_table(['a', 'b'], [['x']])


def test_write_markdown_report_from_report_dict(tmp_path):
    path = tmp_path / 'sub' / 'report.md'
    text = write_markdown_report(REPORT, path, title='Run 1', notes=['checkpoint: `x.pth`'])
    assert path.read_text() == text
    assert text.startswith('# Run 1\n')
    assert '| mAP@0.4 (COCO 101-point) | coco/mAP_40 | 0.5000 |' in text
    assert '- checkpoint: `x.pth`' in text and '- backend: `faster_coco_eval`' in text
    assert '## Per-class AP (COCO 101-point)' in text
    assert '| Pneumothorax | 0 | - |' in text


def test_write_markdown_report_from_flat_scalars(tmp_path):
    # What runner.test() returns: scalars only; non-scalars are skipped.
    text = write_markdown_report({'coco/mAP': 0.125, 'name': 'x'}, tmp_path / 'r.md')
    assert '| mAP@[.5:.95] | coco/mAP | 0.1250 |' in text and 'name' not in text
    assert '## Per-class' not in text


def _read(path):
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['image_id', 'PredictionString']
    return {r[0]: parse_prediction_string(r[1]) for r in rows[1:]}


def test_kaggle_submission_scales_boxes_and_adds_no_finding(tmp_path):
    import torch

    preds = [
        # PNG 512x512 of a 2048x1536 DICOM: sx = 4, sy = 3
        dict(
            image_id='abc',
            bboxes=torch.tensor([[10.0, 20.0, 30.0, 40.0]]),
            scores=torch.tensor([0.75]),
            labels=torch.tensor([3]),
            coord_scale=(4.0, 3.0),
        ),
        dict(
            image_id='def',
            bboxes=np.zeros((0, 4)),
            scores=np.zeros(0),
            labels=np.zeros(0, np.int64),
        ),
        dict(
            image_id='ghi', bboxes=[[1, 1, 2, 2]], scores=[0.5], labels=[0], no_finding_score=0.9
        ),  # a classifier's score wins over the rule
    ]
    path = tmp_path / 'submission.csv'
    assert write_kaggle_submission(preds, path) == 3
    rows = _read(path)
    b, s, lab = rows['abc']
    np.testing.assert_allclose(b, [[40, 60, 120, 120], [0, 0, 1, 1]])
    np.testing.assert_allclose(s, [0.75, 0.25])  # No finding = 1 - max box score
    assert lab.tolist() == [3, 14]
    b, s, lab = rows['def']
    assert lab.tolist() == [14] and s.tolist() == [1.0]  # no box: '14 1 0 0 1 1'
    assert rows['ghi'][1].tolist() == [0.5, 0.9]


@pytest.mark.parametrize(
    'kwargs, expect_labels, expect_scores',
    [
        (dict(no_finding='none'), [0, 1], [0.6, 0.2]),  # no 'No finding' line
        (dict(no_finding='constant'), [0, 1, 14], [0.6, 0.2, 1.0]),
        (dict(score_thr=0.3), [0, 14], [0.6, 0.4]),  # 1 - max over the boxes kept
        (dict(label_map={0: 5, 1: 7}, no_finding='none'), [5, 7], [0.6, 0.2]),
    ],
)
def test_kaggle_submission_options(tmp_path, kwargs, expect_labels, expect_scores):
    preds = [
        dict(image_id='x', bboxes=[[0, 0, 5, 5], [1, 1, 6, 6]], scores=[0.6, 0.2], labels=[0, 1])
    ]
    write_kaggle_submission(preds, tmp_path / 's.csv', **kwargs)
    _, s, lab = _read(tmp_path / 's.csv')['x']
    assert lab.tolist() == expect_labels
    assert all(math.isclose(a, b) for a, b in zip(s.tolist(), expect_scores))


@pytest.mark.parametrize(
    'preds, match',
    [
        ([dict(bboxes=[], scores=[], labels=[])], 'no image_id and no img_path'),
        ([dict(image_id='a'), dict(image_id='a')], 'appears twice'),
        ([dict(image_id='a', bboxes=[[0, 0, 1, 1]], scores=[], labels=[0])], '1 boxes, 0 scores'),
        ([dict(image_id='a', bboxes=[[0, 0, 1, 1]], scores=[1], labels=[4])], 'label 4'),
    ],
)
def test_kaggle_submission_errors(tmp_path, preds, match):
    with pytest.raises(ValueError, match=match):
        write_kaggle_submission(preds, tmp_path / 's.csv', label_map={0: 0})


def test_kaggle_submission_from_mmdet_data_samples(tmp_path):
    # DumpDetResults layout: image id = stem of img_path; scale given from outside.
    import torch

    samples = [
        dict(
            img_id=0,
            img_path='/data/vindr/test/0a1b2c.png',
            ori_shape=(512, 512),
            pred_instances=dict(
                bboxes=torch.tensor([[10.0, 10.0, 20.0, 30.0]]),
                scores=torch.tensor([0.4]),
                labels=torch.tensor([7]),
            ),
        )
    ]
    write_kaggle_submission(samples, tmp_path / 's.csv', coord_scales={'0a1b2c': (2.0, 0.5)})
    b, s, lab = _read(tmp_path / 's.csv')['0a1b2c']
    np.testing.assert_allclose(b[0], [20, 5, 40, 15])
    assert lab.tolist() == [7, 14] and s.tolist() == pytest.approx([0.4, 0.6])
