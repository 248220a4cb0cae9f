"""The deprecated FuseAnnotations step: lifted into the dataset's fusion, an error elsewhere."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mmdet.registry import DATASETS, TRANSFORMS

import earl_mmdet  # noqa: F401
from earl_mmdet.datasets import FuseAnnotations

from ..utils import write_set

LOAD_IMG = dict(type='LoadImageFromFile')
LOAD_ANN = dict(type='LoadAnnotations', with_bbox=True)
PACK = dict(type='PackMultiRaterInputs', pack_agreement=True)


def _dataset(root, pipeline, **kw):
    return DATASETS.build(
        dict(
            type='MultiRaterCocoDataset',
            data_root=str(root),
            ann_file='ann.json',
            data_prefix=dict(img=''),
            pipeline=pipeline,
            **kw,
        )
    )


def _types(ds) -> list[str]:
    return [type(t).__name__ for t in ds.pipeline.transforms]


def _packed(ds, i: int) -> list[tuple]:
    gt = ds[i]['data_samples'].gt_instances
    return list(
        zip(
            gt.bboxes.tensor.tolist(),
            gt.labels.tolist(),
            gt.confidence.tolist(),
            gt.agreement.tolist(),
        )
    )


@pytest.mark.parametrize(
    'old,fusion',
    [
        # the old transform's default confidence was score_mode='count' (c = T)
        (dict(method='wbf', iou_thr=0.4), dict(method='wbf', iou_thr=0.4, confidence='agreement')),
        (dict(method='mv', score_mode='fraction'), dict(method='mv', confidence='agreement_ratio')),
        (dict(method='wbf', score_mode='wbf'), dict(method='wbf', confidence='fused_score')),
        # fit_ann_file is dropped: the dataset fits EM on its own images
        (
            dict(method='em', score_mode='posterior', fit_ann_file='x.json', cache=True),
            dict(method='em', confidence='posterior'),
        ),
        (dict(method='na'), dict(method='na', confidence='agreement')),
    ],
)
def test_step_lifted_into_fusion_with_a_warning(tmp_path, old, fusion):
    write_set(str(tmp_path))
    pipeline = [LOAD_IMG, LOAD_ANN, dict(type='FuseAnnotations', **old), PACK]
    with pytest.warns(DeprecationWarning, match=r'FuseAnnotations is deprecated.*migration\.md'):
        ds = _dataset(tmp_path, pipeline)
    assert ds.fusion == fusion
    assert _types(ds) == ['LoadImageFromFile', 'LoadAnnotations', 'PackMultiRaterInputs']
    new = _dataset(tmp_path, [LOAD_IMG, LOAD_ANN, PACK], fusion=fusion)
    for i in range(len(ds)):
        assert _packed(ds, i) == _packed(new, i)


def test_step_without_load_annotations_before_becomes_one(tmp_path):
    """The old transform loaded the boxes itself: its place takes a LoadAnnotations."""
    write_set(str(tmp_path))
    with pytest.warns(DeprecationWarning):
        ds = _dataset(tmp_path, [LOAD_IMG, dict(type='FuseAnnotations', method='wbf'), PACK])
    assert _types(ds) == ['LoadImageFromFile', 'LoadAnnotations', 'PackMultiRaterInputs']
    assert len(ds[0]['data_samples'].gt_instances) == 2


def test_precomputed_step(tmp_path):
    from .. import utils

    data = utils.multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.25 * (k + 1)
    write_set(str(tmp_path), data)
    with pytest.warns(DeprecationWarning), pytest.warns(FutureWarning, match='precomputed'):
        ds = _dataset(tmp_path, [LOAD_IMG, dict(type='FuseAnnotations', method='precomputed')])
    assert ds.fusion == dict(method='prefused')
    np.testing.assert_array_equal(ds[0]['gt_confidence'], np.float32([0.25, 0.5, 0.75, 1.0]))


def test_step_and_fusion_together_is_an_error(tmp_path):
    write_set(str(tmp_path), images=False)
    step = dict(type='FuseAnnotations', method='wbf')
    with pytest.raises(ValueError, match='give it once as fusion=dict'):
        _dataset(tmp_path, [LOAD_IMG, step], fusion=dict(method='wbf'))
    with pytest.raises(ValueError, match='2 FuseAnnotations step'):
        _dataset(tmp_path, [LOAD_IMG, step, step])


def test_built_outside_a_dataset_points_to_the_migration():
    assert TRANSFORMS.get('FuseAnnotations') is FuseAnnotations
    with pytest.raises(ValueError, match=r"FuseAnnotations\(method='wbf'\).*docs/migration\.md"):
        TRANSFORMS.build(dict(type='FuseAnnotations', method='wbf'))


def test_new_api_warns_nothing(tmp_path):
    write_set(str(tmp_path), images=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error', DeprecationWarning)
        _dataset(tmp_path, [LOAD_IMG, LOAD_ANN, PACK], fusion=dict(method='wbf'))
