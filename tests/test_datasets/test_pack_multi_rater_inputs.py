"""Tests of PackMultiRaterInputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

import earl_mmdet  # noqa: F401
from earl_mmdet.datasets.transforms import PackMultiRaterInputs
from earl_mmdet.datasets.transforms.keep_confidence import encode_confidence


def _results(n=3, ignore=None):
    return {
        'img': np.zeros((20, 30, 3), np.uint8),
        'img_id': 5,
        'img_path': 'x.png',
        'ori_shape': (20, 30),
        'img_shape': (20, 30),
        'gt_bboxes': HorizontalBoxes(np.arange(4 * n, dtype=np.float32).reshape(n, 4)),
        'gt_bboxes_labels': np.arange(n, dtype=np.int64),
        'gt_ignore_flags': np.zeros(n, bool) if ignore is None else np.asarray(ignore),
        'gt_confidence': np.linspace(0.5, 3, n).astype(np.float32),
        'gt_agreement': np.arange(1, n + 1, dtype=np.int64),
    }


def test_registered_and_mapping():
    assert TRANSFORMS.get('PackMultiRaterInputs') is PackMultiRaterInputs
    assert issubclass(PackMultiRaterInputs, PackDetInputs)
    assert PackMultiRaterInputs.mapping_table['gt_confidence'] == 'confidence'
    assert PackDetInputs.mapping_table == {
        'gt_bboxes': 'bboxes',
        'gt_bboxes_labels': 'labels',
        'gt_masks': 'masks',
    }  # the parent is untouched


def test_packs_confidence_like_stock_fields():
    res = _results()
    out = PackMultiRaterInputs(pack_agreement=True)(dict(res))
    stock = PackDetInputs()(dict(_results()))
    gt = out['data_samples'].gt_instances
    assert gt.confidence.dtype == torch.float32
    np.testing.assert_array_equal(gt.confidence.numpy(), res['gt_confidence'])
    np.testing.assert_array_equal(gt.agreement.numpy(), [1, 2, 3])
    assert torch.equal(gt.bboxes.tensor, stock['data_samples'].gt_instances.bboxes.tensor)
    assert torch.equal(gt.labels, stock['data_samples'].gt_instances.labels)
    assert torch.equal(out['inputs'], stock['inputs'])


def test_ignore_flags_split():
    out = PackMultiRaterInputs()(_results(ignore=[False, True, False]))
    np.testing.assert_allclose(out['data_samples'].gt_instances.confidence.numpy(), [0.5, 3.0])
    np.testing.assert_allclose(out['data_samples'].ignored_instances.confidence.numpy(), [1.75])


def test_without_agreement_by_default():
    out = PackMultiRaterInputs()(_results())
    assert 'agreement' not in out['data_samples'].gt_instances
    assert 'confidence' in out['data_samples'].gt_instances
    assert 'gt_agreement' in PackMultiRaterInputs.mapping_table  # class table untouched


def test_no_confidence_is_stock_behaviour():
    res = _results()
    del res['gt_confidence'], res['gt_agreement']
    out = PackMultiRaterInputs()(res)
    assert 'confidence' not in out['data_samples'].gt_instances


@pytest.mark.parametrize('key', ['gt_confidence', 'gt_agreement'])
def test_length_mismatch_is_an_error(key):
    res = _results()
    res[key] = res[key][:2]
    with pytest.raises(
        ValueError, match=rf'image id=5 \(x\.png\): 3 gt_bboxes but 2 {key}.*KeepConfidence'
    ):
        PackMultiRaterInputs()(res)


def test_packed_labels_are_an_error():
    res = _results()
    encode_confidence(res)
    with pytest.raises(ValueError, match='ConfidenceFromLabels'):
        PackMultiRaterInputs()(res)
