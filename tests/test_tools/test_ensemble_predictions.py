"""tools/ensemble_predictions.py: WBF of prediction files, then the metric on the result."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
ensemble_boxes = pytest.importorskip('ensemble_boxes')

from earl_mmdet.evaluation import predictions as tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def make_gold(rng) -> dict:
    images = [dict(id=i + 1, width=200, height=100, file_name=f'{i}.png') for i in range(6)]
    anns = []
    for im in images[:5]:  # the last image has no gt
        for _ in range(2):
            x, y = rng.uniform(0, 120), rng.uniform(0, 50)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=im['id'],
                    category_id=int(rng.integers(1, 3)),
                    bbox=[x, y, 40.0, 30.0],
                    area=1200.0,
                    iscrowd=0,
                )
            )
    return dict(
        images=images, annotations=anns, categories=[dict(id=1, name='a'), dict(id=2, name='b')]
    )


def noisy_model(gold, rng, sigma):
    """{img_id: (boxes xyxy, scores, labels)}: jittered gt plus one false positive."""
    out = {}
    for im in gold['images']:
        anns = [a for a in gold['annotations'] if a['image_id'] == im['id']]
        boxes = [[a['bbox'][0], a['bbox'][1], a['bbox'][0] + 40, a['bbox'][1] + 30] for a in anns]
        boxes = np.array(boxes + [[150, 60, 190, 95]], dtype=np.float64)
        boxes[:-1] += rng.normal(0, sigma, (len(anns), 4))
        out[im['id']] = (
            boxes,
            rng.uniform(0.3, 1.0, len(boxes)),
            np.array([a['category_id'] - 1 for a in anns] + [0]),
        )
    return out


def save_pkl(path, preds):
    """The layout of mmdet's DumpDetResults (tools/test.py --out)."""
    samples = [
        dict(
            img_id=i,
            ori_shape=(100, 200),
            pred_instances=dict(
                bboxes=torch.tensor(b, dtype=torch.float32),
                scores=torch.tensor(s, dtype=torch.float32),
                labels=torch.tensor(lab),
            ),
        )
        for i, (b, s, lab) in preds.items()
    ]
    with open(path, 'wb') as f:
        pickle.dump(samples, f)


def save_json(path, preds):
    dets = [
        dict(
            image_id=i,
            category_id=int(c) + 1,
            bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
            score=float(s),
        )
        for i, (bb, ss, ll) in preds.items()
        for b, s, c in zip(bb.tolist(), ss, ll)
    ]
    Path(path).write_text(json.dumps(dets))


def test_fuse_matches_ensemble_boxes_and_report(tmp_path):
    rng = np.random.default_rng(0)
    gold = make_gold(rng)
    (tmp_path / 'gold.json').write_text(json.dumps(gold))
    m1, m2 = noisy_model(gold, rng, 2.0), noisy_model(gold, rng, 3.0)
    save_pkl(tmp_path / 'm1.pkl', m1)
    save_json(tmp_path / 'm2.json', m2)
    out = tmp_path / 'out'
    proc = subprocess.run(
        [
            sys.executable,
            'tools/ensemble_predictions.py',
            str(tmp_path / 'm1.pkl'),
            str(tmp_path / 'm2.json'),
            '--gt',
            str(tmp_path / 'gold.json'),
            '--out-dir',
            str(out),
            '--iou-thr',
            '0.5',
            '--weights',
            '2',
            '1',
            '--kaggle',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    fused = json.loads((out / 'fused.bbox.json').read_text())
    # Oracle: ensemble-boxes on the same normalised inputs (float32 boxes as the pkl holds).
    models = [
        tool.load_predictions(str(tmp_path / 'm1.pkl'), gold),
        tool.load_predictions(str(tmp_path / 'm2.json'), gold),
    ]
    for im in gold['images']:
        scale = np.array([200.0, 100.0, 200.0, 100.0])
        b, s, lab = ensemble_boxes.weighted_boxes_fusion(
            [np.clip(m[im['id']][0] / scale, 0, 1) for m in models],
            [m[im['id']][1] for m in models],
            [m[im['id']][2] for m in models],
            weights=[2, 1],
            iou_thr=0.5,
        )
        mine = [d for d in fused if d['image_id'] == im['id']]
        assert len(mine) == len(b)
        got = np.array(
            [
                [
                    d['bbox'][0],
                    d['bbox'][1],
                    d['bbox'][0] + d['bbox'][2],
                    d['bbox'][1] + d['bbox'][3],
                ]
                for d in mine
            ]
        )
        np.testing.assert_allclose(got, b * scale, atol=1e-4)
        np.testing.assert_allclose([d['score'] for d in mine], s, atol=1e-6)
        assert [d['category_id'] - 1 for d in mine] == lab.astype(int).tolist()

    report = json.loads((out / 'report.json').read_text())
    rows = report['tables']['inputs']['rows']
    assert [r[0] for r in rows] == ['WBF ensemble', 'm1.pkl', 'm2.json']
    assert report['metrics']['coco/mAP_40'] == rows[0][1]
    assert 'coco/kaggle_mAP_40' in report['metrics']
    # The fused file, evaluated on its own, gives the reported numbers.
    again, _ = tool.evaluate(
        tool.load_predictions(str(out / 'fused.bbox.json'), gold), str(tmp_path / 'gold.json'), gold
    )
    assert again['mAP_40'] == pytest.approx(report['metrics']['coco/mAP_40'], abs=1e-12)
    text = (out / 'report.md').read_text()
    assert '## inputs' in text and 'Kaggle' in text


def test_two_identical_models_fuse_to_themselves(tmp_path):
    rng = np.random.default_rng(1)
    gold = make_gold(rng)
    (tmp_path / 'gold.json').write_text(json.dumps(gold))
    m = noisy_model(gold, rng, 0.0)
    save_json(tmp_path / 'm.json', m)
    fused = tool.fuse_predictions([m, m], gold, iou_thr=0.55)
    single, _ = tool.evaluate(m, str(tmp_path / 'gold.json'), gold)
    both, _ = tool.evaluate(fused, str(tmp_path / 'gold.json'), gold)
    assert both == pytest.approx(single, abs=1e-9)


@pytest.mark.parametrize(
    'content, name, match',
    [
        ([dict(image_id=1, category_id=9, bbox=[0, 0, 1, 1], score=1)], 'p.json', 'category_id 9'),
        ({'image_id': 1}, 'p.json', 'must hold a list'),
        ([], 'p.txt', 'unknown prediction format'),
    ],
)
def test_load_predictions_errors(tmp_path, content, name, match):
    gold = make_gold(np.random.default_rng(0))
    (tmp_path / name).write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        tool.load_predictions(str(tmp_path / name), gold)


class _Planted:
    """Unpickling this writes a marker file: stands for code run from a planted pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), 'pwned'))


def test_prediction_pickle_runs_no_code(tmp_path):
    gold = make_gold(np.random.default_rng(0))
    marker = tmp_path / 'marker.txt'
    sample = dict(img_id=1, pred_instances=dict(labels=torch.zeros(0)), meta=_Planted(marker))
    with open(tmp_path / 'evil.pkl', 'wb') as f:
        pickle.dump([sample], f)
    with pytest.raises(pickle.UnpicklingError, match='evil.pkl: refusing to unpickle'):
        tool.load_predictions(str(tmp_path / 'evil.pkl'), gold)
    assert not marker.exists()


def test_prediction_pickle_of_mmdet_loads(tmp_path):
    """What DumpDetResults writes (mmengine's pickle dump, protocol 2): tensors, numpy
    arrays, tuples and strings of the data sample's metainfo."""
    import mmengine

    gold = make_gold(np.random.default_rng(0))
    sample = dict(
        img_id=2,
        img_path='x.png',
        ori_shape=(100, 200),
        homography_matrix=np.eye(3, dtype=np.float32),
        pred_instances=dict(
            bboxes=torch.tensor([[1.0, 2.0, 30.0, 40.0]]),
            scores=torch.tensor([0.5]),
            labels=torch.tensor([1]),
        ),
    )
    mmengine.dump([sample], str(tmp_path / 'p.pkl'))
    boxes, scores, labels = tool.load_predictions(str(tmp_path / 'p.pkl'), gold)[2]
    np.testing.assert_allclose(boxes, [[1.0, 2.0, 30.0, 40.0]])
    assert scores.tolist() == [0.5] and labels.tolist() == [1]


class _HugeArray:
    """Unpickles as numpy's ``_reconstruct(ndarray, (2**40,), b'b')``: a 1 TiB request."""

    def __reduce__(self):
        return (np.zeros(1).__reduce__()[0], (np.ndarray, (2**40,), b'b'))


def _hostile_pickle(path: Path) -> None:
    sample = dict(img_id=1, pred_instances=dict(bboxes=_HugeArray(), scores=[], labels=[]))
    with open(path, 'wb') as f:
        pickle.dump([sample], f, protocol=2)


# Hostile inputs through the tool: (id, which file is bad and how, stderr fragment). Each
# was a traceback before (MemoryError, RecursionError); now one line and exit status 2.
TOOL_HOSTILE = [
    # a prediction pickle declaring a 2^40-element array
    pytest.param('preds', 'declares a numpy array of shape (1099511627776,)', id='pickle-2**40'),
    # a gold file nested 200,000 deep
    pytest.param('gold', 'JSON nested too deeply to read', id='gold-nested-200000'),
]


@pytest.mark.parametrize('bad, msg', TOOL_HOSTILE)
def test_tool_hostile_input_is_one_line(tmp_path, bad, msg):
    gold, preds = tmp_path / 'gold.json', tmp_path / 'm.pkl'
    gold.write_text(json.dumps(make_gold(np.random.default_rng(0))))
    save_pkl(preds, noisy_model(make_gold(np.random.default_rng(0)), np.random.default_rng(1), 1))
    if bad == 'preds':
        _hostile_pickle(preds)
    else:
        gold.write_text('{"images": ' + '[' * 200_000 + ']' * 200_000 + '}')
    proc = subprocess.run(
        [sys.executable, 'tools/ensemble_predictions.py', str(preds), '--gt', str(gold)]
        + ['--out-dir', str(tmp_path / 'out')],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    bad_path = preds if bad == 'preds' else gold
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(f'error: {bad_path}: ') and msg in proc.stderr
    assert proc.stderr.count('\n') == 1, proc.stderr
