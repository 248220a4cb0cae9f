"""Tests of earl_core.fusion.presence_em (PresenceEM): recovery of known rater parameters.

Two data sources:

* :func:`generate`, the model itself: per image Poisson(mu) real objects and Poisson(nu)
  spurious sites, each in its own cell of an 8 x 8 grid (so clustering recovers the sites
  exactly); every reader of the image draws a box on an object with probability s_r and on
  a spurious site with probability f_r, labelled through its confusion row of the object's
  class (or of the site's apparent class, drawn from psi).
* :func:`realistic`, the realistic MED-MNIST raters (``medmnist_raters``): the vindr-like
  profiles (misses, clutter false positives with the clutter's apparent digit, flips with
  a shared look-alike), without hedging double boxes and with near-Gaussian box noise, on
  fully visible digits; then s_r = (1 - miss) * sigmoid((1 - threshold) / tau) and
  f_r = fp are known.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from earl_core.fusion.presence_em import CONFIDENCE_MODES, PresenceEM
from earl_core.sources import medmnist_raters as mr
from earl_core.structures import Detections
from tests.test_core.sim_images import (
    CELL,
    GRID,
    cell_box,
    draw_sites,
    realistic_images,
    site_image,
)

K = 4
#: Recovery tolerance (absolute) of s_r and f_r, the acceptance criterion.
TOL = 0.05
SENS = np.array([0.95, 0.85, 0.7, 0.6, 0.9, 0.75])
FP = np.array([0.05, 0.1, 0.2, 0.3, 0.15, 0.25])
PSI = np.array([0.4, 0.3, 0.2, 0.1])


def confusions(n: int, keep: float = 0.8) -> np.ndarray:
    """(n, K, K) confusion rows: keep the class with prob keep + (1 - keep) / K."""
    return np.stack([keep * np.eye(K) + (1 - keep) / K for _ in range(n)])


def box(cell: int, jitter: np.ndarray) -> list[float]:
    return (cell_box(cell) + jitter).tolist()


def generate(
    n_images: int,
    sens: np.ndarray,
    fp: np.ndarray,
    confusion: np.ndarray,
    mu: float = 3.0,
    nu: float = 3.0,
    raters_per_image: int | None = None,
    seed: int = 0,
) -> tuple[list[Detections], list[dict[int, bool]]]:
    """Images from the model, and per image {cell: is a real object} of its sites."""
    rng = np.random.default_rng(seed)
    pool = len(sens)
    names = [f'r{i}' for i in range(pool)]
    images, sites = [], []
    for i in range(n_images):
        rd, n_obj, cells = draw_sites(rng, pool, raters_per_image, mu, nu)
        n_spur = len(cells) - n_obj
        classes = np.concatenate([rng.integers(0, K, n_obj), rng.choice(K, n_spur, p=PSI)]).astype(
            np.int64
        )
        boxes, labels, rids = [], [], []
        for j, cell in enumerate(cells):
            p_draw = sens if j < n_obj else fp
            for r in rd:
                if rng.random() < p_draw[r]:
                    boxes.append(box(int(cell), rng.normal(0, 1.0, 4)))
                    labels.append(int(rng.choice(K, p=confusion[r, classes[j]])))
                    rids.append(names[r])
        images.append(site_image(boxes, labels, rids, (names[r] for r in rd), i))
        sites.append({int(c): j < n_obj for j, c in enumerate(cells)})
    return images, sites


def realistic(
    n_images: int, profiles: list[mr.RaterProfile], raters_per_image: int, seed: int = 0
) -> list[Detections]:
    """The realistic raters on fully visible digits (1-4) and clutter (5-10) in grid cells."""

    def grid_cells(rng):
        n_d, n_c = int(rng.integers(1, 5)), int(rng.integers(5, 11))
        cells = rng.choice(GRID * GRID, n_d + n_c, replace=False)
        side = rng.integers(16, 29, n_d + n_c)
        x0, y0 = (cells % GRID) * CELL + 2.0, (cells // GRID) * CELL + 2.0
        return np.stack([x0, y0, x0 + side, y0 + side], 1).astype(float), n_d

    return realistic_images(n_images, profiles, raters_per_image, seed, grid_cells, 30.0, 256.0)


def perfect_image(i: int, raters: tuple[str, ...], n_obj: int = 3) -> Detections:
    """Every rater boxes every object with its true label (class = cell % K)."""
    boxes, labels, rids = [], [], []
    for cell in range(i % 5, i % 5 + n_obj):
        for r in raters:
            boxes.append(box(cell * 3, np.zeros(4)))
            labels.append(cell % K)
            rids.append(r)
    return site_image(boxes, labels, rids, raters, i)


@pytest.fixture(scope='module')
def pool_data():
    """3 of 6 raters per image (as VinDr-CXR's 3 of 17), 3000 images."""
    return generate(3000, SENS, FP, confusions(6), raters_per_image=3, seed=7)


@pytest.fixture(scope='module')
def pool_fit(pool_data):
    return PresenceEM(num_classes=K).fit(pool_data[0])


# ----------------------------------------------------------------------------- acceptance
def test_recovers_sensitivity_and_fp_rate(pool_fit):
    em = pool_fit
    assert em.raters_ == tuple(f'r{i}' for i in range(6))
    # Measured (seed 7): max |error| s 0.006, f 0.016; over seeds 100-105 at most 0.016
    # (s) and 0.031 (f).
    np.testing.assert_allclose(em.sensitivity_, SENS, atol=TOL)
    np.testing.assert_allclose(em.fp_rate_, FP, atol=TOL)
    assert em.object_rate_ == pytest.approx(3.0, rel=0.1)
    assert em.spurious_rate_ == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(em.fp_per_image_, 3.0 * FP, atol=0.1)
    np.testing.assert_allclose(em.confusion_, confusions(6), atol=0.08)
    np.testing.assert_allclose(em.spurious_prior_, PSI, atol=0.05)
    assert em.converged_


def test_recovers_every_rater_reading(pool_data):
    """Four raters who all read every image: the same tolerance."""
    images, _ = generate(3000, SENS[:4], FP[:4], confusions(4), seed=3)
    em = PresenceEM(num_classes=K).fit(images)
    # Measured (seed 3): max |error| s 0.003, f 0.008.
    np.testing.assert_allclose(em.sensitivity_, SENS[:4], atol=TOL)
    np.testing.assert_allclose(em.fp_rate_, FP[:4], atol=TOL)


def test_recovers_realistic_raters():
    """The realistic MED-MNIST raters (vindr-like profiles, 2 per profile, 3 of 6 read)."""
    profiles = [
        dataclasses.replace(mr.VINDR_LIKE_PROFILES[name], double=0.0)
        for name in mr.PROFILE_NAMES
        for _ in range(2)
    ]
    images = realistic(2000, profiles, raters_per_image=3)
    em = PresenceEM(num_classes=10).fit(images)
    tau = mr.VINDR_LIKE_POOL['visibility_width']
    sens = np.array([(1 - p.miss) / (1 + np.exp(-(1 - p.threshold) / tau)) for p in profiles])
    fp = np.array([p.fp for p in profiles])
    # Measured: max |error| s 0.007, f 0.018 (truth s 0.95-0.98, f 0.045-0.13); mu 2.50,
    # nu 6.85 (true 2.5, 7.5). nu and f_r trade off (the weakest direction of the
    # likelihood); their product, false positives per image read, is tighter (within 7 %).
    np.testing.assert_allclose(em.sensitivity_, sens, atol=TOL)
    np.testing.assert_allclose(em.fp_rate_, fp, atol=TOL)
    assert em.object_rate_ == pytest.approx(2.5, rel=0.1)
    assert em.spurious_rate_ == pytest.approx(7.5, rel=0.2)
    np.testing.assert_allclose(em.fp_per_image_, 7.5 * fp, rtol=0.15)


def test_presence_is_calibrated(pool_data, pool_fit):
    """P(z = 1) is the share of real objects among the clusters that get it."""
    images, sites = pool_data
    presence, is_obj = [], []
    for im, site in zip(images[:1000], sites[:1000]):
        post = pool_fit.posterior(im)
        for members, p in zip(post.clustered.clusters, post.presence):
            b = im.boxes[members[0]]
            cell = int((b[1] + b[3]) / 2 // CELL) * GRID + int((b[0] + b[2]) / 2 // CELL)
            presence.append(p)
            is_obj.append(site[cell])
    presence, is_obj = np.array(presence), np.array(is_obj)
    # Measured (first 500 images): bins [0, .2) [.2, .5) [.5, .8) [.8, 1]: mean presence
    # 0.078 / 0.346 / 0.656 / 0.966, share of real objects 0.068 / 0.356 / 0.643 / 0.962;
    # AUC 0.953.
    for lo, hi in ((0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.01)):
        m = (presence >= lo) & (presence < hi)
        assert m.sum() > 100
        assert presence[m].mean() == pytest.approx(is_obj[m].mean(), abs=0.05)
    rank = np.argsort(np.argsort(presence)) + 1
    n1, n0 = is_obj.sum(), (~is_obj).sum()
    auc = (rank[is_obj].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    assert auc > 0.93


def test_objective_never_decreases(pool_fit):
    trace = np.array(pool_fit.objective_trace_)
    assert np.all(np.diff(trace) >= -1e-6 * np.abs(trace[1:]))
    assert pool_fit.log_objective_ == trace[-1]


# ----------------------------------------------------------------------------- posteriors
def test_perfect_raters_give_certain_posteriors():
    raters = ('a', 'b', 'c')
    images = [perfect_image(i, raters) for i in range(200)]
    em = PresenceEM(num_classes=K).fit(images)
    assert np.all(em.sensitivity_ > 0.99)
    for im in images[:5]:
        post = em.posterior(im)
        assert len(post) == 3
        assert np.all(post.presence > 0.99)
        assert np.all(post.label_posterior.max(1) > 0.99)
        np.testing.assert_array_equal(post.labels, im.labels[:: len(raters)])
        assert np.all(post.confidence('posterior') > 0.98)


def test_more_drawers_more_presence(pool_fit):
    b = box(0, np.zeros(4))
    one = Detections.from_raters(np.array([b]), np.array([1]), np.array(['r0']), ('r0', 'r1', 'r2'))
    two = Detections.from_raters(
        np.array([b, b]), np.array([1, 1]), np.array(['r0', 'r1']), one.raters
    )
    three = Detections.from_raters(
        np.array([b, b, b]), np.array([1, 1, 1]), np.array(['r0', 'r1', 'r2']), one.raters
    )
    p = [pool_fit.posterior(im).presence[0] for im in (one, two, three)]
    assert p[0] < p[1] < p[2]
    # A singleton by the sensitive, rarely wrong r0 beats one by the noisy r3.
    lone3 = Detections.from_raters(
        np.array([b]), np.array([1]), np.array(['r3']), ('r0', 'r1', 'r3')
    )
    lone0 = Detections.from_raters(
        np.array([b]), np.array([1]), np.array(['r0']), ('r0', 'r1', 'r3')
    )
    assert pool_fit.posterior(lone0).presence[0] > pool_fit.posterior(lone3).presence[0]


def test_confidence_modes(pool_data, pool_fit):
    post = pool_fit.posterior(pool_data[0][0])
    assert CONFIDENCE_MODES == ('presence', 'posterior')
    np.testing.assert_array_equal(post.confidence('presence'), post.presence)
    np.testing.assert_allclose(
        post.confidence('posterior'), post.presence * post.label_posterior.max(1)
    )
    np.testing.assert_allclose(post.label_posterior.sum(1), 1.0)
    assert np.all((post.presence >= 0) & (post.presence <= 1))
    with pytest.raises(ValueError, match='confidence mode'):
        post.confidence('agreement')


def test_unseen_rater_gets_the_mean_rater(pool_fit):
    b = box(0, np.zeros(4))
    im = Detections.from_raters(np.array([b]), np.array([2]), np.array(['new']), ('new', 'r0'))
    post = pool_fit.posterior(im)
    assert len(post) == 1 and 0.0 < post.presence[0] < 1.0


# ----------------------------------------------------------------------------- edge cases
def test_one_rater():
    images, _ = generate(300, SENS[:1], FP[:1], confusions(1), seed=1)
    em = PresenceEM(num_classes=K).fit(images)
    assert em.raters_ == ('r0',)
    for arr in (em.sensitivity_, em.fp_rate_):
        assert arr.shape == (1,) and np.all((arr > 0) & (arr < 1))
    post = em.posterior(images[0])
    assert np.all((post.presence >= 0) & (post.presence <= 1))


def test_rater_who_reads_but_never_draws():
    sens, fp = np.array([0.9, 0.8, 0.7, 0.6, 0.0]), np.array([0.2, 0.3, 0.1, 0.25, 0.0])
    images, _ = generate(1500, sens, fp, confusions(5), seed=2)
    em = PresenceEM(num_classes=K).fit(images)
    assert em.images_read_.tolist() == [1500] * 5
    # Measured: s 0.0004 and f 0.0001 for the silent rater (prior pseudo-counts only);
    # the others within 0.022.
    assert em.sensitivity_[4] < 0.01 and em.fp_rate_[4] < 0.01
    np.testing.assert_allclose(em.sensitivity_[:4], sens[:4], atol=TOL)
    np.testing.assert_allclose(em.fp_rate_[:4], fp[:4], atol=TOL)


def test_images_with_no_boxes():
    raters = ('a', 'b')
    empty = [
        Detections.from_raters(
            np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, str), raters, image_id=i
        )
        for i in range(10)
    ]
    em = PresenceEM(num_classes=K).fit(empty)
    assert em.num_clusters_ == 0 and em.converged_
    # Only the Gamma smoothing speaks: measured mu 0.05, nu 0.15.
    assert em.object_rate_ < 0.2 and em.spurious_rate_ < 0.2
    post = em.posterior(empty[0])
    assert post.presence.shape == (0,) and post.label_posterior.shape == (0, K)
    assert post.confidence('posterior').shape == (0,)
    # Empty images among boxed ones lower the object rate per image.
    images = [perfect_image(i, raters) for i in range(20)]
    rate = PresenceEM(num_classes=K).fit(images).object_rate_
    assert PresenceEM(num_classes=K).fit(images + empty * 2).object_rate_ < 0.6 * rate


def test_deterministic_and_order_free(pool_data):
    images = pool_data[0][:400]
    a = PresenceEM(num_classes=K).fit(images)
    b = PresenceEM(num_classes=K).fit(images)
    for name in ('sensitivity_', 'fp_rate_', 'confusion_', 'class_prior_'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.n_iter_ == b.n_iter_
    c = PresenceEM(num_classes=K).fit(images[::-1])
    np.testing.assert_allclose(c.sensitivity_, a.sensitivity_, atol=1e-6)
    np.testing.assert_allclose(c.fp_rate_, a.fp_rate_, atol=1e-6)


def test_summary_is_json(pool_fit):
    s = pool_fit.summary(class_names=['a', 'b', 'c', 'd'])
    json.dumps(s)
    assert set(s['sensitivity']) == set(pool_fit.raters_)
    assert s['classes'] == ['a', 'b', 'c', 'd']
    assert len(s['confusion']['r0']) == K
    with pytest.raises(ValueError, match='names'):
        pool_fit.summary(class_names=['a'])
    assert PresenceEM(**pool_fit.get_params()).get_params() == pool_fit.get_params()


def test_num_classes_inferred():
    em = PresenceEM().fit([perfect_image(i, ('a', 'b')) for i in range(10)])
    assert em.num_classes_ == K


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(num_classes=0),
        dict(iou_thr=1.0),
        dict(linkage='ward'),
        dict(max_iter=0),
        dict(tol=0),
        dict(sensitivity_prior=1.0),
        dict(fp_prior=0.0),
        dict(rate_prior_strength=0),
        dict(prior_strength=-1),
        dict(prior_diag=1.5),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        PresenceEM(**kwargs)


def test_not_fitted_and_empty_fit():
    with pytest.raises(ValueError, match='not fitted'):
        PresenceEM().posterior(perfect_image(0, ('a',)))
    with pytest.raises(ValueError, match='no images'):
        PresenceEM().fit([])
    nobody = Detections.from_raters(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, str), ())
    with pytest.raises(ValueError, match='no rater'):
        PresenceEM(num_classes=K).fit([nobody])
