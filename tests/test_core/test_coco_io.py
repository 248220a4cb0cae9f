"""Tests of earl_core.io.coco (pure loader/validator of multi-rater COCO)."""

from __future__ import annotations

import copy
import json
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earl_core.io.coco import DEFAULT_RATER, MultiRaterCoco, load_multirater_coco


def _coco() -> dict:
    """Two images (one negative, read by 2 raters), 3 boxes by 2 raters, 2 classes."""
    return {
        'images': [
            {'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 80, 'annotators': ['r1', 2]},
            {'id': 2, 'file_name': 'b.png', 'width': 50, 'height': 50, 'annotators': ['r1', 2]},
        ],
        'annotations': [
            {
                'id': 10,
                'image_id': 1,
                'category_id': 7,
                'bbox': [10, 10, 20, 30],
                'annotator_id': 'r1',
            },
            {
                'id': 11,
                'image_id': 1,
                'category_id': 7,
                'bbox': [12, 11, 20, 30],
                'annotator_id': 2,
            },
            {'id': 12, 'image_id': 1, 'category_id': 3, 'bbox': [50, 5, 10, 10], 'annotator_id': 2},
        ],
        'categories': [{'id': 7, 'name': 'cat'}, {'id': 3, 'name': 'dog'}],
    }


def test_load_clean_file(tmp_path):
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(_coco()))
    coco = load_multirater_coco(path)
    assert isinstance(coco, MultiRaterCoco)
    assert coco.source == str(path)
    assert coco.repairs == {}
    assert coco.multi_rater and not coco.prefused
    assert coco.classes == ('cat', 'dog')  # file order of the categories
    assert coco.cat_ids == [7, 3]
    a, b = coco.images
    np.testing.assert_array_equal(a.boxes, [[10, 10, 30, 40], [12, 11, 32, 41], [50, 5, 60, 15]])
    assert a.labels.dtype == np.int64
    np.testing.assert_array_equal(a.labels, [0, 0, 1])
    assert a.rater_ids.tolist() == ['r1', '2', '2']  # int rater ids normalised to str
    assert a.raters == ('r1', '2')
    assert (a.width, a.height, a.image_id) == (100.0, 80.0, 1)
    # The image read by two raters with no box is kept as a true negative.
    assert b.boxes.shape == (0, 4) and b.labels.shape == (0,) and b.raters == ('r1', '2')
    assert [r['id'] for r in coco.annotations[0]] == [10, 11, 12]
    assert coco.image_infos[1]['annotators'] == ['r1', '2']
    assert coco.num_boxes == 3


def test_input_dict_not_modified():
    data = _coco()
    data['annotations'][0]['bbox'] = [90, 70, 20, 20]  # needs clipping
    before = copy.deepcopy(data)
    coco = load_multirater_coco(data)
    assert data == before
    assert coco.raw == before
    assert coco.source == '<dict>'


def test_classes_reorder_labels():
    coco = load_multirater_coco(_coco(), classes=['dog', 'cat'])
    np.testing.assert_array_equal(coco.images[0].labels, [1, 1, 0])
    assert coco.classes == ('dog', 'cat')


def test_classes_subset_with_boxes_outside_is_error():
    with pytest.raises(ValueError, match=r"annotation id=12 .*'category_id'.*not among"):
        load_multirater_coco(_coco(), classes=['cat'])


def test_plain_coco_is_single_default_rater():
    data = _coco()
    for im in data['images']:
        del im['annotators']
    for a in data['annotations']:
        del a['annotator_id']
    coco = load_multirater_coco(data)
    assert not coco.multi_rater
    assert coco.images[0].raters == (DEFAULT_RATER,)
    assert coco.images[0].rater_ids.tolist() == [DEFAULT_RATER] * 3
    assert coco.images[1].raters == (DEFAULT_RATER,)


def test_prefused_scores():
    data = _coco()
    for a, s in zip(data['annotations'], [3, 1, 2]):
        a['score'] = s
        a['agreement'] = s
        a['num_raters'] = 3
    coco = load_multirater_coco(data)
    assert coco.prefused
    np.testing.assert_array_equal(coco.scores(0), np.array([3, 1, 2], np.float32))
    assert coco.scores(0).dtype == np.float32
    assert coco.scores(1).shape == (0,)


def _parent(d, path: str):
    """(container, key) of a dotted path such as 'images.0.width' (digits: list indices)."""
    keys = [int(k) if k.isdigit() else k for k in path.split('.')]
    for k in keys[:-1]:
        d = d[k]
    return d, keys[-1]


def _set(path, value):
    """Return a mutation that sets data[path] = value (``path`` dotted)."""

    def mutate(d):
        obj, key = _parent(d, path)
        obj[key] = value

    return mutate


def _delete(path):
    def mutate(d):
        obj, key = _parent(d, path)
        del obj[key]

    return mutate


def _chain(*mutations):
    def mutate(d):
        for m in mutations:
            m(d)

    return mutate


def _plain(d):
    """Drop the rater fields: a plain (or fused) COCO file."""
    for im in d['images']:
        del im['annotators']
    for a in d['annotations']:
        del a['annotator_id']


def _cases(*rows):
    """(id, mutation, expected) rows as pytest params."""
    return [pytest.param(m, want, id=i) for i, m, want in rows]


NFC_E, NFD_E = '\u00e9', 'e\u0301'  # 'é' composed / decomposed: one id to whoever reads the file

# Each row: mutation of the clean file -> ValueError whose message must match (file, record,
# field). All raised whatever `repair` is.
ERROR_CASES = _cases(
    # missing top-level field
    ('no-categories', _delete('categories'), r"top level, field 'categories': missing"),
    ('no-annotations', _delete('annotations'), r"top level, field 'annotations': missing"),
    # empty dataset: no image at all
    ('empty-dataset', _set('images', []), r"field 'images': empty dataset"),
    ('empty-categories', _set('categories', []), r"field 'categories': empty"),
    # missing image fields
    ('img-no-width', _delete('images.0.width'), r"image id=1 \(index 0\), field 'width': missing"),
    ('img-no-file', _delete('images.1.file_name'), r"image id=2 \(index 1\), field 'file_name'"),
    ('img-no-id', _delete('images.0.id'), r"image index 0, field 'id': missing"),
    ('img-nan-height', _set('images.0.height', float('nan')), r"image id=1.*'height'"),
    ('dup-image-id', _set('images.1.id', 1), r"image id=1 \(index 1\), field 'id': duplicate"),
    # a multi-rater image must say who read it
    ('img-no-annotators', _delete('images.1.annotators'), r"image id=2.*'annotators': missing"),
    (
        'annotators-not-list',
        _set('images.1.annotators', 'r1'),
        r"image id=2.*'annotators': must be a list",
    ),
    ('annotators-none-id', _set('images.1.annotators', ['r1', None]), r"'annotators\[1\]'"),
    # missing annotation fields
    (
        'ann-no-bbox',
        _delete('annotations.1.bbox'),
        r"annotation id=11 \(index 1\), field 'bbox': missing",
    ),
    ('ann-no-image', _delete('annotations.0.image_id'), r"annotation id=10.*'image_id': missing"),
    (
        'ann-no-cat',
        _delete('annotations.2.category_id'),
        r"annotation id=12.*'category_id': missing",
    ),
    (
        'ann-no-rater',
        _delete('annotations.2.annotator_id'),
        r"annotation id=12.*'annotator_id': missing",
    ),
    (
        'ann-empty-rater',
        _set('annotations.2.annotator_id', ''),
        r"annotation id=12.*'annotator_id'",
    ),
    (
        'dup-ann-id',
        _set('annotations.1.id', 10),
        r"annotation id=10 \(index 1\), field 'id': duplicate",
    ),
    # x2 < x1 (negative width) and y2 < y1
    (
        'x2<x1',
        _set('annotations.0.bbox', [30, 10, -20, 30]),
        r"annotation id=10.*'bbox': negative width",
    ),
    ('y2<y1', _set('annotations.0.bbox', [10, 40, 20, -30]), r"annotation id=10.*'bbox': negative"),
    # NaN / inf / non numbers
    (
        'nan',
        _set('annotations.1.bbox', [10, float('nan'), 5, 5]),
        r"annotation id=11.*'bbox': non-finite",
    ),
    (
        'inf',
        _set('annotations.1.bbox', [10, 1, float('inf'), 5]),
        r"annotation id=11.*'bbox': non-finite",
    ),
    (
        'str-coord',
        _set('annotations.1.bbox', [10, '1', 5, 5]),
        r"annotation id=11.*'bbox': non-numeric",
    ),
    (
        '3-coords',
        _set('annotations.1.bbox', [10, 1, 5]),
        r"annotation id=11.*'bbox': must be a list",
    ),
    # zero area
    (
        'zero-area',
        _set('annotations.2.bbox', [50, 5, 0, 10]),
        r"annotation id=12.*'bbox': zero-area",
    ),
    # entirely outside the image: clipping would leave nothing
    (
        'outside',
        _set('annotations.2.bbox', [120, 5, 10, 10]),
        r'annotation id=12.*entirely outside',
    ),
    # unknown category / image
    (
        'unknown-cat',
        _set('annotations.2.category_id', 99),
        r"annotation id=12.*'category_id': unknown category id 99",
    ),
    (
        'unknown-image',
        _set('annotations.2.image_id', 5),
        r"annotation id=12.*'image_id': unknown image id 5",
    ),
    # crowd regions have no rater semantics
    ('crowd', _set('annotations.2.iscrowd', 1), r"annotation id=12.*'iscrowd'"),
    # pre-fused: score on some annotations only, or not finite
    ('partial-score', _set('annotations.0.score', 2), r"annotation id=11.*'score': missing"),
    ('nan-score', _set('annotations.0.score', float('nan')), r"annotation id=10.*'score'"),
    # duplicate category ids / names
    ('dup-cat', _set('categories.1.id', 7), r"category id=7 \(index 1\), field 'id': duplicate"),
    ('dup-cat-name', _set('categories.1.name', 'cat'), r"'name': duplicate"),
    # rater ids that collide after normalisation would silently become new raters
    (
        'rater-case',
        _set('annotations.0.annotator_id', 'R1'),
        (
            r"differ only by case.*'r1' \(image id=1 \(index 0\), field 'annotators\[0\]'\) vs "
            r"'R1' \(annotation id=10 \(index 0\), field 'annotator_id'\).*normalize_rater_ids"
        ),
    ),
    (
        'rater-space',
        _set('images.1.annotators', ['r1 ', 2]),
        r"'r1' \(image id=1.*vs 'r1 ' \(image id=2 \(index 1\), field 'annotators\[0\]'\)",
    ),
    (
        'rater-nfc-nfd',
        _chain(
            _set('images.0.annotators', [NFC_E, 2]),
            _set('annotations.0.annotator_id', NFD_E),
        ),
        r'Unicode normal form would count as different raters',
    ),
    # a box too thin to exist in float32 pixels: WBF would drop it (docs promise no drop)
    (
        'width-1e-300',
        _set('annotations.2.bbox', [50, 5, 1e-300, 10]),
        r"annotation id=12.*'bbox': box .* is too thin",
    ),
    (
        'height-1e-300-at-0',
        _set('annotations.2.bbox', [0, 5, 10, 1e-300]),
        r"annotation id=12.*'bbox': box .* is too thin",
    ),
    # a fused file: an image nobody read (raters_read []) cannot hold a box
    (
        'box-on-unread-image',
        _chain(_plain, _set('images.0.raters_read', [])),
        r"annotation id=10.*'image_id': image 1 has raters_read \[\] \(nobody read it\)",
    ),
    (
        'raters-read-not-list',
        _chain(_plain, _set('images.0.raters_read', 'r1')),
        r"image id=1 \(index 0\), field 'raters_read': must be a list",
    ),
)


@pytest.mark.parametrize('repair', [True, False])
@pytest.mark.parametrize('mutate,pattern', ERROR_CASES)
def test_errors_name_file_record_field(tmp_path, mutate, pattern, repair):
    data = _coco()
    mutate(data)
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(data))  # NaN/inf are written as JSON NaN/Infinity tokens
    with pytest.raises(ValueError, match=pattern) as exc:
        load_multirater_coco(path, repair=repair)
    assert str(path) in str(exc.value)


# Each row: mutation -> (repair kind, check of the repaired result). With repair=False the
# same input is a ValueError naming the field.
REPAIR_CASES = [
    # box partly outside the image: clipped, box kept
    pytest.param(
        _set('annotations.2.bbox', [90, -5, 20, 10]),
        'clipped_to_image',
        'bbox',
        lambda c: np.testing.assert_array_equal(c.images[0].boxes[2], [90, 0, 100, 5]),
        id='out-of-image',
    ),
    # a rater drew a box but is not listed among the image's raters: added to its annotators
    pytest.param(
        _set('annotations.2.annotator_id', 'r9'),
        'rater_added_to_image',
        'annotator_id',
        lambda c: c.images[0].raters == ('r1', '2', 'r9') or pytest.fail(str(c.images[0].raters)),
        id='rater-not-listed',
    ),
    # a rater listed twice: the duplicate is removed (R counts distinct raters)
    pytest.param(
        _set('images.1.annotators', ['r1', 'r1', 2]),
        'duplicate_rater_in_image',
        'annotators',
        lambda c: c.images[1].raters == ('r1', '2') or pytest.fail(str(c.images[1].raters)),
        id='dup-rater',
    ),
    # annotation without id: numbered after the largest id
    pytest.param(
        _delete('annotations.0.id'),
        'annotation_id_assigned',
        'id',
        lambda c: c.annotations[0][0]['id'] == 13 or pytest.fail(str(c.annotations[0][0])),
        id='no-ann-id',
    ),
]


@pytest.mark.parametrize('mutate,kind,fld,check', REPAIR_CASES)
def test_repairs_counted_logged_no_box_lost(tmp_path, caplog, mutate, kind, fld, check):
    data = _coco()
    mutate(data)
    path = tmp_path / 'fixable.json'
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger='earl_core.io.coco'):
        coco = load_multirater_coco(path, repair=True)
    assert coco.repairs == {kind: 1}
    assert f'{kind}=1' in caplog.text and str(path) in caplog.text
    assert coco.num_boxes == len(data['annotations'])  # no box lost
    check(coco)
    with pytest.raises(ValueError, match=rf"{path}: .*field '{fld}'"):
        load_multirater_coco(path, repair=False)


# normalize_rater_ids=True: (mutation, raters of image 1, rater_id_normalized count)
NORMALIZE_CASES = [
    # case: the first spelling in the file ('r1', image 1) wins
    pytest.param(_set('annotations.0.annotator_id', 'R1'), ('r1', '2'), 1, id='case'),
    # the first spelling has spaces: stripped
    pytest.param(_set('images.0.annotators', [' r1', 2]), ('r1', '2'), 1, id='space-first'),
    # two spellings in one image's list: one rater
    pytest.param(_set('images.0.annotators', ['r1', 'R1', 2]), ('r1', '2'), 1, id='both-in-list'),
    pytest.param(
        _chain(
            _set('images.0.annotators', [NFD_E, 2]),
            _set('images.1.annotators', [NFD_E, 2]),
            _set('annotations.0.annotator_id', NFC_E),
        ),
        (NFC_E, '2'),
        2,  # both lists rewritten to NFC; the annotation was NFC already
        id='nfd-to-nfc',
    ),
]


@pytest.mark.parametrize('mutate,raters,count', NORMALIZE_CASES)
def test_normalize_rater_ids_is_a_counted_repair(mutate, raters, count):
    data = _coco()
    mutate(data)
    coco = load_multirater_coco(data, normalize_rater_ids=True)
    assert coco.images[0].raters == raters
    assert coco.repairs == {'rater_id_normalized': count}
    assert set(coco.images[0].rater_ids.tolist()) <= set(raters)  # no new rater
    assert coco.num_boxes == len(data['annotations'])


def test_unread_image_stays_unlabelled_in_a_fused_file():
    data = _coco()
    _plain(data)
    data['images'][1]['raters_read'] = []  # as tools/fuse_annotations.py writes it
    data['images'][0]['raters_read'] = ['r1', '2']
    coco = load_multirater_coco(data)
    assert coco.images[1].raters == () and coco.image_infos[1]['annotators'] == []
    assert coco.images[0].raters == (DEFAULT_RATER,)


def test_malformed_json(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [1, 2,')
    with pytest.raises(ValueError, match=rf'{path}: malformed JSON at line 1, column'):
        load_multirater_coco(path)


def test_top_level_not_object(tmp_path):
    path = tmp_path / 'list.json'
    path.write_text('[]')
    with pytest.raises(ValueError, match='top level must be a JSON object'):
        load_multirater_coco(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match='annotation file not found'):
        load_multirater_coco(tmp_path / 'nope.json')


def test_bad_argument_type():
    with pytest.raises(TypeError, match='path or a dict'):
        load_multirater_coco(3)


def test_image_read_by_nobody_without_any_rater_box():
    data = _coco()
    data['images'][1]['annotators'] = []
    coco = load_multirater_coco(data)
    assert coco.images[1].raters == ()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-50, 150),
            st.floats(-50, 150),
            st.floats(0.5, 80),
            st.floats(0.5, 80),
            st.sampled_from(['r1', 'r2', 'r3']),
        ),
        max_size=12,
    )
)
def test_property_boxes_kept_clipped_and_counted(boxes):
    """Every box is kept (or the load fails loudly); kept boxes lie inside the image; the
    clip count equals the number of boxes that crossed the border."""
    data = {
        'images': [{'id': 1, 'file_name': 'a', 'width': 100, 'height': 100, 'annotators': ['r1']}],
        'annotations': [
            {'id': i, 'image_id': 1, 'category_id': 1, 'bbox': [x, y, w, h], 'annotator_id': r}
            for i, (x, y, w, h, r) in enumerate(boxes)
        ],
        'categories': [{'id': 1, 'name': 'a'}],
    }
    outside = [x + w <= 0 or y + h <= 0 or x >= 100 or y >= 100 for x, y, w, h, _ in boxes]
    if any(outside):
        with pytest.raises(ValueError, match='entirely outside'):
            load_multirater_coco(data)
        return
    coco = load_multirater_coco(data)
    im = coco.images[0]
    assert len(im.boxes) == len(boxes)
    assert np.all(im.boxes[:, :2] >= 0) and np.all(im.boxes[:, 2:] <= 100)
    assert np.all(im.boxes[:, 2:] > im.boxes[:, :2])
    crossed = sum(x < 0 or y < 0 or x + w > 100 or y + h > 100 for x, y, w, h, _ in boxes)
    assert coco.repairs['clipped_to_image'] == crossed
    extra = {r for *_, r in boxes} - {'r1'}
    assert coco.repairs['rater_added_to_image'] == len(extra)
    assert set(im.raters) == {'r1'} | extra
    # Unclipped boxes are exact.
    for (x, y, w, h, _), b in zip(boxes, im.boxes):
        if not (x < 0 or y < 0 or x + w > 100 or y + h > 100):
            assert math.isclose(b[0], x) and math.isclose(b[3], y + h)
