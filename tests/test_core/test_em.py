"""Tests of earl_core.fusion.em (RaterEM) and the ``em`` aggregator.

Includes a small self-contained simulator: random true boxes, raters who keep the class
with probability p and otherwise pick uniformly among the other classes and "no object"
(a miss), box jitter Gaussian with std (1 - p) * 0.4 * sqrt(area) per coordinate, and a
false-positive box with probability (1 - p) * 0.3 per image (the authors' MED-MNIST noise
model, docs/medmnist.md, at a small scale).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from earl_core.boxes import box_iou
from earl_core.fusion.aggregators import build_aggregator
from earl_core.fusion.em import RaterEM, cluster_image
from earl_core.fusion.matching import match_boxes
from earl_core.structures import Detections

K = 5


def simulate(n_images=300, profs=(0.9, 0.9, 0.5), seed=0, canvas=256.0, jitter=0.4, fp=0.3):
    """Return (images, truth) with truth[i] = (boxes (n, 4), labels (n,))."""
    rng = np.random.default_rng(seed)
    raters = tuple(f'r{i}' for i in range(len(profs)))
    images, truth = [], []
    for i in range(n_images):
        n_obj = int(rng.integers(1, 5))
        tb: list[np.ndarray] = []
        while len(tb) < n_obj:  # nearly disjoint true boxes, 24-64 px
            w, h = rng.uniform(24, 64, 2)
            x, y = rng.uniform(0, canvas - w), rng.uniform(0, canvas - h)
            b = np.array([x, y, x + w, y + h])
            if not tb or box_iou(b[None], np.array(tb)).max() <= 0.05:
                tb.append(b)
        t_boxes, t_labels = np.array(tb), rng.integers(0, K, n_obj)
        boxes, labels, rids = [], [], []
        for r, p in zip(raters, profs):
            for b, lab in zip(t_boxes, t_labels):
                if rng.random() >= p:
                    lab = rng.choice([c for c in range(K + 1) if c != lab])
                    if lab == K:  # 'no object': the rater missed it
                        continue
                s = np.sqrt((b[2] - b[0]) * (b[3] - b[1]))
                nb = b + rng.normal(0, (1 - p) * jitter * s, 4)
                boxes.append([min(nb[0], nb[2] - 2), min(nb[1], nb[3] - 2), nb[2], nb[3]])
                labels.append(lab)
                rids.append(r)
            if rng.random() < (1 - p) * fp:
                w, h = rng.uniform(24, 64, 2)
                x, y = rng.uniform(0, canvas - w), rng.uniform(0, canvas - h)
                boxes.append([x, y, x + w, y + h])
                labels.append(int(rng.integers(0, K)))
                rids.append(r)
        images.append(
            Detections.from_raters(
                np.array(boxes, float).reshape(-1, 4),
                np.array(labels, np.int64),
                np.array(rids, dtype=str),
                raters,
                canvas,
                canvas,
                i,
            )
        )
        truth.append((t_boxes, t_labels))
    return images, truth


def score(results, truth):
    """mean_iou: each true box's IoU to its one-to-one matched fused box (greedy, any
    overlap, class-agnostic; 0 if unmatched), averaged over true boxes. label_acc: share of
    fused boxes matched (IoU > 0.4, one-to-one, class-agnostic) to a true box of the same
    label - duplicates and false positives count as wrong. recall: share of true boxes
    matched (IoU > 0.4) by a fused box of the right label."""
    ious, right, n_fused, n_true = [], 0, 0, 0
    for res, (tb, tl) in zip(results, truth):
        ia, ib, iou = match_boxes(tb, res.boxes, 0.0)
        got = np.zeros(len(tb))
        got[ia] = iou
        ious.extend(got.tolist())
        ia, ib, _ = match_boxes(tb, res.boxes, 0.4)
        right += int(np.sum(res.labels[ib] == tl[ia]))
        n_fused += len(res)
        n_true += len(tb)
    return {
        'mean_iou': float(np.mean(ious)),
        'label_acc': right / max(n_fused, 1),
        'recall': right / n_true,
    }


@pytest.fixture(scope='module')
def sim():
    return simulate()


@pytest.fixture(scope='module')
def fitted(sim):
    images, _ = sim
    return build_aggregator('em').fit(images)


# ----------------------------------------------------------------------------- acceptance
def test_em_ranks_raters(fitted):
    prof = fitted.proficiency
    # measured: r0 0.886, r1 0.893, r2 0.461 (true p 0.9 / 0.9 / 0.5; the bad rater's
    # most jittered boxes leave their cluster, which also counts as a miss)
    assert prof['r2'] < 0.55
    assert min(prof['r0'], prof['r1']) > 0.8
    sigma = fitted.box_error
    # true relative jitter std (1 - p) * 0.4: 0.04 / 0.04 / 0.20; measured 0.041 / 0.040 /
    # 0.184 (the bad rater's worst boxes fall out of their clusters, biasing it low)
    for r, true in (('r0', 0.04), ('r1', 0.04), ('r2', 0.2)):
        assert sigma[r] == pytest.approx(true, rel=0.25)
    assert fitted.model.converged_


@pytest.mark.parametrize(
    'profs',
    [
        # The acceptance set: one rater much worse. Measured (seed 0, 300 images, 750 true
        # boxes, 2224 rater boxes):
        #   em : mean_iou 0.9088, label_acc 0.9357, recall 0.9307, 0.995 boxes per object
        #   wbf: mean_iou 0.8755, label_acc 0.5211, recall 0.8880, 1.704 boxes per object
        (0.9, 0.9, 0.5),
        # Equal raters (the paper's p = 0.8). Measured (719 true boxes):
        #   em : mean_iou 0.8612, label_acc 0.9096, recall 0.9096, 1.000 boxes per object
        #   wbf: mean_iou 0.8549, label_acc 0.5269, recall 0.8317, 1.579 boxes per object
        (0.8, 0.8, 0.8),
    ],
)
def test_em_fusion_beats_wbf(profs, sim):
    images, truth = sim if profs == (0.9, 0.9, 0.5) else simulate(profs=profs)
    m_em = score(build_aggregator('em').fuse_all(images), truth)
    m_wbf = score(build_aggregator('wbf', iou_thr=0.4).fuse_all(images), truth)
    assert m_em['mean_iou'] >= m_wbf['mean_iou']
    assert m_em['label_acc'] >= m_wbf['label_acc']
    assert m_em['recall'] >= m_wbf['recall']


# ----------------------------------------------------------------------------- model
def _flipped_image() -> Detections:
    """Two boxes on one object, r1 with the other class; r2 read the image, drew nothing."""
    return Detections.from_raters(
        np.array([[0, 0, 10, 10], [1, 0, 11, 10.0]]),
        np.array([0, 1]),
        np.array(['r0', 'r1']),
        ('r0', 'r1', 'r2'),
    )


def test_flipped_label_same_cluster():
    # r1 flips the class: still one cluster, observation 1 for r1, no_obj (= K) for r2.
    ci = cluster_image(_flipped_image(), num_classes=3)
    assert [c.tolist() for c in ci.clusters] == [[0, 1]]
    assert ci.observations.tolist() == [[0, 1, 3]]


def test_old_rater_names_of_the_clusters_warn():
    # ClusteredImage.readers / .box_reader, ClusterTable.readers() and
    # build_cluster_table(box_reader=) (until 0.2) keep working until 0.3, with a FutureWarning
    from earl_core.fusion.cluster_table import build_cluster_table
    from earl_core.fusion.rater_model import image_table

    ci = cluster_image(_flipped_image(), num_classes=3)
    assert ci.raters == ('r0', 'r1', 'r2') and ci.box_rater.tolist() == [0, 1]
    with pytest.warns(FutureWarning, match=r'ClusteredImage\.readers.*ClusteredImage\.raters'):
        assert ci.readers == ci.raters
    with pytest.warns(FutureWarning, match=r'ClusteredImage\.box_reader.*\.box_rater'):
        assert ci.box_reader is ci.box_rater
    table = image_table(ci)
    with pytest.warns(FutureWarning, match=r'ClusterTable\.readers\(\).*raters_read\(\)'):
        assert table.readers().tolist() == table.raters_read().tolist() == [3.0]
    args = (3, 3, [np.arange(3)], [ci.box_cluster])
    rest = dict(box_label=[ci.box_label], num_clusters=[len(ci.clusters)])
    new = build_cluster_table(*args, box_rater=[ci.box_rater], **rest)
    with pytest.warns(FutureWarning, match=r'build_cluster_table: box_reader=.*box_rater='):
        old = build_cluster_table(*args, box_reader=[ci.box_rater], **rest)
    assert old.raters_read().tolist() == new.raters_read().tolist()
    assert old.entry_label.tolist() == new.entry_label.tolist()


def test_posterior_matches_model_formula(sim, fitted):
    images, _ = sim
    m = fitted.model
    idx = {r: i for i, r in enumerate(m.raters_)}
    n_checked = {'single': 0, 'multi': 0}
    for im in images[:10]:
        ci, q = m.posterior(im)
        for j in range(len(ci.clusters)):
            said = ci.observations[j]
            # objects: P(z = k) * prod over raters who read it theta_r[k, said] (Dawid-Skene rows)
            p = np.array(
                [
                    m.class_prior_[k]
                    * np.prod([m.confusion_[idx[r]][k, said[c]] for c, r in enumerate(ci.raters)])
                    for k in range(K)
                ]
                + [0.0]
            )
            # spurious: one rater c drew (label l): pi_K * lambda_c / sum lambda * phi_c[l]
            drew = [c for c in range(len(ci.raters)) if said[c] < K]
            if len(drew) == 1:
                c = drew[0]
                lam = m.fp_rate_[[idx[r] for r in ci.raters]]
                rc = idx[ci.raters[c]]
                p[K] = m.class_prior_[K] * lam[c] / lam.sum() * m.fp_label_dist_[rc, said[c]]
                n_checked['single'] += 1
            else:
                n_checked['multi'] += 1
                assert q[j, K] == 0.0  # two raters never draw the same false box
            np.testing.assert_allclose(q[j], p / p.sum(), rtol=1e-9, atol=1e-15)
    assert min(n_checked.values()) > 0
    assert np.allclose(m.confusion_.sum(2), 1.0)
    assert m.class_prior_.sum() == pytest.approx(1.0)


def test_deterministic(sim):
    images, _ = sim
    a = RaterEM().fit(images[:80])
    b = RaterEM().fit(images[:80])
    np.testing.assert_array_equal(a.confusion_, b.confusion_)
    np.testing.assert_array_equal(a.box_sigma_, b.box_sigma_)


def test_em_aggregator_outputs(sim, fitted):
    images, truth = sim
    res = fitted(images[0])
    k = fitted.model.num_classes_
    assert res.num_raters == 3
    assert len(res.members) == len(res) == len(res.member_raters)
    for j in range(len(res)):
        labels_in = images[0].labels[res.members[j]]
        assert res.agreement[j] == int(np.sum(labels_in == res.labels[j]))
        assert 0 < res.confidence[j] <= 1  # posterior
        assert res.labels[j] < k
        assert all(type(r) is str for r in res.member_raters[j])
    # The lone one-rater boxes of flipped classes (which WBF keeps) are mostly gone:
    # about one fused box per true object (measured 0.995).
    n_fused = sum(len(fitted(im)) for im in images)
    n_true = sum(len(t[0]) for t in truth)
    assert 0.95 < n_fused / n_true < 1.1


@pytest.mark.parametrize(
    'mode, check',
    [
        ('agreement', lambda r: np.array_equal(r.confidence, r.agreement.astype(np.float32))),
        ('agreement_ratio', lambda r: np.allclose(r.confidence, r.agreement / 3)),
        ('fused_score', lambda r: np.all((r.confidence >= 0) & (r.confidence <= 1))),
    ],
)
def test_em_confidence_modes(sim, mode, check):
    images, _ = sim
    agg = build_aggregator('em', confidence=mode).fit(images[:60])
    assert all(check(agg(im)) for im in images[:20])


def test_em_hand_unanimous():
    # Three raters agree on every object of 20 images: label = theirs, T = 3, box = mean.
    rng = np.random.default_rng(1)
    ims = []
    for i in range(20):
        b = np.array([[10, 10, 40, 40.0]]) + rng.uniform(-1, 1, (3, 4))
        lab = i % 2
        ims.append(
            Detections.from_raters(
                b, np.array([lab] * 3), np.array(['a', 'b', 'c']), ('a', 'b', 'c')
            )
        )
    agg = build_aggregator('em', box_averaging='uniform').fit(ims)
    for i, im in enumerate(ims):
        res = agg(im)
        assert res.labels.tolist() == [i % 2]
        assert res.agreement.tolist() == [3]
        assert res.confidence[0] > 0.95
        np.testing.assert_allclose(res.boxes[0], im.boxes.mean(0), rtol=1e-5)


def test_unseen_rater_and_errors(fitted):
    im = Detections.from_raters(
        np.array([[0, 0, 30, 30.0]]), np.array([2]), np.array(['new']), ('new', 'r0')
    )
    res = fitted(im)  # the unseen rater uses the mean confusion matrix: no error
    assert res.num_raters == 2
    with pytest.raises(ValueError, match='fitted first'):
        build_aggregator('em')(im)
    with pytest.raises(ValueError, match='num_classes'):
        fitted(
            Detections.from_raters(
                np.array([[0, 0, 3, 3.0]]), np.array([9]), np.array(['r0']), ('r0',)
            )
        )
    with pytest.raises(ValueError, match='not fitted'):
        RaterEM().posterior(im)


def test_summary_is_json(fitted):
    s = fitted.model.summary([f'c{i}' for i in range(K)])
    json.dumps(s, allow_nan=False)
    assert s['classes'][-1] == 'no_obj'
    assert len(s['confusion']['r0']) == K + 1
    with pytest.raises(ValueError, match='names'):
        fitted.model.summary(['a'])


@pytest.mark.parametrize(
    'seed, linkage, iou_thr',
    [
        (0, 'average', 0.4),  # the default
        (1, 'complete', 0.3),
        (2, 'single', 0.5),
    ],
)
def test_cluster_images_equals_cluster_image(seed, linkage, iou_thr):
    # All images clustered at once == each image on its own (clusters, per-box cluster).
    from earl_core.fusion.em import cluster_images

    images, _ = simulate(n_images=40, seed=seed, jitter=1.0, fp=1.0)
    images.append(Detections.from_raters(np.zeros((0, 4)), [], [], ('r0',), image_id='empty'))
    for im, got in zip(images, cluster_images(images, K, iou_thr, linkage)):
        ref = cluster_image(im, K, iou_thr, linkage)
        assert [c.tolist() for c in got.clusters] == [c.tolist() for c in ref.clusters]
        assert np.array_equal(got.box_cluster, ref.box_cluster)
        assert np.array_equal(got.observations, ref.observations)


@pytest.mark.parametrize(
    'bad',
    [
        dict(num_classes=0),  # no class
        dict(num_classes=True),  # a bool is no class count
        dict(iou_thr=1.0),  # nothing could match
        dict(linkage='ward'),
        dict(max_iter=0),
        dict(tol=0),
        dict(prior_strength=float('inf')),
        dict(prior_diag=1.5),
        dict(prior_diag='0.7'),  # a number read as text
    ],
)
def test_rater_models_share_one_check_of_their_shared_parameters(bad):
    """RaterEM, PresenceEM and BayesRaterModel refuse a bad shared parameter with the same
    message after their name (RaterModelBase._check_shared)."""
    from earl_core.fusion.bayes import BayesRaterModel
    from earl_core.fusion.presence_em import PresenceEM

    messages = set()
    for cls in (RaterEM, PresenceEM, BayesRaterModel):
        with pytest.raises(ValueError) as err:
            cls(**bad)
        text = str(err.value)
        assert text.startswith(f'{cls.__name__}: {next(iter(bad))} must be'), text
        messages.add(text[len(cls.__name__) :])
    assert len(messages) == 1, messages
