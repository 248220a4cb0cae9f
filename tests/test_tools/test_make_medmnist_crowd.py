"""The crowd presets of tools/make_medmnist.py: K raters in four groups, 5 readers per image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from earl_core.sources import medmnist_raters as mr
from tests.test_tools.test_make_medmnist import _gen, _hashes, _refused, _settings, mnist  # noqa: F401

SMALL = ('--num-train', 40, '--num-val', 2, '--num-test', 2)


@pytest.mark.parametrize(
    'preset, pool, mix',
    [
        ('crowd-k5', 5, [1, 2, 1, 1]),  # every rater reads every image
        ('crowd-k100', 100, [10, 40, 30, 20]),  # each reads 5 %
        ('crowd-k1000', 1000, [100, 400, 300, 200]),  # each reads 0.5 %
    ],
)
def test_crowd_presets_settings(mnist, preset, pool, mix):  # noqa: F811
    s = _settings('--preset', preset)
    assert (s['rater_pool'], s['num_raters'], s['rater_mix']) == (pool, 5, mix)
    assert (s['variant'], s['canvas'], s['clutter']) == ('realistic', 96, [5, 10])


def test_crowd_same_seed_same_bytes_any_workers_other_seed_differs(mnist, tmp_path):  # noqa: F811
    a = _hashes(_gen(tmp_path / 'a', '--preset', 'crowd-k100', '--seed', 3, *SMALL))
    b = _hashes(_gen(tmp_path / 'b', '--preset', 'crowd-k100', '--seed', 3, '--workers', 2, *SMALL))
    c = _hashes(_gen(tmp_path / 'c', '--preset', 'crowd-k100', '--seed', 4, *SMALL))
    assert a == b
    assert a['train.json'] != c['train.json']


def test_crowd_groups_shares_and_bad_raters(mnist, tmp_path):  # noqa: F811
    """crowd-k100 on 300 images: the groups as stated, 5 readers per image (so each rater
    reads 5 / 100 of the images on average), and the bad raters' labels at random (wrong on
    ~90 % of their boxes on digits) while the other groups' are wrong on < 15 %."""
    out = _gen(
        tmp_path / 'k100', '--preset', 'crowd-k100', '--seed', 1, '--num-train', 300,
        '--num-val', 1, '--num-test', 1,
    )  # fmt: skip
    meta = json.loads((out / 'meta.json').read_text())
    multi = json.loads((out / 'train.json').read_text())
    groups = [r['profile'] for r in meta['raters'].values()]
    assert [groups.count(g) for g in mr.GROUP_NAMES] == [10, 40, 30, 20]
    bad = [rid for rid, r in meta['raters'].items() if r['profile'] == 'bad']
    assert all(meta['raters'][rid]['random_labels'] is True for rid in bad)
    assert 'random_labels' not in meta['raters']['R1']  # unchanged record for the others
    assert all(len(set(im['annotators'])) == 5 for im in multi['images'])
    per = meta['realised']['per_rater']
    read = np.array([per[r]['images_read'] for r in per])
    assert read.sum() == 5 * 300 and abs(read.mean() / 300 - 0.05) < 1e-9

    def wrong(ids):
        boxed = sum(per[r]['digits_boxed'] for r in ids)
        return sum(per[r]['flipped'] for r in ids) / boxed

    assert 0.8 <= wrong(bad) <= 0.95  # 9 of 10 random digits are wrong
    assert wrong([r for r in per if r not in bad]) < 0.15


def test_random_labels_are_uniform_and_other_streams_untouched():
    """A bad profile draws each label uniformly; a profile without random_labels draws the
    same numbers as before the field existed (the vindr-like files are unchanged)."""
    rng = np.random.default_rng(0)
    boxes = np.array([[10.0, 10, 30, 30]] * 2000)
    labels = np.zeros(2000, np.int64)
    clutter = mr.Clutter(
        np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    )
    bias, confusion = mr.draw_rater_pool(0, [mr.BAD_PROFILE], 0.0, 0.8)
    res = mr.simulate_realistic_raters(
        rng,
        boxes,
        labels,
        np.ones(2000),
        clutter,
        [mr.BAD_PROFILE],
        bias,
        confusion,
        1,
        0.04,
        1.5,
        96.0,
    )
    counts = np.bincount(res.labels, minlength=10)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    assert mr.profile_dict(mr.VINDR_LIKE_PROFILES['weak']).keys() == {
        'miss', 'threshold', 'fp', 'flip', 'double', 'box_noise', 'box_bias'
    }  # fmt: skip


@pytest.mark.parametrize(
    'args, message',
    [
        (('--rater-mix', 1, 1, 1, 1, 1), '--rater-mix takes 3 or 4 counts'),  # five groups
        (('--rater-mix', 1, 1), '--rater-mix takes 3 or 4 counts'),  # two
        (('--rater-mix', 10, 40, 30, 10), 'sums to 90 but the pool has 100'),
        (('--rater-mix', 10, 40, 60, -10), '--rater-mix counts must be >= 0'),
    ],
)
def test_bad_rater_mix_is_an_error_naming_the_flag(mnist, args, message):  # noqa: F811
    assert message in _refused('--out', 'x', '--preset', 'crowd-k100', *args, '--print-args')


@pytest.mark.slow
def test_crowd_k1000_preset_fast(mnist, tmp_path):  # noqa: F811
    import time

    t0 = time.time()
    out = _gen(tmp_path / 'k1000', '--preset', 'crowd-k1000', '--seed', 0)
    assert time.time() - t0 < 60  # measured ~10 s on 2 cores
    assert len(json.loads(Path(out / 'meta.json').read_text())['raters']) == 1000
