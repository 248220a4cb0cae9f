"""Hostile and careless inputs (issue 25, "silently wrong data" and "tracebacks instead of
errors"): each is a one-line ValueError naming the file, the record and the field, or a
counted repair the user asked for; never a silent change of the data or a traceback."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import re
import warnings

import numpy as np
import pytest

from earl_core.fusion.aggregators import build_aggregator
from earl_core.fusion.wbf import fuse_raters, weighted_boxes_fusion
from earl_core.io.coco import load_multirater_coco
from earl_core.structures import Detections
from earl_mmdet.evaluation.predictions import load_predictions

CATS = [{'id': 1, 'name': 'lesion'}]


def _image(i, name='a.png', raters=('r1', 'r2', 'r3'), **extra):
    return dict(id=i, file_name=name, width=100, height=100, annotators=list(raters), **extra)


def _box(i, image_id, rater, xywh=(10, 10, 20, 20), **extra):
    return dict(
        id=i, image_id=image_id, category_id=1, bbox=list(xywh), annotator_id=rater, **extra
    )


def _three_raters():
    """One image read by r1, r2, r3, who all drew the same lesion."""
    return {
        'images': [_image(1)],
        'annotations': [_box(1, 1, 'r1'), _box(2, 1, 'r2'), _box(3, 1, 'r3')],
        'categories': copy.deepcopy(CATS),
    }


def _per_rater_export(second_name='a.png', second_size=100):
    """The same image as one record per rater (how per-rater exports arrive)."""
    data = _three_raters()
    data['images'] = [
        _image(1, raters=['r1']),
        _image(2, name=second_name, raters=['r2']),
        _image(3, raters=['r3']),
    ]
    data['images'][1]['width'] = second_size
    for a, image_id in zip(data['annotations'], (1, 2, 3)):
        a['image_id'] = image_id
    return data


def _set(path, value):
    def edit(data):
        *parents, last = path.split('.')
        node = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return data

    return lambda: edit(_three_raters())


def _prefused(**fields):
    def make():
        data = _three_raters()
        for a in data['annotations']:
            a.update(score=1.0, agreement=3, num_raters=3)
        data['annotations'][0].update(fields)
        return data

    return make


def _bad_annotation(field, value, message, prefused=False):
    """Case: the first annotation (id 1; of :func:`_prefused` if ``prefused``) with
    ``field`` set to ``value`` must raise "annotation id=1 (index 0), field '<field>':
    <message>"."""
    make = _prefused(**{field: value}) if prefused else _set(f'annotations.0.{field}', value)
    pattern = re.escape(f"annotation id=1 (index 0), field '{field}': {message}")
    return pytest.param(make, pattern, id=f'{field}-{value!r}')


# (id, the file's content: a dict written as JSON or the raw text, the error it must raise)
LOAD_ERRORS = [
    # per-rater export: 3 records of a.png, each read by one rater, would fuse to T = 1 each
    pytest.param(
        _per_rater_export,
        r"image id=2 \(index 1\), field 'file_name': 'a.png' is also the file of image id=1 "
        r'\(index 0\).*merge_duplicate_images=True',
        id='same-file-name-twice',
    ),
    # the same file spelled './a.png' is still the same file
    pytest.param(
        lambda: _per_rater_export(second_name='./a.png'),
        r"image id=2 \(index 1\), field 'file_name': './a.png' is also the file of image id=1",
        id='same-file-after-normpath',
    ),
    # image ids 1 and "1" in one file: two ids to Python, one to every text-based tool
    pytest.param(
        lambda: {**_three_raters(), 'images': [_image(1), _image('1', name='b.png')]},
        r"image id='1' \(index 1\), field 'id': clashes with image id=1 \(index 0\): ids 1 "
        r"and '1' differ only by type",
        id='image-ids-1-and-"1"',
    ),
    # category ids 1 and "1"
    pytest.param(
        lambda: {**_three_raters(), 'categories': CATS + [{'id': '1', 'name': 'other'}]},
        r"category id='1' \(index 1\), field 'id': category ids 1 and '1' differ only by type",
        id='category-ids-1-and-"1"',
    ),
    # annotation ids 1 and "1"
    pytest.param(
        _set('annotations.1.id', '1'),
        r"annotation id='1' \(index 1\), field 'id': clashes with annotation id=1 \(index 0\)",
        id='annotation-ids-1-and-"1"',
    ),
    # image_id true: Python's True == 1 found image 1
    _bad_annotation(
        'image_id', True, 'must be an int or str image id (not bool or float), got True'
    ),
    # image_id 1.0: a float is no id either (1.0 == 1 in Python)
    _bad_annotation('image_id', 1.0, 'must be an int or str image id'),
    _bad_annotation('category_id', True, 'must be an int or str category id'),
    # image_id "1" for image 1: unknown, and the message says why
    _bad_annotation(
        'image_id', '1', "unknown image id '1' (there is image id 1: ids of another type"
    ),
    # pre-fused score 1e39: finite in float64, inf as the float32 c training uses
    _bad_annotation(
        'score',
        1e39,
        'the confidence c must be a finite number >= 0 (at most 3.403e+38',
        prefused=True,
    ),
    # pre-fused score as a 400-digit integer
    pytest.param(
        lambda: json.dumps(_prefused()()).replace('"score": 1.0', '"score": ' + '9' * 400, 1),
        r"annotation id=1 \(index 0\), field 'score': the confidence c must be",
        id='score-400-digits',
    ),
    # pre-fused agreement 2.9 was truncated to T = 2
    _bad_annotation(
        'agreement',
        2.9,
        'must be a whole number of raters >= 0 (an integer), got 2.9',
        prefused=True,
    ),
    # pre-fused num_raters 2.7 was truncated to R = 2
    _bad_annotation('num_raters', 2.7, 'must be a whole number of raters', prefused=True),
    # a rater id with a zero-width space: a fourth rater (R 3 -> 4, c 0.667 -> 0.5)
    pytest.param(
        _set('annotations.2.annotator_id', 'r1\u200b'),
        r"invisible format characters.*'r1' \(image id=1 \(index 0\), field 'annotators\[0\]'\)"
        r" vs 'r1\\u200b' \(annotation id=3 \(index 2\), field 'annotator_id'\)",
        id='rater-zero-width-space',
    ),
    # a rater id in full-width letters
    pytest.param(
        _set('annotations.2.annotator_id', '\uff52\uff11'),
        r"'r1' \(image id=1 \(index 0\), field 'annotators\[0\]'\) vs '\uff52\uff11' "
        r"\(annotation id=3 \(index 2\), field 'annotator_id'\)",
        id='rater-full-width',
    ),
    # a byte-order mark before the id (a CSV export's first cell)
    pytest.param(
        _set('images.0.annotators', ['\ufeffr1', 'r2', 'r3']),
        r"'\\ufeffr1' \(image id=1 \(index 0\), field 'annotators\[0\]'\) vs 'r1' "
        r'\(annotation id=1',
        id='rater-byte-order-mark',
    ),
    # a rater id that is nothing but a zero-width space is an empty id
    pytest.param(
        _set('images.0.annotators', ['r1', 'r2', 'r3', '\u200b']),
        r"image id=1 \(index 0\), field 'annotators\[3\]': rater id must be a non-empty",
        id='rater-only-invisible',
    ),
    # a 400-digit integer coordinate (OverflowError in math.isfinite)
    pytest.param(
        lambda: json.dumps(_three_raters()).replace(
            '[10, 10, 20, 20]', f'[{"9" * 400}, 1, 2, 2]', 1
        ),
        r"annotation id=1 \(index 0\), field 'bbox': non-finite coordinate \(NaN/inf, or an "
        r'integer too large for a float\)',
        id='coordinate-400-digits',
    ),
    # a 400-digit integer width
    pytest.param(
        lambda: json.dumps(_three_raters()).replace('"width": 100', f'"width": {"9" * 400}', 1),
        r"image id=1 \(index 0\), field 'width': must be a finite number > 0, got 9999",
        id='width-400-digits',
    ),
    # JSON nested 200,000 deep (RecursionError in the parser)
    pytest.param(
        lambda: '{"images": ' + '[' * 200_000 + ']' * 200_000 + '}',
        r'JSON nested too deeply to read',
        id='json-nested-200000',
    ),
    # an integer over Python's 4300-digit limit (a bare ValueError naming no file)
    pytest.param(
        lambda: '{"images": ' + '9' * 5000 + '}',
        r'unreadable JSON: Exceeds the limit \(4300 digits\)',
        id='json-int-5000-digits',
    ),
]


@pytest.mark.parametrize('make, pattern', LOAD_ERRORS)
def test_load_errors_name_file_record_field(tmp_path, make, pattern):
    content = make()
    path = tmp_path / 'hostile.json'
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=pattern) as exc:
        load_multirater_coco(path)
    message = str(exc.value)
    assert message.startswith(f'{path}: ') and '\n' not in message


# Repairs the user asked for: (id, content, loader options, repair counts, R, T after wbf)
OPT_IN_REPAIRS = [
    # per-rater records merged into one image read by three raters: the lesion has T = 3
    pytest.param(
        _per_rater_export,
        dict(merge_duplicate_images=True),
        {'image_merged': 2},
        3,
        3,
        id='merge-per-rater-records',
    ),
    # a zero-width space and a full-width id normalised: still three raters, T = 3
    pytest.param(
        lambda: _chain_edits(
            _three_raters(), ('annotations', 1, 'r2\u200b'), ('annotations', 2, '\uff52\uff13')
        ),
        dict(normalize_rater_ids=True),
        {'rater_id_normalized': 2},
        3,
        3,
        id='normalise-invisible-and-full-width',
    ),
]


def _chain_edits(data, *edits):
    for part, index, rater in edits:
        data[part][index]['annotator_id'] = rater
    return data


@pytest.mark.parametrize('make, options, repairs, num_raters, agreement', OPT_IN_REPAIRS)
def test_opt_in_repairs_are_counted(caplog, make, options, repairs, num_raters, agreement):
    data = make()
    with caplog.at_level(logging.WARNING, logger='earl_core.io.coco'):
        coco = load_multirater_coco(data, **options)
    assert dict(coco.repairs) == repairs
    assert len(coco.images) == 1 and len(coco.images[0].raters) == num_raters
    assert coco.num_boxes == 3  # no box lost
    fused = build_aggregator('wbf').fuse_all(coco.images)[0]
    assert fused.agreement.tolist() == [agreement]
    assert ', '.join(f'{k}={v}' for k, v in repairs.items()) in caplog.text


def test_merge_refuses_records_of_different_sizes():
    data = _per_rater_export(second_size=50)
    with pytest.raises(ValueError, match=r"image id=2 \(index 1\), field 'width': 50 differs"):
        load_multirater_coco(data, merge_duplicate_images=True)


IMAGE = Detections.from_raters([[0, 0, 10, 10], [1, 0, 11, 10]], [0, 0], ['a', 'b'], ['a', 'b'])


def _bad_prior(name: str, key: str, value, allowed: str):
    """Case: ``build_aggregator(name, key=value)`` must raise "<model>: <key> must be a
    finite number <allowed>, got <value!r>"."""
    model = {'em': 'RaterEM', 'presence_em': 'PresenceEM'}[name]
    pattern = re.escape(f'{model}: {key} must be a finite number {allowed}, got {value!r}')
    return pytest.param(
        lambda: build_aggregator(name, **{key: value}), pattern, id=f'{name}-{key}-{value}'
    )


# (id, call, the error it must raise): parameters checked when the aggregator is built
PARAMETER_ERRORS = [
    # skip_box_thr above 1: every score is 1 (or in [0, 1]), so every box was dropped
    pytest.param(
        lambda: build_aggregator('wbf', skip_box_thr=1.5),
        r"aggregator 'wbf': skip_box_thr must be a finite number in \[0, 1\]",
        id='wbf-skip_box_thr-1.5',
    ),
    pytest.param(
        lambda: fuse_raters(IMAGE, skip_box_thr=2),
        r'skip_box_thr must be a finite number in \[0, 1\]',
        id='fuse_raters-skip_box_thr-2',
    ),
    pytest.param(
        lambda: weighted_boxes_fusion([[[0, 0, 1, 1]]], [[0.9]], [[0]], skip_box_thr=1.01),
        r'skip_box_thr must be a finite number in \[0, 1\]',
        id='weighted_boxes_fusion-skip_box_thr-1.01',
    ),
    # non-numeric prior strings: float('strong') named no key
    _bad_prior('em', 'prior_strength', 'strong', '> 0'),
    _bad_prior('em', 'prior_diag', '0.7', 'in [0, 1]'),
    _bad_prior('em', 'box_prior_sigma', 'wide', '> 0'),
    _bad_prior('presence_em', 'sensitivity_prior', 'high', 'in (0, 1)'),
    _bad_prior('presence_em', 'rate_prior_strength', 'x', '> 0'),
    # an infinite prior passed the old check (inf > 0)
    _bad_prior('presence_em', 'prior_strength', float('inf'), '> 0'),
    # a rater weight given as a word
    pytest.param(
        lambda: build_aggregator('wbf', rater_weights={'R1': 'heavy'}),
        r"aggregator 'wbf': rater_weights\['R1'\] must be a finite number > 0, got 'heavy'",
        id='wbf-rater_weights-str',
    ),
]


@pytest.mark.parametrize('call, pattern', PARAMETER_ERRORS)
def test_parameter_errors_name_the_key(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


class _Reduce:
    """Pickles as ``func(*args)`` (then ``__setstate__(state)``), as a hostile file can."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, allowed in the pickles


def _tensor_on_small_storage():
    import torch

    with warnings.catch_warnings():  # TypedStorage is deprecated, but what tensors pickle
        warnings.simplefilter('ignore', UserWarning)
        storage = torch.zeros(3).storage()
    return _Reduce(
        torch._utils._rebuild_tensor_v2, (storage, 0, torch.Size([2**40]), (1,), False, {})
    )


# (id, what the pickle holds as its bboxes, the error): each declared 2^40 elements
PICKLE_ERRORS = [
    # numpy _reconstruct asked for a 2^40-element array: MemoryError (1 TiB) before
    pytest.param(
        lambda: _Reduce(_RECONSTRUCT, (np.ndarray, (2**40,), b'b')),
        (pickle.UnpicklingError, r'declares a numpy array of shape \(1099511627776,\)'),
        id='numpy-2**40-elements',
    ),
    # an object array of 2^40 elements: MemoryError from numpy's __setstate__ before
    pytest.param(
        lambda: _Reduce(
            _RECONSTRUCT, (np.ndarray, (0,), b'b'), (1, (2**40,), np.dtype('O'), False, [1])
        ),
        (pickle.UnpicklingError, r'declares a numpy array of Python objects'),
        id='numpy-object-array',
    ),
    # a tensor of 2^40 elements on a storage of 3: torch tried to allocate 4 TiB before
    pytest.param(
        _tensor_on_small_storage,
        (pickle.UnpicklingError, r'declares a tensor of size \(1099511627776,\) on a storage'),
        id='torch-2**40-elements',
    ),
    # a truncated pickle: EOFError naming no file before
    pytest.param(
        lambda: None,
        (ValueError, r'unreadable prediction pickle: (EOFError|UnpicklingError)'),
        id='truncated',
    ),
]


@pytest.mark.parametrize('make, error', PICKLE_ERRORS)
def test_prediction_pickle_errors_name_the_file(tmp_path, make, error):
    path = tmp_path / 'preds.pkl'
    bboxes = make()
    sample = {'img_id': 1, 'pred_instances': {'bboxes': bboxes, 'scores': [], 'labels': []}}
    data = pickle.dumps([sample], protocol=2)
    path.write_bytes(data if bboxes is not None else data[: len(data) // 2])
    kind, pattern = error
    with pytest.raises(kind, match=pattern) as exc:
        load_predictions(str(path), {'categories': CATS})
    assert str(exc.value).startswith(f'{path}: ')
