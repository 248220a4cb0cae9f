"""Confidence alignment through the mmdet transforms that drop or reorder boxes."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mmdet.registry import DATASETS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

import earl_mmdet  # noqa: F401
from earl_mmdet.datasets.transforms import KeepConfidence, PackMultiRaterInputs
from earl_mmdet.datasets.transforms.keep_confidence import (
    decode_confidence,
    encode_confidence,
    is_encoded,
)

from ..utils import multirater_coco, write_set

SIZE = 100


def _results(seed: int, first_label: int, n: int = 7) -> dict:
    """One image with n boxes; every box has a unique label (its tag), confidence and agreement."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, SIZE - 30, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    wh[0] = 3  # a tiny box, for FilterAnnotations
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    labels = np.arange(first_label, first_label + n, dtype=np.int64)
    return {
        'img': rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8),
        'img_shape': (SIZE, SIZE),
        'ori_shape': (SIZE, SIZE),
        'img_id': first_label,
        'img_path': f'{first_label}.png',
        'gt_bboxes': HorizontalBoxes(boxes),
        'gt_bboxes_labels': labels,
        'gt_ignore_flags': np.zeros(n, bool),
        # distinct, non-round values so that any mix-up shows
        'gt_confidence': (labels * 0.731 + 0.017).astype(np.float32),
        'gt_agreement': (labels % 7).astype(np.int64),
    }


# Each row: the transform config and how many extra images it mixes in (mix_results).
TRANSFORM_CASES = [
    # drops boxes smaller than 5 px
    pytest.param(dict(type='FilterAnnotations', min_gt_bbox_wh=(5, 5)), 0, id='FilterAnnotations'),
    # a 50x50 crop of a 100x100 image drops the boxes outside it
    pytest.param(
        dict(type='RandomCrop', crop_size=(50, 50), allow_negative_crop=True), 0, id='RandomCrop'
    ),
    # crops with an IoU constraint, drops boxes whose centre is outside
    pytest.param(dict(type='MinIoURandomCrop'), 0, id='MinIoURandomCrop'),
    # shifts by up to 40 px, drops boxes shifted out
    pytest.param(dict(type='RandomShift', prob=1.0, max_shift_px=40), 0, id='RandomShift'),
    # concatenates 4 images' boxes, drops those outside the mosaic
    pytest.param(dict(type='Mosaic', img_scale=(SIZE, SIZE), prob=1.0), 3, id='Mosaic'),
    # concatenates 2 images' boxes, drops those outside
    pytest.param(dict(type='MixUp', img_scale=(SIZE, SIZE), ratio_range=(0.8, 1.6)), 1, id='MixUp'),
    # warps, drops boxes that leave the image
    pytest.param(
        dict(type='RandomAffine', max_translate_ratio=0.4, scaling_ratio_range=(0.6, 1.6)),
        0,
        id='RandomAffine',
    ),
    # pastes a subset of another image's boxes, drops occluded destination boxes
    pytest.param(dict(type='CopyPaste', paste_by_box=True, bbox_occluded_thr=4), 1, id='CopyPaste'),
]

SEEDS = range(12)


def _inputs(seed: int, num_mix: int) -> dict:
    res = _results(seed, 0)
    if num_mix:
        res['mix_results'] = [_results(seed * 31 + k, 100 * (k + 1)) for k in range(num_mix)]
    return res


def _tables(res: dict) -> tuple[dict, dict]:
    confidence, agreement = {}, {}
    for d in [res, *res.get('mix_results', [])]:
        for lab, c, t in zip(d['gt_bboxes_labels'], d['gt_confidence'], d['gt_agreement']):
            confidence[int(lab)], agreement[int(lab)] = c, int(t)
    return confidence, agreement


def _run(cfg: dict, num_mix: int, seed: int, wrapped: bool):
    random.seed(seed)
    np.random.seed(seed)
    inp = _inputs(seed, num_mix)
    confidence_of, agreement_of = _tables(inp)
    t = TRANSFORMS.build(dict(type='KeepConfidence', transform=cfg) if wrapped else cfg)
    out = t(copy.deepcopy(inp))
    return inp, out, confidence_of, agreement_of


@pytest.mark.parametrize('cfg,num_mix', TRANSFORM_CASES)
def test_wrapped_transform_keeps_alignment_box_by_box(cfg, num_mix):
    changed = 0
    for seed in SEEDS:
        inp, out, confidence_of, agreement_of = _run(cfg, num_mix, seed, wrapped=True)
        if out is None:
            continue
        labels = out['gt_bboxes_labels']
        assert labels.dtype == np.int64 and not is_encoded(labels).any()
        assert len(labels) == len(out['gt_bboxes']) == len(out['gt_confidence'])
        assert len(set(labels.tolist())) == len(labels)  # every box at most once
        assert out['gt_confidence'].dtype == np.float32
        for k, lab in enumerate(labels.tolist()):
            # the label is the box's tag: its confidence and agreement must have followed it
            assert out['gt_confidence'][k] == confidence_of[lab], (seed, k, lab)
            assert out['gt_agreement'][k] == agreement_of[lab], (seed, k, lab)
        if labels.tolist() != inp['gt_bboxes_labels'].tolist():
            changed += 1
        packed = PackMultiRaterInputs()(out)
        gt = packed['data_samples'].gt_instances
        np.testing.assert_array_equal(gt.confidence.numpy(), out['gt_confidence'])
        np.testing.assert_array_equal(gt.labels.numpy(), labels)
    assert changed > 0, 'the transform never dropped or reordered a box: the test proves nothing'


@pytest.mark.parametrize('cfg,num_mix', TRANSFORM_CASES)
def test_unwrapped_transform_breaks_alignment_and_pack_catches_it(cfg, num_mix):
    caught = 0
    for seed in SEEDS:
        _, out, _, _ = _run(cfg, num_mix, seed, wrapped=False)
        if out is None or len(out['gt_bboxes']) == len(out['gt_confidence']):
            continue
        with pytest.raises(ValueError, match='wrap it'):
            PackMultiRaterInputs()(out)
        caught += 1
    assert caught > 0


@pytest.mark.parametrize(
    'cfg', [dict(type='Resize', scale=(50, 50)), dict(type='RandomFlip', prob=1.0)]
)
def test_safe_transforms_need_no_wrapper(cfg):
    out = TRANSFORMS.build(cfg)(_results(0, 0))
    PackMultiRaterInputs()(out)  # no error: same boxes in the same order


def test_forwards_get_indexes_and_attributes():
    t = KeepConfidence(transform=dict(type='Mosaic', img_scale=(SIZE, SIZE)))
    assert hasattr(t, 'get_indexes')
    assert t.img_scale == (SIZE, SIZE)
    assert len(t.get_indexes(list(range(10)))) == 3
    assert not hasattr(KeepConfidence(transform=dict(type='FilterAnnotations')), 'get_indexes')
    with pytest.raises(AttributeError):
        _ = t.no_such_attribute
    # deepcopy/pickle (dataloader workers) keep it working
    t2 = pickle.loads(pickle.dumps(copy.deepcopy(t)))
    assert t2.img_scale == (SIZE, SIZE) and 'Mosaic' in repr(t2)


def test_list_of_transforms_and_passthrough():
    t = KeepConfidence(
        transform=[
            dict(type='RandomShift', prob=1.0, max_shift_px=40),
            dict(type='FilterAnnotations'),
        ]
    )
    res = _results(3, 0)
    del res['gt_confidence'], res['gt_agreement']
    out = t(res)  # no confidences at all: plain pass-through
    assert 'gt_confidence' not in out and not is_encoded(out['gt_bboxes_labels']).any()


def test_mixing_with_an_image_without_confidence_is_an_error():
    res = _inputs(0, 1)
    del res['mix_results'][0]['gt_confidence']
    t = KeepConfidence(transform=dict(type='MixUp', img_scale=(SIZE, SIZE)))
    with pytest.raises(ValueError, match=r'not in mix_results \[0\]'):
        t(res)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 40).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.int64, n, elements=st.integers(0, (1 << 24) - 1)),
            hnp.arrays(np.float32, n, elements=st.floats(width=32, allow_nan=True)),
            hnp.arrays(np.int64, n, elements=st.integers(-1, 126)),
        )
    ),
    st.randoms(use_true_random=False),
)
def test_encode_decode_bit_exact_under_index_and_concat(arrays, rnd):
    labels, confidence, agreement = arrays
    res = {
        'gt_bboxes_labels': labels.copy(),
        'gt_confidence': confidence.copy(),
        'gt_agreement': agreement.copy(),
    }
    encode_confidence(res)
    assert 'gt_confidence' not in res and 'gt_agreement' not in res
    packed = res['gt_bboxes_labels']
    assert packed.dtype == np.int64 and (len(packed) == 0 or is_encoded(packed).all())
    # what the mmdet transforms do to labels: boolean masks, index arrays, concatenation
    idx = np.array([rnd.randrange(len(labels)) for _ in range(len(labels))], np.int64)
    perm = np.concatenate([packed[idx], packed[: len(labels) // 2]])
    want = np.concatenate([idx, np.arange(len(labels) // 2)]).astype(np.int64)
    out = {'gt_bboxes_labels': perm}
    assert decode_confidence(out) or len(perm) == 0
    np.testing.assert_array_equal(out['gt_bboxes_labels'], labels[want])
    np.testing.assert_array_equal(out['gt_agreement'], agreement[want])
    # bit-exact, NaN payloads included
    np.testing.assert_array_equal(
        out['gt_confidence'].view(np.uint32), confidence[want].view(np.uint32)
    )


@pytest.mark.parametrize(
    'res,pattern',
    [
        # labels out of the 24-bit range
        (
            {'gt_bboxes_labels': np.array([1 << 24]), 'gt_confidence': np.ones(1)},
            'labels must be in',
        ),
        # negative label
        ({'gt_bboxes_labels': np.array([-1]), 'gt_confidence': np.ones(1)}, 'labels must be in'),
        # agreement too large for its 7 bits
        (
            {
                'gt_bboxes_labels': np.array([1]),
                'gt_confidence': np.ones(1),
                'gt_agreement': np.array([200]),
            },
            'gt_agreement must be in',
        ),
        # already misaligned before packing
        (
            {'gt_bboxes_labels': np.array([1, 2]), 'gt_confidence': np.ones(1)},
            'dropped or reordered',
        ),
        # confidences without labels
        ({'gt_confidence': np.ones(1)}, 'without gt_bboxes_labels'),
    ],
)
def test_encode_errors(res, pattern):
    with pytest.raises(ValueError, match=pattern):
        encode_confidence(res)


def test_double_encode_and_partial_decode_are_errors():
    res = {'gt_bboxes_labels': np.array([1, 2]), 'gt_confidence': np.ones(2, np.float32)}
    encode_confidence(res)
    with pytest.raises(ValueError, match='already carry'):
        encode_confidence({**res, 'gt_confidence': np.ones(2)})
    mixed = {'gt_bboxes_labels': np.concatenate([res['gt_bboxes_labels'], [5]])}
    with pytest.raises(ValueError, match='1 of 3 boxes carry no confidence'):
        decode_confidence(mixed)
    assert decode_confidence({'gt_bboxes_labels': np.array([3, 4])}) is False


# ---------------------------------------------------------------- MultiImageMixDataset
def _prefused(root) -> dict:
    """Pre-fused set: the agreement field is the annotation index (a tag), scores distinct."""
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.1 * (k + 1) + 0.003
        a['agreement'] = k
    write_set(str(root), data)
    return {k: (a['score'], a['category_id']) for k, a in enumerate(data['annotations'])}


def _mix_dataset(root, wrapped: bool, skip=None):
    inner_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    mix = [
        dict(type='Mosaic', img_scale=(64, 64), prob=1.0),
        dict(type='RandomAffine', border=(-32, -32), max_translate_ratio=0.3),
        dict(type='MixUp', img_scale=(64, 64)),
    ]
    if wrapped:
        outer = [dict(type='KeepConfidence', transform=t) for t in mix]
    else:
        inner_pipeline.append(dict(type='ConfidenceToLabels'))
        outer = [*mix, dict(type='ConfidenceFromLabels')]
    outer.append(dict(type='PackMultiRaterInputs', pack_agreement=True))
    return DATASETS.build(
        dict(
            type='MultiImageMixDataset',
            dataset=dict(
                type='MultiRaterCocoDataset',
                data_root=str(root),
                ann_file='ann.json',
                data_prefix=dict(img=''),
                fusion='prefused',
                pipeline=inner_pipeline,
            ),
            pipeline=outer,
            skip_type_keys=skip,
        )
    )


@pytest.mark.parametrize('wrapped', [True, False])
def test_multi_image_mix_dataset(tmp_path, wrapped):
    truth = _prefused(tmp_path)
    ds = _mix_dataset(tmp_path, wrapped)
    label_of_cat = {10: 0, 20: 1}
    seen = 0
    for seed in range(6):
        random.seed(seed)
        np.random.seed(seed)
        for i in range(len(ds)):
            gt = ds[i]['data_samples'].gt_instances
            assert len(gt.confidence) == len(gt.bboxes) == len(gt.labels) == len(gt.agreement)
            for c, t, lab in zip(gt.confidence.tolist(), gt.agreement.tolist(), gt.labels.tolist()):
                score, cat = truth[t]  # the agreement field tags the source annotation
                assert c == np.float32(score) and lab == label_of_cat[cat]
                seen += 1
    assert seen > 0


def test_pair_keeps_skip_type_keys_working(tmp_path):
    """With the pair the mix transforms keep their names: skip_type_keys switches them off."""
    _prefused(tmp_path)
    ds = _mix_dataset(tmp_path, wrapped=False, skip=['Mosaic', 'RandomAffine', 'MixUp'])
    out = ds[0]
    assert tuple(out['inputs'].shape[1:]) == (48, 64)  # no mosaic: original image size
    gt = out['data_samples'].gt_instances
    assert len(gt.confidence) == 4  # the 4 raw boxes of image 1, decoded
    # The wrapper's type is 'KeepConfidence', so the same skip list does not reach it:
    ds = _mix_dataset(tmp_path, wrapped=True, skip=['Mosaic', 'RandomAffine', 'MixUp'])
    assert tuple(ds[0]['inputs'].shape[1:]) != (48, 64)
