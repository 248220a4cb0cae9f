"""earl_core.sources.vindr_sample: the generated VinDr-shaped sample (fast)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import earl_core.sources.medmnist_raters as mr
import earl_core.sources.vindr_sample as vs
import earl_core.sources.vindr_sample_images as vsi
from earl_core.boxes import box_iou
from earl_core.sources.vindr import NO_FINDING, VINDR_CLASSES, read_vindr_csv
from earl_core.sources.vindr_sample import (
    SIMILAR_FINDINGS,
    anatomy_clutter,
    draw_vindr_rater_pool,
    make_vindr_sample,
    simulate_reads,
    to_stored_pixels,
)

pydicom = pytest.importorskip('pydicom')


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp('vindr_sample')
    summary = make_vindr_sample(str(out), images=24, seed=3)
    return out, summary


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_layout_and_csvs_parse(sample):
    out, s = sample
    train = read_vindr_csv(str(out / 'train.csv'))
    assert train.fmt == 'kaggle'
    assert len(train.raters) == 24 == len(list((out / 'train').glob('*.dicom')))
    assert all(len(r) == 3 for r in train.raters.values())  # 3 distinct raters per image
    assert {r for rs in train.raters.values() for r in rs} <= {f'R{i}' for i in range(1, 18)}
    rows = _rows(out / 'train.csv')
    no_find = [r for r in rows if r['class_name'] == NO_FINDING]
    assert no_find and all(r['class_id'] == '14' and r['x_min'] == '' for r in no_find)
    assert all(
        r['class_name'] == VINDR_CLASSES[int(r['class_id'])] for r in rows if r not in no_find
    )
    test = read_vindr_csv(str(out / 'annotations' / 'annotations_test.csv'), gold=True)
    assert test.fmt == 'physionet'
    assert len(test.raters) == s['test_images'] == 6 == len(list((out / 'test').glob('*.dicom')))
    assert not set(test.raters) & set(train.raters)


def test_dicom_properties_cover_the_converter_cases(sample):
    out, _ = sample
    seen = set()
    sizes = set()
    for path in sorted((out / 'train').glob('*.dicom')):
        ds = pydicom.dcmread(path)
        seen.add((ds.PhotometricInterpretation, int(ds.BitsStored), 'WindowCenter' in ds))
        sizes.add((int(ds.Columns), int(ds.Rows)))
        assert int(ds.pixel_array.max()) < 2 ** int(ds.BitsStored)
    assert {pi for pi, _, _ in seen} == {'MONOCHROME1', 'MONOCHROME2'}
    assert {b for _, b, _ in seen} == {12, 14, 16}
    assert {w for _, _, w in seen} == {True, False}
    assert len(sizes) >= 2


def test_same_seed_same_bytes_other_seed_differs(sample, tmp_path):
    out, _ = sample
    again = tmp_path / 'again'
    make_vindr_sample(str(again), images=24, seed=3)
    files = sorted(p.relative_to(out) for p in out.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob('*') if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / 'other'
    make_vindr_sample(str(other), images=24, seed=4)
    assert (other / 'train.csv').read_bytes() != (out / 'train.csv').read_bytes()


@pytest.mark.parametrize('kind', sorted({k for k, _ in vsi._CLASS_KIND.values()}))
def test_boxes_point_at_findings(kind):
    """Each finding changes the image inside its true box (what a detector can learn)."""
    rng = np.random.default_rng(0)
    img, anat = vsi.render_chest(rng, 256, 256)
    before = img.copy()
    x0, y0, x1, y1 = vsi._draw_finding(rng, img, anat, kind)
    changed = np.abs(img - before) > 0.01
    if kind == 'heart':  # Cardiomegaly is drawn by render_chest(heart_scale > 1)
        big, anat = vsi.render_chest(np.random.default_rng(0), 256, 256, heart_scale=1.35)
        changed = np.abs(big - before) > 0.01
        x0, y0, x1, y1 = vsi._draw_finding(rng, big, anat, kind)
    ys, xs = np.nonzero(changed)
    assert len(xs) > 0
    inside = (xs >= x0 - 2) & (xs <= x1 + 2) & (ys >= y0 - 2) & (ys <= y1 + 2)
    assert inside.mean() > 0.95, (kind, inside.mean())


@pytest.mark.parametrize(
    'photometric, bits',
    [
        ('MONOCHROME2', 12),  # low stored value = dark
        ('MONOCHROME1', 16),  # inverted: low stored value = bright
    ],
)
def test_stored_pixels_polarity_and_window(photometric, bits):
    stored, (center, width) = to_stored_pixels(np.array([[0.0, 1.0]]), photometric, bits)
    dark, bright = stored[0].tolist()
    assert (bright > dark) == (photometric == 'MONOCHROME2')
    assert center - width / 2 <= min(dark, bright) and max(dark, bright) <= center + width / 2 + 1
    assert max(dark, bright) < 2**bits


_NO_CLUTTER = mr.Clutter(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0, int), np.zeros(0))


def _one_rater(profile):
    """A pool whose rater 0 has ``profile`` and no box bias."""
    pool = draw_vindr_rater_pool(0, np.random.default_rng(0))
    pool.profiles[0] = profile
    pool.bias[0] = 0.0
    return pool


@pytest.mark.parametrize(
    'profile, expect',
    [
        # a perfect rater (sees every finding, exact boxes, no confusion) reports the truth
        (mr.RaterProfile(0.0, -1.0, 0.0, 0.0, 0.0, box_noise=0.0), 'truth'),
        # a rater who misses everything and never boxes clutter reports 'No finding'
        (mr.RaterProfile(1.0, -1.0, 0.0, 0.0, 0.0, box_noise=0.0), 'none'),
        # box noise moves the boxes but keeps them inside the image
        (mr.RaterProfile(0.0, -1.0, 0.0, 0.0, 0.0, box_noise=0.3), 'moved'),
    ],
)
def test_simulate_reads(profile, expect):
    truth = np.array([[10.0, 10, 50, 40], [60, 60, 90, 95]])
    labels = np.array([8, 13])
    [(b, lab)] = simulate_reads(
        np.random.default_rng(0), truth, labels, np.ones(2), _NO_CLUTTER, _one_rater(profile),
        [0], 100, 100,
    )  # fmt: skip
    if expect == 'truth':
        np.testing.assert_array_equal(b, truth)
        np.testing.assert_array_equal(lab, labels)
    elif expect == 'none':
        assert b.shape == (0, 4) and lab.shape == (0,)
    else:
        assert b.shape == (2, 4) and not np.array_equal(b, truth)
        assert b.min() >= 0 and b.max() <= 100


def test_false_positives_and_heterogeneous_raters(sample):
    out, _ = sample
    meta = json.loads((out / 'sample_meta.json').read_text())
    raters = meta['raters']
    assert len(raters) == 17
    assert {r['profile'] for r in raters} == {'expert', 'normal', 'weak'}
    assert [r['profile'] for r in raters[7:10]] == ['expert', 'normal', 'weak']  # R8-R10
    assert len({r['miss'] for r in raters}) > 1 and len({r['bias'] for r in raters}) == 17
    # a rater who boxes every piece of clutter reports findings on a normal image
    rng = np.random.default_rng(1)
    _, anat = vsi.render_chest(rng, 200, 200)
    clutter = anatomy_clutter(rng, anat, np.zeros((0, 4)), 200, 200)
    assert len(clutter.boxes) >= vs.CLUTTER_ITEMS[0]
    pool = _one_rater(mr.RaterProfile(0.0, -1.0, fp=1.0, flip=0.0, double=0.0, box_noise=0.0))
    [(b, lab)] = simulate_reads(
        rng, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), clutter, pool, [0], 200, 200
    )
    assert len(b) == len(clutter.boxes)
    np.testing.assert_array_equal(lab, clutter.apparent)


def test_raters_are_the_vindr_like_model():
    """Experts miss less and box tighter than weak raters; wrong labels are similar ones."""
    pool = draw_vindr_rater_pool(0, np.random.default_rng(0))
    expert, weak = 7, 9  # R8 and R10
    assert pool.profiles[expert] == mr.VINDR_LIKE_PROFILES['expert']
    assert pool.profiles[weak] == mr.VINDR_LIKE_PROFILES['weak']
    rng = np.random.default_rng(0)
    truth = np.array([[100.0, 120, 180, 200], [260, 240, 330, 300], [300, 80, 420, 160]])
    ious = {expert: [], weak: []}  # each box's IoU with the true box it lies on
    missed = {expert: 0, weak: 0}  # true findings without a box of IoU > 0.4
    wrong = []  # (true, reported) class of each wrongly labelled box
    n = 400
    for _ in range(n):
        labels = rng.integers(0, 14, size=3)
        conspicuity = rng.uniform(*vs.CONSPICUITY, size=3)
        reads = simulate_reads(
            rng, truth, labels, conspicuity, _NO_CLUTTER, pool, [expert, weak], 512, 512
        )
        for k, (b, lab) in zip((expert, weak), reads):
            iou = box_iou(b, truth).reshape(len(b), 3)
            missed[k] += int((~(iou > 0.4).any(axis=0)).sum())
            on = iou.argmax(axis=1)
            ious[k] += iou.max(axis=1).tolist()
            wrong += [(int(labels[j]), int(c)) for j, c in zip(on, lab) if c != labels[j]]
    assert missed[expert] < missed[weak], missed
    assert np.median(ious[expert]) > np.median(ious[weak])
    similar = {frozenset(p) for p in SIMILAR_FINDINGS}
    on_pairs = np.mean([frozenset(w) in similar for w in wrong])
    # uniform wrong labels would fall on a similar pair 24 / (14 * 13) = 13 % of the time
    assert len(wrong) > 50 and on_pairs > 0.4, (len(wrong), on_pairs)


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(images=0),  # no training image
        dict(images=2, normal_fraction=1.5),  # not a fraction
        dict(images=2, raters_per_image=18),  # more raters than the pool of 17
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_vindr_sample(str(tmp_path / 'x'), **kwargs)


def test_old_names_warn_and_map():
    # names until 0.2 keep working until 0.3, with a FutureWarning
    from earl_core.sources import vindr_sample

    with pytest.warns(FutureWarning, match='draw_reader_pool'):
        pool = vindr_sample.draw_reader_pool(0, np.random.default_rng(0))
    new = draw_vindr_rater_pool(0, np.random.default_rng(0))
    assert pool.radiologists == new.radiologists
    np.testing.assert_array_equal(pool.bias, new.bias)
    with pytest.warns(FutureWarning, match='ReaderPool'):
        assert vindr_sample.ReaderPool is vindr_sample.VindrRaterPool
    with pytest.warns(FutureWarning, match=r'Radiologist\.rad_id'):
        assert pool.radiologists[7].rad_id == 'R8' == pool.radiologists[7].rater
    with pytest.warns(FutureWarning, match='readers=.*raters_per_image='):
        with pytest.raises(ValueError, match='raters_per_image must lie in'):
            make_vindr_sample('unused', images=2, readers=18)
