"""tools/convert_vindr.py on generated VinDr-style CSVs and tiny DICOMs (pydicom)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from earl_core.io.coco import load_multirater_coco
from tests.test_core.vindr_cases import KAGGLE_HEADER, KAGGLE_ROWS, PHYSIONET_HEADER
from tests.test_tools.run_tool import run_tool

pydicom = pytest.importorskip('pydicom')
Image = pytest.importorskip('PIL.Image')

ROOT = Path(__file__).resolve().parents[2]
# image id -> (width, height); aaa MONOCHROME2, bbb MONOCHROME1, ccc windowed ramp.
SIZES = {'aaa': (80, 64), 'bbb': (60, 60), 'ccc': (50, 40)}


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, window=None) -> None:
    """A minimal uncompressed 12-bit grey DICOM."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.1.1'  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'DX'
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype('<u2').tobytes()
    if int(pydicom.__version__.split('.')[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _halves(w, h):
    """Left half 100, right half 3000 (12-bit)."""
    px = np.full((h, w), 100, np.uint16)
    px[:, w // 2 :] = 3000
    return px


@pytest.fixture
def vindr_dir(tmp_path):
    d = tmp_path / 'train'
    d.mkdir()
    write_dicom(d / 'aaa.dicom', _halves(*SIZES['aaa']), 'MONOCHROME2')
    write_dicom(d / 'bbb.dicom', _halves(*SIZES['bbb']), 'MONOCHROME1')
    w, h = SIZES['ccc']
    ramp = np.tile(np.arange(w, dtype=np.uint16) * 80, (h, 1))  # 0 .. 3920 across columns
    write_dicom(d / 'ccc.dcm', ramp, 'MONOCHROME2', window=(2000, 1000))
    (tmp_path / 'train.csv').write_text('\n'.join([KAGGLE_HEADER, *KAGGLE_ROWS]) + '\n')
    return tmp_path


def run(*args) -> str:
    """Convert (must succeed); returns what the tool printed."""
    proc = run_tool('convert_vindr', *args, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def refused(*args) -> str:
    """Convert (must fail); returns the error output."""
    proc = run_tool('convert_vindr', *args, timeout=120)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stderr


def _kaggle(vindr_dir, out) -> list:
    """Arguments converting the fixture's Kaggle train.csv and DICOMs into ``out``."""
    return ['--csv', vindr_dir / 'train.csv', '--dicom-dir', vindr_dir / 'train', '--out', out]


def _load(path):
    return json.loads(Path(path).read_text())


def _png(out, name, split='train'):
    return np.asarray(Image.open(Path(out) / 'images' / split / f'{name}.png'))


def test_kaggle_train_full_size(vindr_dir):
    out = vindr_dir / 'out'
    run(*_kaggle(vindr_dir, out))
    coco = _load(out / 'train.json')
    ims = {im['vindr_id']: im for im in coco['images']}
    assert ims['aaa']['annotators'] == ['R8', 'R9', 'R10']
    assert ims['bbb']['annotators'] == ['R8', 'R9', 'R10']  # true negative, kept
    assert ims['ccc']['annotators'] == ['R1', 'R8', 'R9']
    for k, (w, h) in SIZES.items():
        assert (
            (ims[k]['width'], ims[k]['height'])
            == (w, h)
            == (ims[k]['orig_width'], ims[k]['orig_height'])
        )
        assert _png(out, k).shape == (h, w) and _png(out, k).dtype == np.uint8
    assert [(a['annotator_id'], a['bbox'], a['category_id']) for a in coco['annotations']] == [
        ('R8', [10.0, 20.0, 20.0, 30.0], 9),
        ('R9', [12.0, 18.0, 19.0, 34.0], 9),
        ('R1', [5.0, 5.0, 20.0, 20.0], 14),
    ]
    loaded = load_multirater_coco(out / 'train.json', repair=False)
    assert loaded.num_boxes == 3 and len(loaded.images) == 3
    meta = _load(out / 'convert_train_meta.json')
    assert meta['files']['train'] == dict(images=3, boxes=3, negative_images=1)
    assert not (out / 'val.json').exists()


def test_monochrome1_is_inverted(vindr_dir):
    out = vindr_dir / 'out'
    run(*_kaggle(vindr_dir, out))
    m2, m1 = _png(out, 'aaa'), _png(out, 'bbb')
    # Same raw values (left 100, right 3000): MONOCHROME2 left dark, MONOCHROME1 left bright.
    assert m2[:, :40].max() == 0 and m2[:, 40:].min() == 255
    assert m1[:, :30].min() == 255 and m1[:, 30:].max() == 0


def test_voi_window_applied_unless_disabled(vindr_dir):
    out, raw = vindr_dir / 'out', vindr_dir / 'raw'
    run(*_kaggle(vindr_dir, out))
    run(
        *_kaggle(vindr_dir, raw),
        '--no-voi-lut',
    )
    win, lin = _png(out, 'ccc')[0].astype(int), _png(raw, 'ccc')[0].astype(int)
    value = np.arange(50) * 80
    # Window 2000 +- 500: saturated outside, linear inside.
    assert np.all(win[value <= 1400] == 0) and np.all(win[value >= 2560] == 255)
    assert 100 < win[25] < 160  # value 2000, the window centre
    # Without the window: plain min-max of 0..3920.
    np.testing.assert_allclose(lin, np.rint(value * 255 / 3920), atol=1)


def test_resize_scales_boxes_and_keeps_original_size(vindr_dir):
    out = vindr_dir / 'out'
    run(
        *_kaggle(vindr_dir, out),
        '--resize',
        40,
    )
    coco = _load(out / 'train.json')
    ims = {im['vindr_id']: im for im in coco['images']}
    assert (ims['aaa']['width'], ims['aaa']['height']) == (40, 32)
    assert (ims['aaa']['orig_width'], ims['aaa']['orig_height']) == (80, 64)
    assert (ims['ccc']['width'], ims['ccc']['height']) == (40, 32)
    assert _png(out, 'aaa').shape == (32, 40) and _png(out, 'bbb').shape == (40, 40)
    boxes = [a['bbox'] for a in coco['annotations']]
    assert boxes[0] == [5.0, 10.0, 10.0, 15.0]  # (10, 20, 30, 50) * 0.5
    assert boxes[2] == [4.0, 4.0, 16.0, 16.0]  # (5, 5, 25, 25) * 0.8
    # Inversion survives resizing (MONOCHROME1: left bright).
    assert _png(out, 'bbb')[:, :15].min() == 255


def test_rads_subset_and_val_split(vindr_dir):
    out = vindr_dir / 'out'
    run(
        *_kaggle(vindr_dir, out),
        '--raters',
        'R8',
        'R9',
        'R10',
        '--val-fraction',
        0.5,
        '--seed',
        1,
        '--skip-images',
    )
    train, val = _load(out / 'train.json'), _load(out / 'val.json')
    ids = {im['vindr_id'] for im in train['images']} | {im['vindr_id'] for im in val['images']}
    assert ids == {'aaa', 'bbb'}  # ccc was read by R1: not a Rads-VinDr-CXR image
    assert len(train['images']) == len(val['images']) == 1  # one positive, one negative
    assert {a['annotator_id'] for a in train['annotations'] + val['annotations']} == {'R8', 'R9'}
    meta = _load(out / 'convert_train_meta.json')
    assert meta['rater_filter'] == dict(
        images_kept=2, images_removed=1, boxes_kept=2, boxes_removed=1
    )


def test_skip_images_same_json(vindr_dir):
    full, hdr, table = vindr_dir / 'full', vindr_dir / 'hdr', vindr_dir / 'table'
    run(
        *_kaggle(vindr_dir, full),
        '--resize',
        40,
    )
    run(
        *_kaggle(vindr_dir, hdr),
        '--resize',
        40,
        '--skip-images',
    )
    sizes = vindr_dir / 'train_meta.csv'
    sizes.write_text(
        'image_id,dim0,dim1\n' + ''.join(f'{k},{h},{w}\n' for k, (w, h) in SIZES.items())
    )
    run(
        '--csv',
        vindr_dir / 'train.csv',
        '--size-table',
        sizes,
        '--out',
        table,
        '--resize',
        40,
        '--skip-images',
    )
    assert _load(hdr / 'train.json') == _load(full / 'train.json') == _load(table / 'train.json')
    assert not any((hdr / 'images' / 'train').iterdir())


def test_physionet_train_and_gold_test(vindr_dir):
    rows = [
        'aaa,R8,Nodule/Mass,10,20,30,50',
        'bbb,R9,No finding,NaN,NaN,NaN,NaN',
        'bbb,R10,No finding,,,,',
    ]
    (vindr_dir / 'annotations_train.csv').write_text('\n'.join([PHYSIONET_HEADER, *rows]) + '\n')
    out = vindr_dir / 'out'
    run(
        '--csv',
        vindr_dir / 'annotations_train.csv',
        '--dicom-dir',
        vindr_dir / 'train',
        '--out',
        out,
        '--skip-images',
    )
    coco = _load(out / 'train.json')
    assert [im['annotators'] for im in coco['images']] == [['R8'], ['R9', 'R10']]
    test_rows = [
        'aaa,R11,Nodule/Mass,10,20,30,50',
        'aaa,R12,Aortic enlargement,40,10,60,30',
        'bbb,R11,No finding,,,,',
    ]
    (vindr_dir / 'annotations_test.csv').write_text('\n'.join([PHYSIONET_HEADER, *test_rows]))
    run(
        '--csv',
        vindr_dir / 'annotations_test.csv',
        '--dicom-dir',
        vindr_dir / 'train',
        '--out',
        out,
        '--split',
        'test',
        '--resize',
        40,
    )
    gold = _load(out / 'test.json')
    assert all('annotators' not in im for im in gold['images'])
    assert all('annotator_id' not in a for a in gold['annotations'])
    assert [a['bbox'] for a in gold['annotations']] == [
        [5.0, 10.0, 10.0, 15.0],
        [20.0, 5.0, 10.0, 10.0],
    ]
    assert (out / 'images' / 'test' / 'bbb.png').is_file()
    assert not load_multirater_coco(out / 'test.json', repair=False).multi_rater


def test_bad_rows_missing_dicom_and_repair(vindr_dir):
    csv = vindr_dir / 'bad.csv'
    csv.write_text('\n'.join([KAGGLE_HEADER, KAGGLE_ROWS[0], 'aaa,Nodule/Mass,8,R9,30,18,12,52']))
    args = ['--csv', csv, '--dicom-dir', vindr_dir / 'train', '--out', vindr_dir / 'o']
    assert f"{csv}: line 3, field 'x_max': x_max=12 < x_min=30" in refused(*args)
    run(*args, '--repair', '--skip-images')
    meta = _load(vindr_dir / 'o' / 'convert_train_meta.json')
    assert meta['repairs'] == {'swapped_x': 1}
    csv.write_text('\n'.join([KAGGLE_HEADER, 'aaa,Nodule/Mass,8,R8,10,20,95,50']))
    err = refused(*args, '--skip-images')
    assert re.search(r"line 2, field 'x_max': box .* extends outside the 80x64 image aaa", err)
    run(*args, '--skip-images', '--repair')
    assert _load(vindr_dir / 'o' / 'train.json')['annotations'][0]['bbox'] == [10, 20, 70, 30]
    csv.write_text('\n'.join([KAGGLE_HEADER, 'zzz,No finding,14,R8,,,,']))
    assert "no DICOM for 1 of 1 labelled images, e.g. ['zzz']" in refused(*args)


def test_reuses_pngs_unless_overwrite_or_new_size(vindr_dir):
    out = vindr_dir / 'out'
    base = _kaggle(vindr_dir, out)
    run(*base)
    png = out / 'images' / 'train' / 'aaa.png'
    os.utime(png, (1, 1))
    run(*base)
    assert png.stat().st_mtime == 1  # reused
    run(*base, '--resize', 40)
    assert png.stat().st_mtime != 1 and _png(out, 'aaa').shape == (32, 40)  # size changed
    os.utime(png, (1, 1))
    run(*base, '--resize', 40, '--overwrite')
    assert png.stat().st_mtime != 1


def test_cli_with_workers(vindr_dir):
    out = vindr_dir / 'out'
    printed = run(*_kaggle(vindr_dir, out), '--workers', 2, '--resize', 40)
    assert 'train.json: 3 images (1 without boxes), 3 boxes' in printed
    assert _png(out, 'bbb').shape == (40, 40)


# Hostile input through the whole tool: (CSV rows, extra args, error message fragment).
HOSTILE = [
    # an image id leading out of --dicom-dir / --out: refused before any file is touched
    pytest.param(
        ['../evil,No finding,14,R8,,,,'],
        [],
        "field 'image_id': '../evil' cannot be used",
        id='dotdot',
    ),
    pytest.param(
        ['{abs},No finding,14,R8,,,,'], [], 'cannot be used as a file name', id='absolute'
    ),
    # Kaggle train.csv as a gold test file: the raters' boxes would become the truth
    pytest.param(KAGGLE_ROWS, ['--split', 'test'], 'a Kaggle VinBigData CSV', id='kaggle-as-test'),
]


@pytest.mark.parametrize('rows,extra,msg', HOSTILE)
def test_hostile_csv_rows(vindr_dir, rows, extra, msg):
    # a DICOM where the traversal would look for it, so only validation can stop it
    write_dicom(vindr_dir / 'evil.dicom', _halves(8, 8), 'MONOCHROME2')
    csv = vindr_dir / 'hostile.csv'
    abs_id = str(vindr_dir / 'train' / 'aaa')
    csv.write_text('\n'.join([KAGGLE_HEADER, *(r.format(abs=abs_id) for r in rows)]) + '\n')
    out = vindr_dir / 'out'
    args = ['--csv', csv, '--dicom-dir', vindr_dir / 'train', '--out', out, *extra]
    err = refused(*args)
    assert msg in err and str(csv) in err
    assert not list(vindr_dir.rglob('*.png'))  # no image written, inside --out or not


@pytest.mark.parametrize(
    'skip_images',
    [
        pytest.param(True, id='skip-images'),  # sizes from the DICOM headers
        pytest.param(False, id='resume'),  # the PNG exists: only the header is read
    ],
)
def test_corrupt_dicom_names_the_file(vindr_dir, skip_images):
    out = vindr_dir / 'out'
    base = _kaggle(vindr_dir, out)
    if not skip_images:
        run(*base)  # PNGs exist now
    bad = vindr_dir / 'train' / 'bbb.dicom'
    bad.write_bytes(b'\x00' * 10)
    args = [*base, '--skip-images'] if skip_images else base
    assert f'{bad}: cannot read the DICOM header' in refused(*args)


def test_out_is_an_existing_file(vindr_dir):
    out = vindr_dir / 'out.txt'
    out.write_text('not a folder')
    assert f'--out {out} is an existing file' in refused(*_kaggle(vindr_dir, out))
