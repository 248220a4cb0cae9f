"""Tests of MultiRaterCocoDataset (registered in mmdet DATASETS)."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.logging import MMLogger

import earl_mmdet  # noqa: F401
from earl_mmdet.datasets import MultiRaterCocoDataset

from .utils import CLASSES, multirater_coco, write_set


def _build(root, ann_file, **kw):
    cfg = dict(
        type='MultiRaterCocoDataset',
        data_root=str(root),
        ann_file=ann_file,
        data_prefix=dict(img=''),
        pipeline=[],
    )
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_registered_and_subclass():
    assert DATASETS.get('MultiRaterCocoDataset') is MultiRaterCocoDataset
    assert issubclass(MultiRaterCocoDataset, CocoDataset)


def test_old_registered_name_warns_and_builds_the_new_class(tmp_path):
    # 'MultiAnnotatorCocoDataset' (until 0.2) keeps working until 0.3, with a FutureWarning
    write_set(str(tmp_path))
    with pytest.warns(FutureWarning, match="'MultiAnnotatorCocoDataset'.*'MultiRaterCocoDataset'"):
        ds = _build(tmp_path, 'ann.json', type='MultiAnnotatorCocoDataset')
    assert isinstance(ds, MultiRaterCocoDataset)
    assert len(ds) == len(_build(tmp_path, 'ann.json'))


def test_old_key_constants_warn_and_name_the_same_keys():
    # CONF_KEY / AGREE_KEY (until 0.2) keep working until 0.3, with a FutureWarning
    from earl_mmdet.datasets import multi_rater_coco as mod

    assert (mod.CONFIDENCE_KEY, mod.AGREEMENT_KEY) == ('gt_confidence', 'gt_agreement')
    with pytest.warns(FutureWarning, match=r'\.CONF_KEY.*\.CONFIDENCE_KEY'):
        assert mod.CONF_KEY == mod.CONFIDENCE_KEY
    with pytest.warns(FutureWarning, match=r'\.AGREE_KEY.*\.AGREEMENT_KEY'):
        assert mod.AGREE_KEY == mod.AGREEMENT_KEY
    with pytest.raises(AttributeError):
        mod.NO_SUCH_KEY  # noqa: B018


def test_keeps_raters_and_negatives(tmp_path):
    write_set(str(tmp_path))
    ds = _build(tmp_path, 'ann.json')
    assert ds.metainfo['classes'] == CLASSES  # from the file's categories
    assert len(ds.metainfo['palette']) == 2
    assert len(ds) == 4
    info = ds.get_data_info(0)
    assert info['raters'] == ['r1', 'r2', 'r3']
    assert [i['rater_id'] for i in info['rater_instances']] == ['r1', 'r2', 'r3', 'r1']
    # no fusion: the instances are the raters' boxes, in file order
    assert [i['bbox'] for i in info['instances']] == [i['bbox'] for i in info['rater_instances']]
    assert [i['bbox_label'] for i in info['instances']] == [0, 0, 0, 1]
    assert info['instances'][1]['bbox'] == [11, 10, 31, 31]
    assert info['img_path'].endswith('img1.png') and info['img_id'] == 1
    assert ds.get_data_info(1)['instances'] == []  # negative kept
    assert ds.cat_ids == [10, 20] and ds.cat2label == {10: 0, 20: 1}
    assert ds.repairs == {}


@pytest.mark.parametrize(
    'filter_cfg,expected_ids',
    [
        # no filter: everything
        (None, [1, 2, 3, 4]),
        # filter_empty_gt keeps the negative image 2, drops image 4 that nobody read
        (dict(filter_empty_gt=True), [1, 2, 3]),
        # stock behaviour on request: every image without a box goes
        (dict(filter_empty_gt=True, keep_negatives=False), [1, 3]),
        # min_size as in mmdet
        (dict(filter_empty_gt=False, min_size=40), [1, 2, 3, 4]),
    ],
)
def test_filter_cfg(tmp_path, filter_cfg, expected_ids):
    write_set(str(tmp_path))
    ds = _build(tmp_path, 'ann.json', filter_cfg=filter_cfg)
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == expected_ids


def test_filter_leaving_nothing_is_a_clear_error(tmp_path):
    write_set(str(tmp_path))
    with pytest.raises(ValueError, match=r'ann\.json: filter_cfg=.*leaves no image of 4'):
        _build(tmp_path, 'ann.json', filter_cfg=dict(min_size=50))


def test_metainfo_classes_reorder(tmp_path):
    write_set(str(tmp_path))
    ds = _build(tmp_path, 'ann.json', metainfo=dict(classes=('b', 'a')))
    assert ds.metainfo['classes'] == ('b', 'a')
    assert [i['bbox_label'] for i in ds.get_data_info(0)['instances']] == [1, 1, 1, 0]


def test_matches_stock_coco_dataset_on_plain_coco(tmp_path):
    """On a clean plain-COCO file the boxes, labels and paths equal stock CocoDataset's."""
    data = multirater_coco()
    for im in data['images']:
        del im['annotators']
    for a in data['annotations']:
        del a['annotator_id']
        a['area'] = a['bbox'][2] * a['bbox'][3]
        a['iscrowd'] = 0
    write_set(str(tmp_path), data)
    ours = _build(tmp_path, 'ann.json', metainfo=dict(classes=CLASSES))
    stock = DATASETS.build(
        dict(
            type='CocoDataset',
            data_root=str(tmp_path),
            ann_file='ann.json',
            data_prefix=dict(img=''),
            metainfo=dict(classes=CLASSES),
            pipeline=[],
        )
    )
    assert len(ours) == len(stock) == 4
    for i in range(4):
        a, b = ours.get_data_info(i), stock.get_data_info(i)
        for key in ('img_path', 'img_id', 'width', 'height'):
            assert a[key] == b[key]
        assert [x['bbox'] for x in a['instances']] == [x['bbox'] for x in b['instances']]
        assert [x['bbox_label'] for x in a['instances']] == [
            x['bbox_label'] for x in b['instances']
        ]
        assert {x['rater_id'] for x in a['rater_instances']} <= {'default'}
        assert a['raters'] == ['default']


def test_prefused_keys_kept(tmp_path):
    data = multirater_coco()
    for k, a in enumerate(data['annotations']):
        a['score'] = 0.5 + k
        a['agreement'] = k
        a['num_raters'] = 3
    write_set(str(tmp_path), data)
    inst = _build(tmp_path, 'ann.json').get_data_info(0)['rater_instances']
    assert [i['score'] for i in inst] == [0.5, 1.5, 2.5, 3.5]
    assert [i['agreement'] for i in inst] == [0, 1, 2, 3]


def test_repairs_counted_and_logged(tmp_path, caplog):
    data = multirater_coco()
    data['annotations'][3]['bbox'] = [50, 5, 30, 30]  # crosses the right border: clipped
    data['annotations'][5]['annotator_id'] = 'r7'  # not a listed reader of image 3
    write_set(str(tmp_path), data)
    logger = MMLogger.get_current_instance()
    logger.propagate = True  # let caplog see mmengine's records
    with caplog.at_level(logging.WARNING):
        ds = _build(tmp_path, 'ann.json')
    assert ds.repairs == {'clipped_to_image': 1, 'rater_added_to_image': 1}
    assert 'clipped_to_image' in caplog.text and 'ann.json' in caplog.text
    assert ds.get_data_info(0)['instances'][3]['bbox'] == [50, 5, 64, 35]
    assert ds.get_data_info(2)['raters'] == ['r1', 'r2', 'r7']
    assert sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds))) == 6
    with pytest.raises(ValueError, match=r"ann\.json: annotation id=4 .*'bbox'"):
        _build(tmp_path, 'ann.json', repair=False)


# Bad-input acceptance table for the dataset: each row breaks the clean set in one way and
# names the message parts (file, record, field) the error must contain. Rows that are
# repairs rather than errors live in test_repairs_counted_and_logged above.
BAD_INPUTS = {
    # malformed JSON: file named with line/column
    'malformed-json': (None, r'ann\.json: malformed JSON at line'),
    # missing top-level and record fields
    'missing-categories': (lambda d: d.pop('categories'), r"top level, field 'categories'"),
    'missing-bbox': (
        lambda d: d['annotations'][2].pop('bbox'),
        r"ann\.json: annotation id=3 \(index 2\), field 'bbox': missing",
    ),
    'missing-height': (
        lambda d: d['images'][1].pop('height'),
        r"ann\.json: image id=2 \(index 1\), field 'height'",
    ),
    'missing-annotators': (
        lambda d: d['images'][2].pop('annotators'),
        r"image id=3 .*'annotators': missing",
    ),
    # x2 < x1 written as a negative width
    'x2<x1': (
        lambda d: d['annotations'][0].update(bbox=[30, 10, -20, 20]),
        r"annotation id=1 .*'bbox': negative width",
    ),
    # NaN coordinate (JSON NaN token)
    'nan': (
        lambda d: d['annotations'][4].update(bbox=[5, float('nan'), 30, 30]),
        r"annotation id=5 .*'bbox': non-finite",
    ),
    # box entirely outside the image: no safe clip
    'out-of-image': (
        lambda d: d['annotations'][4].update(bbox=[70, 5, 30, 30]),
        r"annotation id=5 .*'bbox'.*entirely outside",
    ),
    # zero area
    'zero-area': (
        lambda d: d['annotations'][4].update(bbox=[5, 5, 30, 0]),
        r"annotation id=5 .*'bbox': zero-area",
    ),
    # unknown category
    'unknown-category': (
        lambda d: d['annotations'][4].update(category_id=99),
        r"annotation id=5 .*'category_id': unknown category id 99",
    ),
    # empty dataset
    'empty-dataset': (
        lambda d: d.update(images=[], annotations=[]),
        r"ann\.json: top level, field 'images': empty dataset",
    ),
    # a pre-fused score of 1e39 was c = inf in float32: NaN loss at iteration 1, no file named
    'score-1e39': (
        lambda d: [a.update(score=1e39 if a['id'] == 2 else 1.0) for a in d['annotations']],
        r"ann\.json: annotation id=2 \(index 1\), field 'score': the confidence c must be",
    ),
    # two records of one file (a per-rater export): every box fused alone before
    'same-file-name': (
        lambda d: d['images'][1].update(file_name='img1.png'),
        r"ann\.json: image id=2 \(index 1\), field 'file_name': 'img1\.png' is also the file",
    ),
}


@pytest.mark.parametrize('mutate,pattern', BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_clear_errors(tmp_path, mutate, pattern):
    data = multirater_coco()
    if mutate is not None:
        mutate(data)
    write_set(str(tmp_path), data, images=False)
    if mutate is None:
        (tmp_path / 'ann.json').write_text('{"images": [}')
    with pytest.raises(ValueError, match=pattern):
        _build(tmp_path, 'ann.json')


def test_merge_duplicate_images_through_the_dataset(tmp_path):
    """Image 1 split into one record per rater (ids 1, 11, 12): merged back when asked."""
    data = multirater_coco()
    data['images'][0]['annotators'] = ['r1']
    for new_id, rater in ((11, 'r2'), (12, 'r3')):
        data['images'].append({**data['images'][0], 'id': new_id, 'annotators': [rater]})
    data['annotations'][1]['image_id'], data['annotations'][2]['image_id'] = 11, 12
    write_set(str(tmp_path), data, images=False)
    ds = _build(tmp_path, 'ann.json', merge_duplicate_images=True, fusion='wbf')
    assert ds.repairs == {'image_merged': 2}
    info = ds.get_data_info(0)
    assert info['raters'] == ['r1', 'r2', 'r3'] and len(ds) == 4  # images 1 (merged), 2, 3, 4
    assert info['gt_agreement'].tolist() == [3, 1]  # the three raters' box agrees again


def test_rater_not_listed_is_error_without_repair(tmp_path):
    data = multirater_coco()
    data['annotations'][4]['annotator_id'] = 'r3'  # image 3 was read by r1, r2 only
    write_set(str(tmp_path), data, images=False)
    with pytest.raises(ValueError, match=r"annotation id=5 .*'annotator_id': rater 'r3' drew"):
        _build(tmp_path, 'ann.json', repair=False)
    assert _build(tmp_path, 'ann.json').repairs == {'rater_added_to_image': 1}


def test_missing_image_file_check_files(tmp_path):
    write_set(str(tmp_path))
    (tmp_path / 'img3.png').unlink()
    with pytest.raises(
        ValueError, match=r'ann\.json: 1 image file\(s\) not found.*image id=3: .*img3\.png'
    ):
        _build(tmp_path, 'ann.json', check_files=True)


def test_missing_image_file_in_pipeline_names_path(tmp_path):
    write_set(str(tmp_path))
    (tmp_path / 'img3.png').unlink()
    ds = _build(tmp_path, 'ann.json', pipeline=[dict(type='LoadImageFromFile')])
    assert ds[0]['img'].shape == (48, 64, 3)
    with pytest.raises(FileNotFoundError, match=r'img3\.png'):
        ds[2]


def test_serialization_roundtrip_and_copy(tmp_path):
    write_set(str(tmp_path))
    ds = _build(tmp_path, 'ann.json', serialize_data=True)
    ds2 = copy.deepcopy(ds)

    def plain(info: dict) -> dict:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in info.items()}

    assert plain(ds2.get_data_info(0)) == plain(ds.get_data_info(0))
    sub = ds.get_subset([0, 2])
    assert [sub.get_data_info(i)['img_id'] for i in range(2)] == [1, 3]


def test_get_cat_ids_and_json_untouched(tmp_path):
    path = write_set(str(tmp_path))
    before = open(path).read()
    ds = _build(tmp_path, 'ann.json')
    assert ds.get_cat_ids(0) == [0, 0, 0, 1]
    assert open(path).read() == before
    assert json.loads(before)['images'][3]['annotators'] == []
    assert np.array_equal(sorted(ds.cat_img_map[10]), [1, 1, 1])
