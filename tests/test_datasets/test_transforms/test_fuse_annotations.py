"""Tests of FuseAnnotations (registered in mmdet TRANSFORMS)."""

from __future__ import annotations

import numpy as np
import pytest
from mmdet.registry import DATASETS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

import earl_mmdet  # noqa: F401
from earl_mmdet.core.aggregators import Aggregator, build_aggregator
from earl_mmdet.core.coco_io import load_multirater_coco
from earl_mmdet.core.types import FusionResult
from earl_mmdet.datasets.transforms import fuse_annotations as fa_module
from earl_mmdet.datasets.transforms.fuse_annotations import FuseAnnotations

from ..utils import multirater_coco, write_set


class CountingNA(Aggregator):
    """Keeps every box, confidence = 10 * index + 1; counts its calls."""

    name = 'counting'

    def __init__(self):
        super().__init__('count')
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        n = len(image.labels)
        return FusionResult(
            boxes=np.asarray(image.boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(image.labels, np.int64),
            confidences=np.arange(n, dtype=np.float32) * 10 + 1,
            agreement=np.ones(n, np.int64),
            num_raters=len(image.raters),
        )


def _dataset(root, pipeline, ann_file='ann.json', img_prefix='', **kw):
    return DATASETS.build(
        dict(
            type='MultiAnnotatorCocoDataset',
            data_root=str(root),
            ann_file=ann_file,
            data_prefix=dict(img=img_prefix),
            pipeline=pipeline,
            **kw,
        )
    )


def test_registered():
    assert TRANSFORMS.get('FuseAnnotations') is FuseAnnotations


def test_fused_once_per_image_across_epochs(tmp_path):
    write_set(str(tmp_path))
    agg = CountingNA()
    ds = _dataset(
        tmp_path,
        [dict(type='LoadImageFromFile'), FuseAnnotations(method=agg, score_mode=None)],
    )
    for _epoch in range(2):
        outs = [ds[i] for i in range(len(ds))]
    assert agg.calls == len(ds) == 4
    np.testing.assert_array_equal(outs[0]['gt_confidences'], [1, 11, 21, 31])
    # Cached arrays are copies: an in-place change downstream does not leak into the cache.
    outs[0]['gt_bboxes'].translate_([5, 5])
    outs[0]['gt_confidences'][:] = 0
    again = ds[0]
    np.testing.assert_array_equal(again['gt_confidences'], [1, 11, 21, 31])
    assert again['gt_bboxes'].tensor[0, 0].item() == 10


def test_cache_off_calls_every_time(tmp_path):
    write_set(str(tmp_path))
    agg = CountingNA()
    ds = _dataset(tmp_path, [FuseAnnotations(method=agg, score_mode=None, cache=False)])
    for _ in range(2):
        for i in range(len(ds)):
            ds[i]
    assert agg.calls == 8


@pytest.mark.parametrize('load_first', [False, True])
def test_wbf_matches_core_aggregator(tmp_path, load_first):
    """Output equals the core aggregator run on the loader's images (the oracle)."""
    path = write_set(str(tmp_path))
    pipeline = [dict(type='LoadImageFromFile')]
    if load_first:
        pipeline.append(dict(type='LoadAnnotations', with_bbox=True))
    pipeline.append(dict(type='FuseAnnotations', method='wbf', score_mode='count', iou_thr=0.4))
    ds = _dataset(tmp_path, pipeline)
    oracle = build_aggregator('wbf', score_mode='count', iou_thr=0.4)
    coco = load_multirater_coco(path)
    for i, image in enumerate(coco.images):
        out = ds[i]
        ref = oracle(image)
        assert isinstance(out['gt_bboxes'], HorizontalBoxes)
        np.testing.assert_allclose(out['gt_bboxes'].numpy(), ref.boxes, rtol=1e-6)
        assert out['gt_bboxes_labels'].dtype == np.int64
        np.testing.assert_array_equal(out['gt_bboxes_labels'], ref.labels)
        assert out['gt_confidences'].dtype == np.float32
        np.testing.assert_array_equal(out['gt_confidences'], ref.confidences)
        np.testing.assert_array_equal(out['gt_agreement'], ref.agreement)
        assert out['gt_ignore_flags'].dtype == bool and not out['gt_ignore_flags'].any()
        assert out['num_raters'] == len(image.raters)
        assert len(out['rater_instances']) == len(image.labels)
    # image 1: three raters on one 'a' object (T=3) and one rater on a 'b' object (T=1)
    out = ds[0]
    assert sorted(out['gt_confidences'].tolist()) == [1.0, 3.0]


def test_load_annotations_after_fuse_loads_fused_boxes(tmp_path):
    write_set(str(tmp_path))
    ds = _dataset(
        tmp_path,
        [
            dict(type='LoadImageFromFile'),
            dict(type='FuseAnnotations', method='wbf'),
            dict(type='LoadAnnotations', with_bbox=True),
        ],
    )
    out = ds[0]
    assert len(out['gt_bboxes']) == len(out['gt_confidences']) == 2
    assert [i['confidence'] for i in out['instances']] == out['gt_confidences'].tolist()


def test_fraction_and_negative_image(tmp_path):
    write_set(str(tmp_path))
    ds = _dataset(
        tmp_path, [dict(type='FuseAnnotations', method='mv', score_mode='fraction', quorum=1)]
    )
    neg = ds[1]
    assert len(neg['gt_bboxes']) == 0 and neg['gt_confidences'].shape == (0,)
    assert neg['gt_confidences'].dtype == np.float32 and neg['num_raters'] == 3
    out = ds[2]  # two readers, both drew the object -> T/R = 1
    np.testing.assert_allclose(out['gt_confidences'], [1.0])


def test_error_after_geometric_transform(tmp_path):
    write_set(str(tmp_path))
    ds = _dataset(
        tmp_path,
        [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(32, 32)),
            dict(type='FuseAnnotations', method='wbf'),
        ],
    )
    with pytest.raises(ValueError, match='before geometric transforms'):
        ds[0]


def test_missing_rater_fields_clear_error():
    t = FuseAnnotations(method='wbf')
    with pytest.raises(ValueError, match="no 'annotators'"):
        t({'img_id': 7, 'instances': [{'bbox': [0, 0, 1, 1], 'bbox_label': 0, 'ignore_flag': 0}]})
    with pytest.raises(ValueError, match="instance 0 has no 'annotator_id'"):
        t(
            {
                'img_id': 7,
                'annotators': ['a'],
                'instances': [{'bbox': [0, 0, 1, 1], 'bbox_label': 0, 'ignore_flag': 0}],
            }
        )


def test_precomputed(tmp_path):
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.25 * (k + 1)
    write_set(str(tmp_path), data)
    ds = _dataset(tmp_path, [dict(type='FuseAnnotations', method='precomputed')])
    out = ds[0]
    np.testing.assert_array_equal(out['gt_confidences'], np.float32([0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_array_equal(out['gt_agreement'], [-1, -1, -1, -1])
    np.testing.assert_allclose(out['gt_bboxes'].numpy()[1], [11, 10, 31, 31])
    # A raw multi-rater file has no score: clear error.
    write_set(str(tmp_path), multirater_coco(), images=False)
    ds = _dataset(tmp_path, [dict(type='FuseAnnotations', method='precomputed')])
    with pytest.raises(ValueError, match="instance 0 has no 'score'"):
        ds[0]


def test_em_needs_fit_file_and_fits_once(tmp_path, monkeypatch):
    path = write_set(str(tmp_path))
    with pytest.raises(ValueError, match='fit_ann_file'):
        FuseAnnotations(method='em')
    fa_module._FITTED.clear()
    calls = []
    orig = fa_module.load_multirater_coco

    def counting_load(*a, **k):
        calls.append(a)
        return orig(*a, **k)

    monkeypatch.setattr(fa_module, 'load_multirater_coco', counting_load)
    t1 = FuseAnnotations(method='em', score_mode='count', fit_ann_file=path)
    t2 = FuseAnnotations(method='em', score_mode='count', fit_ann_file=path)
    assert len(calls) == 1  # fitted once per process, shared
    assert t1.aggregator is t2.aggregator and t1.aggregator.model.fitted
    ds = _dataset(tmp_path, [t1])
    out = ds[0]
    assert len(out['gt_bboxes']) == len(out['gt_confidences']) == len(out['gt_agreement'])


def test_fit_file_with_colliding_rater_ids(tmp_path):
    """The fit file follows the dataset's normalize_rater_ids: error by default, else merged."""
    data = multirater_coco()
    data['images'][2]['annotators'] = ['R1 ', 'r2']  # r1 spelled differently on image 3
    path = write_set(str(tmp_path), data, images=False)
    fa_module._FITTED.clear()
    with pytest.raises(ValueError, match=r"'r1' \(image id=1.* vs 'R1 ' \(image id=3"):
        FuseAnnotations(method='em', fit_ann_file=path)
    t = FuseAnnotations(method='em', fit_ann_file=path, fit_normalize_rater_ids=True)
    assert sorted(t.aggregator.model.raters_) == ['r1', 'r2', 'r3']  # no extra 'R1 '
    ds = _dataset(tmp_path, [], normalize_rater_ids=True)
    assert ds[2]['annotators'] == ['r1', 'r2'] and ds.repairs == {'rater_id_normalized': 1}


def test_unknown_method():
    with pytest.raises(ValueError, match='unknown aggregator'):
        FuseAnnotations(method='nope')


# ------------------------------------------------------- fast path = the plain pipeline
def _reference(ds, i, steps):
    """Run ``steps`` (fresh transform objects, fusion uncached) on data info ``i``."""
    results = ds.get_data_info(i)
    for t in steps:
        results = t(results)
    return results


def _assert_same_boxes(out, ref):
    """Box by box: coordinates, label, confidence and agreement stay together."""
    assert type(out['gt_bboxes']) is type(ref['gt_bboxes'])
    boxes = lambda r: np.asarray(getattr(r['gt_bboxes'], 'tensor', r['gt_bboxes']))  # noqa: E731
    assert boxes(out).dtype == boxes(ref).dtype == np.float32
    for key in ('gt_bboxes_labels', 'gt_confidences', 'gt_agreement', 'gt_ignore_flags'):
        assert out[key].dtype == ref[key].dtype, key
    rows = lambda r: [  # noqa: E731
        (tuple(b), int(lab), float(c), int(t), bool(f))
        for b, lab, c, t, f in zip(
            boxes(r).tolist(),
            r['gt_bboxes_labels'],
            r['gt_confidences'],
            r['gt_agreement'],
            r['gt_ignore_flags'],
        )
    ]
    assert rows(out) == rows(ref)
    assert out['instances'] == ref['instances'] and out['num_raters'] == ref['num_raters']
    assert out['rater_instances'] == ref['rater_instances']


def _load(**kw):
    return TRANSFORMS.build(dict(type='LoadAnnotations', with_bbox=True, **kw))


@pytest.mark.parametrize('method', ['wbf', 'mv', 'na'])
def test_skipped_load_and_cache_hits_equal_the_plain_pipeline(tmp_path, method):
    """The dataset drops LoadAnnotations before FuseAnnotations; outputs stay the same."""
    from tests.tiny_data import make_tiny_coco

    data = make_tiny_coco(tmp_path, num_images=8, size=64)
    fuse_cfg = dict(type='FuseAnnotations', method=method)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), fuse_cfg]
    ds = _dataset(tmp_path, pipeline, ann_file='multi.json', img_prefix='images/')
    assert [type(t).__name__ for t in ds.pipeline.transforms] == [
        'LoadImageFromFile',
        'FuseAnnotations',
    ]
    # The oracle: the core aggregator on the file's images, box by box.
    oracle = build_aggregator(method, score_mode='count')
    expected = [oracle(image) for image in load_multirater_coco(data['multi']).images]
    assert len(expected) == len(ds) and sum(len(e) for e in expected) > len(ds)
    plain = [
        TRANSFORMS.build(dict(type='LoadImageFromFile')),
        _load(),
        TRANSFORMS.build(dict(fuse_cfg, cache=False)),
    ]
    fuse = ds.pipeline.transforms[1]
    for epoch in range(3):  # epoch 0 fuses, later epochs are cache hits
        for i in range(len(ds)):
            out = ds[i]
            _assert_same_boxes(out, _reference(ds, i, plain))
            exp = expected[i]
            assert list(
                zip(
                    out['gt_bboxes'].tensor.tolist(),
                    out['gt_bboxes_labels'].tolist(),
                    out['gt_confidences'].tolist(),
                    out['gt_agreement'].tolist(),
                )
            ) == list(
                zip(
                    np.float32(exp.boxes).tolist(),
                    exp.labels.tolist(),
                    np.float32(exp.confidences).tolist(),
                    exp.agreement.tolist(),
                )
            ), (epoch, i)
            assert isinstance(out['gt_bboxes'], HorizontalBoxes)
            np.testing.assert_array_equal(out['img'], _reference(ds, i, plain[:1])['img'])
        assert fuse.num_fused == len(ds), epoch
    # Through Resize, a flip and packing, the packed fields stay aligned too.
    tail = [
        dict(type='Resize', scale=(96, 96), keep_ratio=True),
        dict(type='RandomFlip', prob=1.0),
        dict(type='PackMultiRaterInputs', pack_agreement=True),
    ]
    for i in range(len(ds)):
        a = _reference(ds, i, [plain[0], fuse, *map(TRANSFORMS.build, tail)])
        b = _reference(ds, i, [*plain, *map(TRANSFORMS.build, tail)])
        ga, gb = a['data_samples'].gt_instances, b['data_samples'].gt_instances
        for field in ('bboxes', 'labels', 'confidences', 'agreement'):
            va, vb = getattr(ga, field), getattr(gb, field)
            va, vb = getattr(va, 'tensor', va), getattr(vb, 'tensor', vb)
            assert va.dtype == vb.dtype and va.tolist() == vb.tolist(), (i, field)


@pytest.mark.parametrize(
    'load,kept',
    [
        # stock LoadAnnotations (boxes and labels): everything it sets is overwritten
        (dict(), False),
        (dict(with_label=False), False),
        # numpy boxes: FuseAnnotations keeps that type, so the load matters
        (dict(box_type=None), True),
        # masks / semantic maps: the fusion does not replace them
        (dict(with_mask=True), True),
        (dict(with_seg=True), True),
    ],
)
def test_supersedes_only_plain_box_loads(tmp_path, load, kept):
    write_set(str(tmp_path))
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', **load)]
    pipeline.append(dict(type='FuseAnnotations', method='wbf'))
    ds = _dataset(tmp_path, pipeline)
    names = [type(t).__name__ for t in ds.pipeline.transforms]
    assert ('LoadAnnotations' in names) is kept
    if load.get('box_type', 'hbox') is None:
        assert isinstance(ds[0]['gt_bboxes'], np.ndarray)  # as with the load run


def test_load_not_right_before_fusion_is_kept(tmp_path):
    write_set(str(tmp_path))

    class MyLoad(type(_load())):
        """A subclass may load more: never skipped."""

    fuse = dict(type='FuseAnnotations', method='wbf')
    for pipeline in (
        [dict(type='LoadAnnotations'), dict(type='LoadImageFromFile'), fuse],
        [dict(type='LoadImageFromFile'), MyLoad(), fuse],
        [dict(type='LoadImageFromFile'), fuse, dict(type='LoadAnnotations')],
    ):
        ds = _dataset(tmp_path, pipeline)
        assert len(ds.pipeline.transforms) == 3
        assert len(ds[0]['gt_bboxes']) == len(ds[0]['gt_confidences'])


def test_cached_entry_is_not_shared_with_results(tmp_path):
    """In-place edits downstream (boxes, labels, instance list) never reach the cache."""
    write_set(str(tmp_path))
    ds = _dataset(tmp_path, [dict(type='FuseAnnotations', method='wbf')])
    first = ds[0]
    ref = {k: np.array(first[k]) for k in ('gt_bboxes_labels', 'gt_agreement')}
    ref_boxes = first['gt_bboxes'].tensor.clone()
    first['gt_bboxes'].tensor.add_(100)
    first['gt_bboxes_labels'][:] = 9
    first['gt_agreement'][:] = 9
    first['gt_ignore_flags'][:] = True
    first['instances'].clear()
    again = ds[0]
    assert again['gt_bboxes'].tensor.equal(ref_boxes)
    for k, v in ref.items():
        np.testing.assert_array_equal(again[k], v)
    assert not again['gt_ignore_flags'].any() and len(again['instances']) == len(ref_boxes)
