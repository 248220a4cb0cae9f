"""Tests of earl_core.sources.vindr (VinDr-CXR CSV -> multi-rater / gold COCO)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from earl_core.io.coco import load_multirater_coco
from earl_core.sources import vindr
from tests.test_core import vindr_cases as cases
from tests.test_core.vindr_cases import KAGGLE_HEADER, PHYSIONET_HEADER

# The shared rows with a second box of R8 on 'aaa' (line 3 of the file): 'aaa' positive (R8
# two boxes, R9 one box, R10 'No finding'), 'bbb' negative (three 'No finding' raters),
# 'ccc' read by R1, R8, R9 with one box of R1.
KAGGLE_ROWS = [
    cases.KAGGLE_ROWS[0],
    'aaa,Aortic enlargement,0,R8,40,10,60,30.5',
    *cases.KAGGLE_ROWS[1:],
]
SIZES = {'aaa': (100, 80), 'bbb': (90, 90), 'ccc': (50, 60)}


def _write(tmp_path, header, rows, name='train.csv'):
    path = tmp_path / name
    path.write_text('\n'.join([header, *rows]) + '\n')
    return path


def _kaggle(tmp_path, rows=KAGGLE_ROWS, **kw):
    return vindr.read_vindr_csv(_write(tmp_path, KAGGLE_HEADER, rows), **kw)


def test_read_kaggle(tmp_path):
    lab = _kaggle(tmp_path)
    assert lab.fmt == 'kaggle' and lab.classes == list(vindr.VINDR_CLASSES)
    # 'No finding' rows count as reads: negatives are kept with their raters.
    assert lab.raters == {
        'aaa': ['R8', 'R9', 'R10'],
        'bbb': ['R8', 'R9', 'R10'],
        'ccc': ['R1', 'R8', 'R9'],
    }
    assert [(b.image_id, b.rater, b.class_name, b.box, b.line) for b in lab.boxes] == [
        ('aaa', 'R8', 'Nodule/Mass', (10.0, 20.0, 30.0, 50.0), 2),
        ('aaa', 'R8', 'Aortic enlargement', (40.0, 10.0, 60.0, 30.5), 3),
        ('aaa', 'R9', 'Nodule/Mass', (12.0, 18.0, 31.0, 52.0), 4),
        ('ccc', 'R1', 'Pulmonary fibrosis', (5.0, 5.0, 25.0, 25.0), 9),
    ]
    assert lab.positives() == {'aaa', 'ccc'} and lab.image_ids == ['aaa', 'bbb', 'ccc']


def test_read_physionet_nan_boxes(tmp_path):
    rows = [
        'aaa,R8,Nodule/Mass,10,20,30,50',
        'bbb,R9,No finding,NaN,NaN,NaN,NaN',
        'bbb,R10,No finding,,,,',
    ]
    lab = vindr.read_vindr_csv(_write(tmp_path, PHYSIONET_HEADER, rows))
    assert lab.fmt == 'physionet'
    assert lab.raters == {'aaa': ['R8'], 'bbb': ['R9', 'R10']} and len(lab.boxes) == 1


def test_detect_format():
    assert vindr.detect_format(KAGGLE_HEADER.split(',')) == 'kaggle'
    assert vindr.detect_format(PHYSIONET_HEADER.split(',')) == 'physionet'
    with pytest.raises(
        ValueError, match=r"x\.csv: line 1 \(header\): missing column\(s\) \['rad_id'\]"
    ):
        vindr.detect_format(['image_id', 'class_name', 'x_min', 'y_min', 'x_max', 'y_max'], 'x.csv')


# Each bad row -> (row, line, field, message fragment).
BAD_ROWS = [
    ('aaa,Nodule/Mass,8,R8,10,20,abc,50', 'x_max', 'not a number'),  # text coordinate
    ('aaa,Nodule/Mass,8,R8,10,20,,50', 'x_max', 'missing coordinate'),  # empty box of a finding
    ('aaa,Nodule/Mass,8,R8,10,nan,30,50', 'y_min', 'missing coordinate'),  # NaN box of a finding
    ('aaa,Nodule/Mass,8,R8,10,20,inf,50', 'x_max', 'non-finite'),
    ('aaa,Nodule/Mass,8,R8,30,20,10,50', 'x_max', 'x_max=10 < x_min=30'),  # x2 < x1
    ('aaa,Nodule/Mass,8,R8,10,20,10,50', 'x_max', 'zero-size'),
    ('aaa,Nodule/Mass,3,R8,10,20,30,50', 'class_id', "is 'Cardiomegaly' but class_name"),
    ('aaa,Nodule/Mass,15,R8,10,20,30,50', 'class_id', 'outside 0..14'),
    ('aaa,Nodule/Mass,x,R8,10,20,30,50', 'class_id', 'not an integer'),
    ('aaa,No finding,14,R8,0,0,1,1', 'x_min', 'must have an empty box'),
    ('aaa,Nodule/Mass,8,,10,20,30,50', 'rad_id', 'empty radiologist id'),
    (',Nodule/Mass,8,R8,10,20,30,50', 'image_id', 'empty image id'),
    ('aaa,Nodule/Mass,3.9,R8,10,20,30,50', 'class_id', "not an integer: '3.9'"),  # not 3
    ('aaa,Nodule/Mass,inf,R8,10,20,30,50', 'class_id', "not an integer: 'inf'"),  # no overflow
    ('aaa,Nodule/Mass,1e400,R8,10,20,30,50', 'class_id', "not an integer: '1e400'"),  # inf too
    # image ids become file names: nothing may lead outside the input/output folders
    ('../x,Nodule/Mass,8,R8,10,20,30,50', 'image_id', "'../x' cannot be used as a file name"),
    ('/abs/x,Nodule/Mass,8,R8,10,20,30,50', 'image_id', "'/abs/x' cannot be used as a file"),
    ('..,No finding,14,R8,,,,', 'image_id', "'..' cannot be used as a file name"),
    ('a\\b,No finding,14,R8,,,,', 'image_id', 'path separator'),  # Windows separator
    ('C:x,No finding,14,R8,,,,', 'image_id', 'path separator'),  # Windows drive
]


@pytest.mark.parametrize('row,fld,msg', BAD_ROWS)
def test_bad_rows_name_file_line_field(tmp_path, row, fld, msg):
    path = _write(tmp_path, KAGGLE_HEADER, ['bbb,No finding,14,R8,,,,', row])
    with pytest.raises(ValueError) as e:
        vindr.read_vindr_csv(path)
    assert f"{path}: line 3, field '{fld}'" in str(e.value)
    assert msg in str(e.value)


# Files whose rows are fine one by one: (rows, line, field, message fragment).
BAD_FILES = [
    # the same radiologist says 'No finding' and draws a box on one image
    pytest.param(
        ['aaa,No finding,14,R8,,,,', 'aaa,Nodule/Mass,8,R8,10,20,30,50'],
        2,
        'class_name',
        "radiologist 'R8' gives 'No finding' for image 'aaa' but also a finding on line 3",
        id='no-finding-then-box',
    ),
    pytest.param(
        [
            'aaa,Nodule/Mass,8,R8,10,20,30,50',
            'bbb,No finding,14,R9,,,,',
            'aaa,No finding,14,R8,,,,',
        ],
        4,
        'class_name',
        'also a finding on line 2',
        id='box-then-no-finding',
    ),
]


@pytest.mark.parametrize('rows,line,fld,msg', BAD_FILES)
def test_bad_files_name_file_line_field(tmp_path, rows, line, fld, msg):
    path = _write(tmp_path, KAGGLE_HEADER, rows)
    with pytest.raises(ValueError) as e:
        vindr.read_vindr_csv(path)
    assert f"{path}: line {line}, field '{fld}'" in str(e.value)
    assert msg in str(e.value)


def test_repair_keeps_boxes_of_a_no_finding_rater(tmp_path):
    rows = [
        'aaa,No finding,14,R8,,,,',
        'aaa,Nodule/Mass,8,R8,10,20,30,50',
        'aaa,No finding,14,R9,,,,',
    ]
    lab = _kaggle(tmp_path, rows, repair=True)
    assert lab.repairs == {'no_finding_with_boxes': 1}
    assert len(lab.boxes) == 1 and lab.raters == {'aaa': ['R8', 'R9']}


def test_latin1_csv_names_file_and_line(tmp_path):
    path = tmp_path / 'latin1.csv'
    text = '\n'.join([KAGGLE_HEADER, 'bbb,No finding,14,R8,,,,', 'caf\xe9,No finding,14,R8,,,,'])
    path.write_bytes(text.encode('latin-1'))
    with pytest.raises(ValueError, match=rf'{path}: line 3: not UTF-8 text'):
        vindr.read_vindr_csv(path)
    with pytest.raises(ValueError, match=rf'{path}: line 3: not UTF-8 text'):
        vindr.read_size_table(path)


def test_kaggle_csv_is_not_a_gold_file(tmp_path):
    path = _write(tmp_path, KAGGLE_HEADER, KAGGLE_ROWS)
    with pytest.raises(ValueError, match=r'line 1 \(header\): a Kaggle VinBigData CSV'):
        vindr.read_vindr_csv(path, gold=True)


def test_repair_swaps_reversed_corners(tmp_path):
    lab = _kaggle(tmp_path, ['aaa,Nodule/Mass,8,R8,30,50,10,20'], repair=True)
    assert lab.boxes[0].box == (10.0, 20.0, 30.0, 50.0)
    assert lab.repairs == {'swapped_x': 1, 'swapped_y': 1}


def test_unknown_classes_error_drop_keep(tmp_path, caplog):
    rows = [
        'aaa,R8,Rib fracture,1,2,3,4',
        'aaa,R8,Nodule/Mass,10,20,30,50',
        'bbb,R9,Rib fracture,1,2,3,4',
        'bbb,R9,edema,1,2,3,4',
    ]
    path = _write(tmp_path, PHYSIONET_HEADER, rows)
    with pytest.raises(ValueError, match=r"line 2, field 'class_name': 'Rib fracture' is not one"):
        vindr.read_vindr_csv(path)
    with caplog.at_level(logging.INFO, logger='earl_core.sources.vindr'):
        lab = vindr.read_vindr_csv(path, unknown_classes='drop')
    assert lab.dropped == {'Rib fracture': 2, 'edema': 1} and len(lab.boxes) == 1
    assert 'dropped 3 finding rows' in caplog.text  # logged, not silent
    assert lab.raters == {'aaa': ['R8'], 'bbb': ['R9']}  # R9 still read bbb: a negative
    lab = vindr.read_vindr_csv(path, unknown_classes='keep')
    assert lab.classes[14:] == ['Rib fracture', 'edema'] and len(lab.boxes) == 4


def test_class_names_case_insensitive(tmp_path):
    lab = vindr.read_vindr_csv(
        _write(tmp_path, PHYSIONET_HEADER, ['aaa,R8,lung opacity,1,2,3,4', 'bbb,R8,NO FINDING,,,,'])
    )
    assert lab.boxes[0].class_name == 'Lung Opacity' and lab.raters['bbb'] == ['R8']


def test_file_level_errors(tmp_path):
    with pytest.raises(ValueError, match='not found'):
        vindr.read_vindr_csv(tmp_path / 'nope.csv')
    (tmp_path / 'empty.csv').write_text('')
    with pytest.raises(ValueError, match='empty file'):
        vindr.read_vindr_csv(tmp_path / 'empty.csv')
    with pytest.raises(ValueError, match='no data rows'):
        vindr.read_vindr_csv(_write(tmp_path, KAGGLE_HEADER, []))
    with pytest.raises(ValueError, match='line 2: 8 columns in the header but more fields'):
        vindr.read_vindr_csv(_write(tmp_path, KAGGLE_HEADER, ['a,b,1,R1,1,2,3,4,5']))


def test_gold_file_ignores_rad_id(tmp_path):
    header = 'image_id,class_name,x_min,y_min,x_max,y_max'  # consensus file without rad_id
    lab = vindr.read_vindr_csv(
        _write(tmp_path, header, ['aaa,Nodule/Mass,10,20,30,50', 'bbb,No finding,,,,']),
        fmt='physionet',
        gold=True,
    )
    coco, _ = vindr.build_coco(lab, SIZES, gold=True)
    assert [im['vindr_id'] for im in coco['images']] == ['aaa', 'bbb']
    assert all('annotators' not in im for im in coco['images'])
    assert all('annotator_id' not in a for a in coco['annotations'])
    assert not load_multirater_coco(coco, repair=False).multi_rater


def test_filter_raters(tmp_path):
    lab = _kaggle(tmp_path)
    sub, stats = vindr.filter_raters(lab, ['R8', 'R9', 'R10'])
    # 'all': images read by each of R8, R9, R10 - 'ccc' (read by R1) goes.
    assert sub.raters == {'aaa': ['R8', 'R9', 'R10'], 'bbb': ['R8', 'R9', 'R10']}
    assert stats == dict(images_kept=2, images_removed=1, boxes_kept=3, boxes_removed=1)
    sub, stats = vindr.filter_raters(lab, ['R8', 'R9', 'R10'], match='any')
    assert sub.raters['ccc'] == ['R8', 'R9'] and stats['boxes_removed'] == 1
    assert all(b.rater != 'R1' for b in sub.boxes)
    with pytest.raises(ValueError, match=r"rater\(s\) \['R99'\] never appear"):
        vindr.filter_raters(lab, ['R8', 'R99'])


def test_split_train_val_seeded_stratified():
    rows = []
    for i in range(40):
        rows.append(
            (
                i + 2,
                dict(
                    image_id=f'img{i:02d}',
                    rad_id='R1',
                    class_name='Nodule/Mass' if i < 10 else 'No finding',
                    x_min='1' if i < 10 else '',
                    y_min='1' if i < 10 else '',
                    x_max='5' if i < 10 else '',
                    y_max='5' if i < 10 else '',
                ),
            )
        )
    lab = vindr.parse_vindr_rows(rows, 'physionet')
    tr, va = vindr.split_train_val(lab, 0.2, seed=1)
    assert len(va) == 8 and len(tr) == 32 and not set(tr) & set(va)
    assert len(set(va) & lab.positives()) == 2  # 20 % of the 10 positives
    assert (tr, va) == vindr.split_train_val(lab, 0.2, seed=1)
    assert va != vindr.split_train_val(lab, 0.2, seed=2)[1]
    assert vindr.split_train_val(lab, 0.0, seed=1) == (sorted(lab.raters), [])


def test_build_coco_multirater_and_resize(tmp_path):
    lab = _kaggle(tmp_path)
    resized = {k: vindr.resized_size(w, h, 50) for k, (w, h) in SIZES.items()}
    assert resized['aaa'] == (50, 40)
    coco, repairs = vindr.build_coco(lab, SIZES, resized=resized)
    assert not repairs
    im = {i['vindr_id']: i for i in coco['images']}
    assert im['aaa'] == dict(
        id=1,
        file_name='aaa.png',
        width=50,
        height=40,
        orig_width=100,
        orig_height=80,
        vindr_id='aaa',
        annotators=['R8', 'R9', 'R10'],
    )
    assert im['bbb']['annotators'] == ['R8', 'R9', 'R10']  # negative image kept
    anns = coco['annotations']
    assert len(anns) == 4
    a0 = anns[0]
    # (10, 20, 30, 50) in 100x80 -> scale 0.5 on both axes.
    assert a0['bbox'] == [5.0, 10.0, 10.0, 15.0] and a0['area'] == 150.0
    assert a0['category_id'] == 9 and a0['annotator_id'] == 'R8'  # Nodule/Mass = class 8
    assert [c['id'] for c in coco['categories']] == list(range(1, 15))
    assert coco['categories'][8]['name'] == 'Nodule/Mass'
    loaded = load_multirater_coco(coco, repair=False)
    assert loaded.num_boxes == 4 and loaded.images[1].raters == ('R8', 'R9', 'R10')


def test_build_coco_out_of_image(tmp_path):
    lab = _kaggle(tmp_path, ['aaa,Nodule/Mass,8,R8,90,20,130,50'])
    with pytest.raises(
        ValueError,
        match=r"train\.csv: line 2, field 'x_max': box .* extends outside "
        r'the 100x80 image aaa \(pass --repair',
    ):
        vindr.build_coco(lab, SIZES)
    coco, repairs = vindr.build_coco(lab, SIZES, repair=True)
    assert repairs == {'clipped_to_image': 1} and coco['annotations'][0]['bbox'] == [90, 20, 10, 30]
    lab = _kaggle(tmp_path, ['aaa,Nodule/Mass,8,R8,120,20,130,50'])
    with pytest.raises(ValueError, match='lies outside'):
        vindr.build_coco(lab, SIZES, repair=True)  # nothing left to clip to
    with pytest.raises(ValueError, match=r"no image size for 1 image\(s\), e.g. \['aaa'\]"):
        vindr.build_coco(lab, {})


def test_build_coco_box_too_thin_to_write(tmp_path):
    # 0.0004 px wide: rounded to 0.001 px in the file it would be a zero-area box
    lab = _kaggle(tmp_path, ['aaa,Nodule/Mass,8,R8,10,20,10.0004,50'])
    with pytest.raises(ValueError, match=r"line 2, field 'x_max': box .* narrower than 0.001 px"):
        vindr.build_coco(lab, SIZES)


def test_read_size_table(tmp_path):
    (tmp_path / 'm.csv').write_text('image_id,dim0,dim1\naaa,80,100\n')
    assert vindr.read_size_table(tmp_path / 'm.csv') == {'aaa': (100, 80)}  # dim0 = rows
    (tmp_path / 'w.csv').write_text('image_id,image_width,image_height\naaa,100,80\n')
    assert vindr.read_size_table(tmp_path / 'w.csv') == {'aaa': (100, 80)}
    (tmp_path / 'b.csv').write_text('image_id,width,height\naaa,100,x\n')
    with pytest.raises(ValueError, match=r"b\.csv: line 2, field 'height': not a number"):
        vindr.read_size_table(tmp_path / 'b.csv')
    (tmp_path / 'c.csv').write_text('image_id,w,h\n')
    with pytest.raises(ValueError, match='need image_id and width,height'):
        vindr.read_size_table(tmp_path / 'c.csv')


@pytest.mark.parametrize(
    'w,h,longest,expected',
    [
        (2000, 2500, 1024, (819, 1024)),
        (3000, 3000, 512, (512, 512)),
        (100, 50, None, (100, 50)),
        (100, 50, 400, (400, 200)),  # upscaling is allowed
    ],
)
def test_resized_size(w, h, longest, expected):
    assert vindr.resized_size(w, h, longest) == expected


def test_to_uint8_polarity_and_range():
    ramp = np.arange(12, dtype=np.int32).reshape(3, 4) * 100
    m2 = vindr.to_uint8(ramp, 'MONOCHROME2')
    m1 = vindr.to_uint8(ramp, 'MONOCHROME1')
    assert m2.dtype == np.uint8 and m2.min() == 0 and m2.max() == 255
    assert m2[0, 0] == 0 and m1[0, 0] == 255  # low values: dark in M2, bright in M1
    np.testing.assert_array_equal(m1.astype(int), 255 - m2.astype(int))
    assert not vindr.to_uint8(np.full((4, 4), 7), 'MONOCHROME2').any()
    with pytest.raises(ValueError, match='RGB'):
        vindr.to_uint8(ramp, 'RGB')
    with pytest.raises(ValueError, match='single-frame'):
        vindr.to_uint8(np.zeros((2, 3, 3)))


def test_old_field_names_warn_and_map():
    # VindrLabels.readers and VindrBox.rad_id (until 0.2) keep working until 0.3
    lab = vindr.parse_vindr_rows(
        [(2, dict(image_id='a', rad_id='R8', class_name='Nodule/Mass', x_min='1', y_min='1',
                  x_max='5', y_max='5'))],
        'physionet',
    )  # fmt: skip
    with pytest.warns(FutureWarning, match=r'VindrLabels\.readers.*VindrLabels\.raters'):
        assert lab.readers == lab.raters == {'a': ['R8']}
    with pytest.warns(FutureWarning, match=r'VindrBox\.rad_id.*VindrBox\.rater'):
        assert lab.boxes[0].rad_id == lab.boxes[0].rater == 'R8'
