"""The label part of RaterEM held against crowd-kit's Dawid-Skene (crowd-kit 1.4.2).

Both see the same matched clusters: :func:`~earl_core.fusion.em.cluster_images` clusters the
images once, and the crowd-kit table has one task per cluster and one row per rater who read its
image, the label of the rater's box there or K (``no_obj``) where the rater drew nothing
(:attr:`~earl_core.fusion.em.ClusteredImage.observations`), the observations RaterEM fits.

What agrees, to rounding (1e-9 or better):

* the start (soft majority vote, ``no_obj`` votes included) and the M-step: our confusion
  rows are crowd-kit's ``_m_step`` with our Dirichlet prior added as its ``initial_error``
  (strategy ``addition``);
* the E-step on real objects: given the same pi and theta, the posterior over the K real
  classes, conditioned on the cluster being a real object, is crowd-kit's;
* the whole fit where nobody misses and nobody draws a false box, once our one pseudo-count
  per class in pi is given to crowd-kit as one golden task per class, and our confusion
  prior is made negligible: posteriors, confusion rows and proficiency.

What differs, pinned below and in docs/aggregators.md: the ``no_obj`` likelihood (ours:
one rater's false positive, 0 where two or more drew; crowd-kit: a confusion row like any
class), the confusion prior and pi's pseudo-counts (crowd-kit has none), and the stopping
rule (ours: no parameter moves more than ``tol`` = 1e-4; crowd-kit: the ELBO per
observation gains less than 1e-5).

Data: :func:`tests.test_core.test_bayes_raters.generate`, sites on a grid (the clusters are
the sites), K = 4 classes, 6 raters, 3 raters per image.
"""

from __future__ import annotations

import numpy as np
import pytest

from earl_core.fusion.em import RaterEM, cluster_images
from tests.test_core.test_bayes_raters import FP, SIGMA, THETA, K, confusion, generate

pd = pytest.importorskip('pandas')
crowdkit = pytest.importorskip('crowdkit.aggregation')
DawidSkene, MajorityVote = crowdkit.DawidSkene, crowdkit.MajorityVote

K1 = K + 1  # labels 0..K-1 and no_obj = K
LABELS = pd.Index(range(K1), name='label')
SEEDS = (0, 1, 2)
IMAGES = 100
#: Where nobody misses or draws a false box: each rater keeps the class with these
#: probabilities, boxes 1 % of the side off (the sites are the clusters).
CLEAN = dict(
    theta=np.stack([confusion(keep, 0.0) for keep in (0.9, 0.8, 0.6, 0.7, 0.85, 0.5)]),
    fp=np.zeros(6),
    sigma=np.full(6, 0.01),
)


def data(seed: int, clean: bool = False):
    """Images, their clusters, the crowd-kit table, task names, and per image its sites."""
    params = CLEAN if clean else dict(theta=THETA, fp=FP, sigma=SIGMA)
    images, sites = generate(IMAGES, raters_per_image=3, seed=seed, **params)
    clustered = cluster_images(images, K, iou_thr=0.4)
    rows, tasks = [], []
    for i, ci in enumerate(clustered):
        for j, labels in enumerate(ci.observations.tolist()):
            tasks.append(f'{i}:{j}')
            rows += [(tasks[-1], r, lab) for r, lab in zip(ci.raters, labels)]
    frame = pd.DataFrame(rows, columns=['task', 'worker', 'label'])
    return images, clustered, frame, tasks, sites


def posteriors(em: RaterEM, images, clustered) -> np.ndarray:
    """(J, K+1) our posterior of every cluster, in task order."""
    return np.concatenate([em.posterior(im, ci)[1] for im, ci in zip(images, clustered)])


def errors_frame(theta: np.ndarray, raters) -> pd.DataFrame:
    """crowd-kit's error layout (rows: worker, said; columns: true) of theta (R, true, said)."""
    index = pd.MultiIndex.from_tuples(
        [(r, lab) for r in raters for lab in range(K1)], names=['worker', 'label']
    )
    return pd.DataFrame(theta.transpose(0, 2, 1).reshape(-1, K1), index=index, columns=LABELS)


def from_errors(errors: pd.DataFrame, raters) -> np.ndarray:
    """(R, true, said) of crowd-kit's errors; labels a worker never said are 0."""
    return np.stack(
        [
            errors.loc[r].reindex(index=range(K1), columns=range(K1)).fillna(0.0).to_numpy().T
            for r in raters
        ]
    )


def prior_counts(strength: float = 2.0, diag: float = 0.7) -> np.ndarray:
    """RaterEM's Dirichlet pseudo-counts per confusion row (docs/aggregators.md, step 5)."""
    alpha = np.full((K1, K1), strength * (1.0 - diag) / K)
    np.fill_diagonal(alpha, strength * diag)
    return alpha


def drawers(clustered) -> np.ndarray:
    """(J,) raters who drew in each cluster."""
    return np.concatenate(
        [np.bincount(ci.box_cluster, minlength=len(ci.clusters)) for ci in clustered]
    )


@pytest.mark.parametrize('seed', SEEDS)
def test_start_and_m_step_are_crowdkit_with_the_prior_added(seed):
    """One iteration from the soft majority vote: theta = crowd-kit's M-step of its
    MajorityVote probabilities plus our prior; pi = (sum of votes + 1) / (J + K + 1)."""
    images, clustered, frame, tasks, _ = data(seed)
    em = RaterEM(num_classes=K, max_iter=1).fit(images, clustered=clustered)
    vote = MajorityVote().fit_predict_proba(frame).reindex(columns=LABELS, fill_value=0.0)
    alpha = errors_frame(np.repeat(prior_counts()[None], len(em.raters_), 0), em.raters_)
    theirs = DawidSkene._m_step(frame, vote, alpha, 'addition')
    np.testing.assert_allclose(em.confusion_, from_errors(theirs, em.raters_), rtol=0, atol=1e-12)
    pi = (vote.loc[tasks].sum().to_numpy() + 1.0) / (len(tasks) + K1)
    np.testing.assert_allclose(em.class_prior_, pi, rtol=0, atol=1e-12)


@pytest.mark.parametrize('seed', SEEDS)
def test_e_step_agrees_on_real_objects_and_differs_in_the_no_obj_likelihood(seed):
    """Our fitted pi and theta through crowd-kit's E-step. Real objects: the same posterior
    given that the cluster is one. no_obj: ours is 0 where two or more raters drew
    (crowd-kit's is not); where one rater c drew (label l) the odds of no_obj differ by
    exactly the likelihood ratio lambda_c phi_c[l] / sum_read lambda_r : prod_r
    theta_r[no_obj, l_r]."""
    images, clustered, frame, tasks, _ = data(seed)
    em = RaterEM(num_classes=K).fit(images, clustered=clustered)
    ours = posteriors(em, images, clustered)
    priors = pd.Series(em.class_prior_.copy(), index=LABELS)
    theirs = DawidSkene._e_step(frame, priors, errors_frame(em.confusion_, em.raters_))
    theirs = theirs.reindex(columns=LABELS).loc[tasks].to_numpy()

    def given_object(q):
        return q[:, :K] / q[:, :K].sum(1, keepdims=True)

    np.testing.assert_allclose(given_object(ours), given_object(theirs), rtol=0, atol=1e-12)

    n_drew = drawers(clustered)
    assert (n_drew >= 2).any() and (n_drew == 1).any()
    assert (ours[n_drew >= 2, K] == 0).all()
    assert (theirs[n_drew >= 2, K] > 0).all()
    # One drawer: the ratio of the no_obj odds is the ratio of the no_obj likelihoods.
    col = {r: i for i, r in enumerate(em.raters_)}
    want = []
    for ci in clustered:
        cols = np.array([col[r] for r in ci.raters])
        for labels in ci.observations:
            drew = np.flatnonzero(labels < K)
            if len(drew) != 1:
                continue
            c, lab = cols[drew[0]], labels[drew[0]]
            spurious = em.fp_rate_[c] / em.fp_rate_[cols].sum() * em.fp_label_dist_[c, lab]
            want.append(np.log(spurious) - np.log(em.confusion_[cols, K, labels]).sum())
    one = n_drew == 1

    def log_odds(q):
        return np.log(q[one, K]) - np.log1p(-q[one, K])

    np.testing.assert_allclose(log_odds(ours) - log_odds(theirs), want, rtol=0, atol=1e-9)


@pytest.mark.parametrize('seed', SEEDS)
def test_whole_fit_is_crowdkit_given_one_golden_task_per_class(seed):
    """Nobody misses, nobody draws a false box (every cluster drawn by all the raters who read it):
    with a negligible confusion prior, N iterations of ours are N of crowd-kit's once
    crowd-kit sees one extra task per class whose label is known (golden), which is our
    one pseudo-count per class in pi. After iteration N - 1 (crowd-kit's fit of N - 1
    iterations, then its own E-step): the same posteriors, confusion rows, proficiency."""
    n_iter = 20
    images, clustered, frame, tasks, _ = data(seed, clean=True)
    assert (drawers(clustered) == 3).all()  # the regime the identity needs
    em = RaterEM(num_classes=K, prior_strength=1e-9, tol=1e-15, max_iter=n_iter)
    em.fit(images, clustered=clustered)
    assert em.n_iter_ == n_iter
    gold = [f'gold{k}' for k in range(K)]
    golden = pd.DataFrame({'task': gold, 'worker': gold, 'label': range(K)})
    ds = DawidSkene(n_iter=n_iter - 1, tol=-np.inf)
    ds.fit(pd.concat([frame, golden], ignore_index=True), pd.Series(range(K), index=gold))
    assert len(ds.loss_history_) == n_iter - 1
    theirs_theta = from_errors(ds.errors_, em.raters_)
    np.testing.assert_allclose(em.confusion_[:, :K], theirs_theta[:, :K], rtol=0, atol=1e-8)
    # pi: ours (S_k + 1) / (J + K + 1), crowd-kit's (S_k + 1) / (J + K): one constant ratio.
    pi = ds.priors_.reindex(LABELS, fill_value=0.0).to_numpy()
    ratio = (len(tasks) + K) / (len(tasks) + K1)
    np.testing.assert_allclose(em.class_prior_[:K], pi[:K] * ratio, rtol=1e-9, atol=0)
    q = DawidSkene._e_step(frame, ds.priors_, ds.errors_).reindex(columns=LABELS, fill_value=0.0)
    ours = posteriors(em, images, clustered)
    np.testing.assert_allclose(ours, q.loc[tasks].to_numpy(), rtol=0, atol=1e-8)
    diag = np.diagonal(theirs_theta, axis1=1, axis2=2)[:, :K]
    proficiency = (diag * pi[:K]).sum(1) / pi[:K].sum()
    np.testing.assert_allclose(em.proficiency_, proficiency, rtol=0, atol=1e-8)


def site_classes(images, clustered, sites) -> np.ndarray:
    """(J,) the simulated class of each cluster's site (K for a spurious site)."""
    out = []
    for im, ci, image_sites in zip(images, clustered, sites):
        centres = np.array([(b[:2] + b[2:]) / 2 for b, _ in image_sites]).reshape(-1, 2)
        for members in ci.clusters:
            box = im.boxes[members].mean(0)
            nearest = np.abs(centres - (box[:2] + box[2:]) / 2).sum(1).argmin()
            out.append(image_sites[nearest][1] if image_sites[nearest][1] >= 0 else K)
    return np.array(out)


@pytest.mark.parametrize('seed', SEEDS)
def test_defaults_differ_where_raters_miss_and_draw_false_boxes(seed):
    """Both at their defaults on raters who miss (5-30 %) and draw false boxes: crowd-kit's
    no_obj row, learnt from clusters somebody drew, rejects real objects that two or
    three raters drew (docs/aggregators.md, `em` step 4); ours rejects none of them and
    labels at least as many clusters right."""
    images, clustered, frame, tasks, sites = data(seed)
    em = RaterEM(num_classes=K).fit(images, clustered=clustered)
    ds = DawidSkene().fit(frame)
    ours = posteriors(em, images, clustered).argmax(1)
    theirs = ds.probas_.reindex(columns=LABELS, fill_value=0.0).loc[tasks].to_numpy().argmax(1)
    truth = site_classes(images, clustered, sites)
    shared = (drawers(clustered) >= 2) & (truth < K)
    assert not (ours[shared] == K).any()
    assert (theirs[shared] == K).sum() >= 1
    assert (ours == truth).mean() >= (theirs == truth).mean()
