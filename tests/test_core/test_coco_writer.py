"""earl_core.io.coco_writer: the one layout of boxes, images and files the tools write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from earl_core.io.coco import load_multirater_coco
from earl_core.io.coco_writer import (
    coco_annotation,
    coco_categories,
    coco_file,
    coco_image,
    write_canonical_json,
    write_coco,
    xyxy_to_xywh,
)


@pytest.mark.parametrize(
    'box,decimals,expected',
    [
        # no rounding: plain differences
        ((1.0, 2.0, 4.5, 3.0), None, [1.0, 2.0, 3.5, 1.0]),
        # w is measured from the rounded corner x = 0.10: 0.107 - 0.10 -> 0.01, so x + w is
        # x2 rounded (0.11); rounding x2 - x1 = 0.003 would give w = 0 and lose the box
        ((0.104, 0.0, 0.107, 1.0), 2, [0.1, 0.0, 0.01, 1.0]),
        # the same on y, and a corner that rounds up
        ((0.126, 5.104, 0.3, 5.107), 2, [0.13, 5.1, 0.17, 0.01]),
        # numpy scalars come out as Python floats
        (np.array([10.0, 20.0, 30.0, 50.0]), 3, [10.0, 20.0, 20.0, 30.0]),
    ],
)
def test_xyxy_to_xywh(box, decimals, expected):
    out = xyxy_to_xywh(box, decimals)
    assert out == expected
    assert all(type(v) is float for v in out)


def test_annotation_fields_in_order():
    ann = coco_annotation(3, 7, 2, (10.0, 5.0, 30.0, 25.5), rater='R1', score=0.5, agreement=2)
    assert list(ann) == [
        'id', 'image_id', 'category_id', 'bbox', 'area', 'iscrowd', 'annotator_id', 'score',
        'agreement',
    ]  # fmt: skip
    assert ann['bbox'] == [10.0, 5.0, 20.0, 20.5] and ann['area'] == 20.0 * 20.5
    assert 'annotator_id' not in coco_annotation(1, 1, 1, (0, 0, 1, 1))  # gold / fused box


def test_area_rounding():
    ann = coco_annotation(1, 1, 1, (0.0, 0.0, 1.11, 1.11), decimals=2, area_decimals=3)
    assert ann['area'] == 1.232  # 1.11 * 1.11 = 1.2321


def test_image_raters_and_categories():
    assert coco_image(1, 'a.png', 4, 3) == dict(id=1, file_name='a.png', width=4, height=3)
    read = coco_image(2, 'b.png', 4, 3, raters=('R2', 'R1'), vindr_id='b')
    assert read['annotators'] == ['R2', 'R1'] and read['vindr_id'] == 'b'
    assert coco_image(3, 'c.png', 4, 3, raters=[])['annotators'] == []  # read by nobody
    assert [c['id'] for c in coco_categories(['x', 'y', 'z'], 'thing')] == [1, 2, 3]


def test_image_readers_is_the_old_name_of_raters():
    # coco_image(readers=) (until 0.2) keeps working until 0.3, with a FutureWarning
    with pytest.warns(FutureWarning, match=r'coco_image\(readers=\).*coco_image\(raters=\)'):
        old = coco_image(2, 'b.png', 4, 3, readers=('R2', 'R1'))
    assert old == coco_image(2, 'b.png', 4, 3, raters=('R2', 'R1'))
    with pytest.raises(TypeError, match='raters= only'):
        coco_image(2, 'b.png', 4, 3, readers=['R1'], raters=['R1'])


def test_file_order_and_optional_entries():
    assert list(coco_file([], [], [])) == ['images', 'annotations', 'categories']
    full = coco_file([], [], [], info={'a': 1}, licenses=[])
    assert list(full) == ['info', 'licenses', 'images', 'annotations', 'categories']


def test_written_file_loads_as_multirater(tmp_path):
    """What the writer lays out is what the loader reads: raters, who read, xyxy boxes."""
    images = [coco_image(1, '1.png', 50, 40, raters=['R1', 'R2']), coco_image(2, '2.png', 50, 40)]
    images[1]['annotators'] = ['R1']
    anns = [
        coco_annotation(1, 1, 1, (1.0, 2.0, 11.5, 12.0), decimals=2, rater='R1'),
        coco_annotation(2, 1, 2, (3.0, 4.0, 13.0, 24.25), decimals=2, rater='R2'),
    ]
    path = tmp_path / 'train.json'
    write_coco(path, coco_file(images, anns, coco_categories(['a', 'b'], 'thing')))
    coco = load_multirater_coco(path, repair=False)
    first = coco.images[0]
    assert first.raters == ('R1', 'R2') and coco.images[1].raters == ('R1',)
    np.testing.assert_array_equal(first.boxes, [[1.0, 2.0, 11.5, 12.0], [3.0, 4.0, 13.0, 24.25]])
    assert first.labels.tolist() == [0, 1]


def test_canonical_and_plain_bytes(tmp_path):
    obj = {'b': [1, 2], 'a': {'y': 1.5, 'x': None}}
    write_canonical_json(tmp_path / 'c.json', obj)
    assert (tmp_path / 'c.json').read_text() == '{"a":{"x":null,"y":1.5},"b":[1,2]}\n'
    write_canonical_json(tmp_path / 'i.json', obj, indent=1)
    assert (tmp_path / 'i.json').read_text() == json.dumps(obj, sort_keys=True, indent=1) + '\n'
    write_coco(tmp_path / 'p.json', obj, canonical=False)  # the dict's order, json's spacing
    assert (tmp_path / 'p.json').read_text() == '{"b": [1, 2], "a": {"y": 1.5, "x": null}}'


def test_refuses_to_overwrite_an_input(tmp_path):
    src = tmp_path / 'in.json'
    src.write_text('{}')
    with pytest.raises(ValueError):
        write_coco(src, coco_file([], [], []), inputs=[src])
    assert src.read_text() == '{}'
