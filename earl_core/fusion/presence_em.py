"""Presence-aware rater EM: sensitivity, false-positive propensity and label confusion.

The model (equations and its limits in ``docs/presence_em.md``):

* **Sites.** On image i, real objects occur as a Poisson process with mean ``mu`` per image
  and *spurious sites* (places that invite a false positive: clutter, artefacts) with mean
  ``nu``. A real object has a class y ~ ``class_prior_``.
  A spurious site has an *apparent* class a ~ ``spurious_prior_`` (what it looks like).
* **Raters.** Each rater r who reads the image draws a box on a real object with
  probability s_r (sensitivity) and on a spurious site with probability f_r (false-positive
  propensity); either box is labelled l with probability pi_r[y, l] (confusion; y the
  class, or the apparent class a). Raters are independent given the site.
* **Clusters.** The boxes of an image are clustered class-agnostically exactly as in
  :mod:`earl_core.fusion.em` (:mod:`earl_core.fusion.rater_model`); a cluster is one site,
  with a latent presence z (1 = real object, 0 = spurious) and, if present, a class y.
  Only sites on which at least one rater drew a box become clusters (truncation); with
  Poisson sites this is exact: the clusters of each kind are again Poisson with means
  ``mu * (1 - prod_r (1 - s_r))`` and ``nu * (1 - prod_r (1 - f_r))``, and the posterior of
  a cluster needs no truncation factor.
* **EM.** E-step: P(z = 1, y | cluster) from the raters who drew *and* the raters who read
  and drew nothing. M-step (closed form, MAP with Beta / Dirichlet / Gamma smoothing):
  mu and nu exactly given s, f; s_r and f_r by the missing-site step (the expected number of
  sites nobody drew, ``mu * prod_r (1 - s_r)`` per image, counts as sites that every rater
  missed); pi_r and the two class priors from expected counts. Each step increases the
  MAP objective (:attr:`PresenceEM.log_objective_`).

Everything is deterministic (initialisation from the raters' votes; no randomness).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earl_core.fusion.base import check_number
from earl_core.fusion.cluster_table import ClusterTable, bincount_rows
from earl_core.fusion.rater_model import (
    ClusteredImage,
    ClusterPosterior,
    RaterModelBase,
    clusters_for,
    confusion_prior,
    image_table,
    infer_num_classes,
    logsumexp_rows,
)
from earl_core.structures import Detections

__all__ = ['CONFIDENCE_MODES', 'PresenceEM', 'PresencePosterior']

#: Confidence modes of :meth:`PresencePosterior.confidence`: ``'presence'`` c = P(z = 1),
#: ``'posterior'`` c = P(z = 1) * max_y P(y | z = 1) = max_y P(z = 1, y).
CONFIDENCE_MODES = ('presence', 'posterior')


@dataclass
class PresencePosterior(ClusterPosterior):
    """Posterior of the clusters of one image.

    Args:
        clustered (ClusteredImage): the clusters, raters and (J, R) observations.
        presence (np.ndarray): (J,) float64 P(z = 1 | observations).
        label_posterior (np.ndarray): (J, K) float64 P(y | z = 1, observations), rows sum
            to 1.
    """

    presence: np.ndarray
    label_posterior: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """(J,) int64 most probable class of each cluster (ties: lowest index)."""
        return self.label_posterior.argmax(1).astype(np.int64)

    def confidence(self, mode: str = 'presence') -> np.ndarray:
        """Per-cluster confidence c.

        Args:
            mode (str): ``'presence'`` = P(z = 1) (default), ``'posterior'`` =
                P(z = 1) * max_y P(y | z = 1).

        Returns:
            np.ndarray: (J,) float64 in [0, 1].
        """
        if mode == 'presence':
            return self.presence.copy()
        if mode == 'posterior':
            if len(self) == 0:
                return np.zeros(0)
            return self.presence * self.label_posterior.max(1)
        raise ValueError(f'confidence mode must be one of {CONFIDENCE_MODES}, got {mode!r}')


@dataclass
class _Params:
    """Model parameters; rater arrays are indexed by observation column."""

    mu: float
    nu: float
    class_prior: np.ndarray  # (K,)
    sens: np.ndarray  # (C,)
    fp: np.ndarray  # (C,)
    confusion: np.ndarray  # (C, K, K)
    spurious_prior: np.ndarray  # (K,)


def _label_loglik(t: ClusterTable, confusion: np.ndarray) -> np.ndarray:
    """(U, K): sum over the raters who drew of log pi_r[c, l_r], for every class c."""
    log_confusion = np.log(confusion)[t.entry_column, :, t.entry_label]  # (entries, K)
    return t.per_pattern(log_confusion)


def _label_counts(t: ClusterTable, weights: np.ndarray) -> np.ndarray:
    """(C, K, K) N_r[c, l] = sum of weights[j, c] over r's boxes labelled l, every cluster
    of a pattern counted (``weights`` (U, K) per pattern)."""
    k, n_c = t.k, t.num_columns
    w = (weights * t.pattern_count[:, None])[t.entry_pattern]
    out = bincount_rows(t.entry_column * k + t.entry_label, w, n_c * k)  # [column, said, true]
    return out.reshape(n_c, k, k).transpose(0, 2, 1)


def _log_joint(t: ClusterTable, p: _Params) -> np.ndarray:
    """log P(obs_j, z_j = 1, y_j = c) in column c < K, log P(obs_j, z_j = 0, a_j = c) in
    column K + c, up to a constant per image, per pattern; (U, 2K) float64.

    Column c of the table uses the rater parameters of index c of ``p``. The raters who
    drew nothing contribute log(1 - s_r): summed over the rater set, less the entries'
    raters, who contribute log s_r instead.
    """

    def detection(rate: np.ndarray) -> np.ndarray:
        hit, miss = np.log(rate), np.log1p(-rate)
        return t.per_set(miss)[t.pattern_set] + t.per_pattern((hit - miss)[t.entry_column])

    labels = _label_loglik(t, p.confusion)
    obj = math.log(p.mu) + np.log(p.class_prior)[None, :] + detection(p.sens)[:, None]
    spur = math.log(p.nu) + np.log(p.spurious_prior)[None, :] + detection(p.fp)[:, None]
    return np.concatenate([obj + labels, spur + labels], axis=1)


def _normalise(logj: np.ndarray) -> np.ndarray:
    """Softmax of each row."""
    return np.exp(logj - logsumexp_rows(logj)[:, None])


class PresenceEM(RaterModelBase):
    """EM over class-agnostic box clusters with per-rater sensitivity and false positives.

    See the module docstring and ``docs/presence_em.md`` for the model. After :meth:`fit`
    the estimates are in the attributes below (rater arrays in ``raters_`` order).

    Args:
        num_classes (int | None): K. None = 1 + the largest label seen in :meth:`fit`.
        sensitivity_prior (float): prior mean of s_r, in (0, 1). Defaults to 0.8.
        fp_prior (float): prior mean of f_r, in (0, 1). Defaults to 0.2.
        rate_prior_strength (float): Beta pseudo-observations of s_r and of f_r (> 0).
            Defaults to 2.0.
        prior_strength (float): Dirichlet pseudo-observations per confusion row (> 0).
            Defaults to 2.0.
        prior_diag (float): share of a confusion row's pseudo-observations on the
            diagonal, in [0, 1]. Defaults to 0.7.
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): cluster linkage, see
            :func:`~earl_core.fusion.matching.cluster_boxes`. Defaults to ``'average'``.
        max_iter (int): EM iterations at most. Defaults to 1000.
        tol (float): stop when no parameter changes by more than ``tol`` (rates mu, nu
            relative) in an iteration. Defaults to 1e-5.

    Attributes:
        raters_ (tuple[str, ...]): raters seen in fit, sorted.
        num_classes_ (int): K.
        object_rate_ (float): mu, real objects per image (drawn or not).
        spurious_rate_ (float): nu, spurious sites per image (drawn or not).
        class_prior_ (np.ndarray): (K,) class prior of real objects.
        sensitivity_ (np.ndarray): (R,) s_r = P(r draws a box on a real object it reads).
        fp_rate_ (np.ndarray): (R,) f_r = P(r draws a box on a spurious site it reads).
        fp_per_image_ (np.ndarray): (R,) nu * f_r, expected false positives per image read.
        confusion_ (np.ndarray): (R, K, K) pi_r[true, said] given drawn (the true class of
            an object, the apparent class of a spurious site).
        spurious_prior_ (np.ndarray): (K,) psi, apparent class of spurious sites.
        images_read_ (np.ndarray): (R,) images each rater read in the fit data.
        num_clusters_ (int): clusters in the fit data.
        n_iter_ (int): EM iterations run.
        converged_ (bool): whether ``tol`` was reached.
        log_objective_ (float): MAP objective (observed-data log-likelihood + log prior,
            up to a constant) at the end.
        objective_trace_ (list[float]): the objective after each iteration
            (non-decreasing).

    Examples:
        >>> im = Detections.from_raters(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...     np.array([1, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> em = PresenceEM(num_classes=2).fit([im])
        >>> post = em.posterior(im)
        >>> em.raters_, post.labels.tolist(), bool(post.presence[0] > 0.5)
        (('a', 'b'), [1], True)
    """

    param_names = ('sensitivity_prior', 'fp_prior', 'rate_prior_strength')

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        sensitivity_prior: float = 0.8,
        fp_prior: float = 0.2,
        rate_prior_strength: float = 2.0,
        prior_strength: float = 2.0,
        prior_diag: float = 0.7,
        iou_thr: float = 0.4,
        linkage: str = 'average',
        max_iter: int = 1000,
        tol: float = 1e-5,
    ) -> None:
        self._check_shared(num_classes, iou_thr, linkage, max_iter, tol, prior_strength, prior_diag)
        where = 'PresenceEM'
        self.sensitivity_prior = check_number(
            sensitivity_prior, 'sensitivity_prior', where, 0, 1, open_low=True, open_high=True
        )
        self.fp_prior = check_number(
            fp_prior, 'fp_prior', where, 0, 1, open_low=True, open_high=True
        )
        self.rate_prior_strength = check_number(
            rate_prior_strength, 'rate_prior_strength', where, 0, open_low=True
        )

    # ------------------------------------------------------------------ helpers
    def _confusion_prior(self, k: int) -> np.ndarray:
        """Dirichlet pseudo-counts (K, K): prior_diag on the diagonal, the rest even."""
        return confusion_prior(k, self.prior_diag, self.prior_strength)

    def _beta(self, mean: float) -> tuple[float, float]:
        return self.rate_prior_strength * mean, self.rate_prior_strength * (1.0 - mean)

    @staticmethod
    def _init_posterior(t: ClusterTable) -> np.ndarray:
        """Votes: P(z = 1) = share of the raters who drew, classes by their label shares."""
        k = t.k
        label_counts = np.zeros((t.num_patterns, k))
        np.add.at(label_counts, (t.entry_pattern, t.entry_label), 1.0)
        n_draw = t.drawers()
        share = label_counts / np.maximum(n_draw, 1)[:, None]
        w = (n_draw / np.maximum(t.raters_read(), 1))[:, None]
        return np.concatenate([share * w, share * (1.0 - w)], axis=1)

    @staticmethod
    def _no_draw(t: ClusterTable, rate: np.ndarray) -> np.ndarray:
        """(S,) P(no rater of the set draws a box on a site), rate = s or f."""
        return np.exp(t.per_set(np.log1p(-rate)))

    def _m_step(self, t: ClusterTable, gamma: np.ndarray, old: _Params) -> _Params:
        """Closed-form MAP updates given the cluster posteriors and the old s, f."""
        k = t.k
        count = t.pattern_count
        n_img = t.set_images
        w, u = gamma[:, :k].sum(1), gamma[:, k:].sum(1)
        # Rates given the old s, f: observed kind-count over the expected share drawn.
        p0_obj = self._no_draw(t, old.sens)  # (S,) P(no rater draws an object)
        p0_fp = self._no_draw(t, old.fp)
        mu = ((w * count).sum() + 0.5) / ((n_img * (1.0 - p0_obj)).sum() + 1.0)
        nu = ((u * count).sum() + 0.5) / ((n_img * (1.0 - p0_fp)).sum() + 1.0)
        # Sites nobody drew, per image, count as missed by every rater of the image.
        miss_obj = t.per_column(n_img * mu * p0_obj)  # (C,)
        miss_fp = t.per_column(n_img * nu * p0_fp)

        def drawn(x: np.ndarray) -> np.ndarray:  # (C,) sum of x over the clusters r drew in
            return np.bincount(
                t.entry_column, weights=(x * count)[t.entry_pattern], minlength=t.num_columns
            )

        a, b = self._beta(self.sensitivity_prior)
        sens = (drawn(w) + a) / (t.per_column(t.set_total(w)) + miss_obj + a + b)
        a, b = self._beta(self.fp_prior)
        fp = (drawn(u) + a) / (t.per_column(t.set_total(u)) + miss_fp + a + b)
        class_prior = ((gamma[:, :k] * count[:, None]).sum(0) + 1.0) / ((w * count).sum() + k)
        spurious_prior = ((gamma[:, k:] * count[:, None]).sum(0) + 1.0) / ((u * count).sum() + k)
        # One confusion per rater: how it labels what it sees, object or spurious site.
        confusion = _label_counts(t, gamma[:, :k] + gamma[:, k:]) + self._confusion_prior(k)[None]
        confusion /= confusion.sum(2, keepdims=True)
        return _Params(float(mu), float(nu), class_prior, sens, fp, confusion, spurious_prior)

    def _objective(self, t: ClusterTable, p: _Params, logj: np.ndarray) -> float:
        """Observed-data log-likelihood + log prior (up to a constant); ``logj`` is
        :func:`_log_joint` of the parameters ``p``."""
        k = p.class_prior.shape[0]
        n_img = t.set_images
        ll = float((logsumexp_rows(logj) * t.pattern_count).sum())
        ll -= p.mu * (n_img * (1.0 - self._no_draw(t, p.sens))).sum()
        ll -= p.nu * (n_img * (1.0 - self._no_draw(t, p.fp))).sum()
        lp = 0.5 * math.log(p.mu) - p.mu + 0.5 * math.log(p.nu) - p.nu
        for mean, x in ((self.sensitivity_prior, p.sens), (self.fp_prior, p.fp)):
            a, b = self._beta(mean)
            lp += float((a * np.log(x) + b * np.log1p(-x)).sum())
        lp += float(np.log(p.class_prior).sum() + np.log(p.spurious_prior).sum())
        lp += float((self._confusion_prior(k)[None] * np.log(p.confusion)).sum())
        return ll + lp

    # ------------------------------------------------------------------ fit
    def fit(
        self, images: Sequence[Detections], clustered: Sequence[ClusteredImage] | None = None
    ) -> PresenceEM:
        """Estimate sensitivities, false-positive propensities, confusions and rates.

        Memory and time grow with the boxes and the (image, rater) pairs, not with
        clusters x raters; clusters with the same observations are one row of the EM
        (:mod:`earl_core.fusion.cluster_table`).

        Args:
            images (Sequence[Detections]): the multi-rater dataset (images nobody drew on
                count: they are evidence of misses and of no false positive).
            clustered (Sequence[ClusteredImage] | None): the images' clusters, made by
                :func:`~earl_core.fusion.rater_model.cluster_image` with this model's K, ``iou_thr``
                and ``linkage``. None: clustered here.

        Returns:
            PresenceEM: self.
        """
        images = list(images)
        if not images:
            raise ValueError('PresenceEM.fit: no images')
        k = infer_num_classes(images, self.num_classes)
        raters, col, _, clustered, table = self._fit_table(images, clustered, k)
        n_r = len(raters)
        del clustered
        params = _Params(
            mu=1.0,
            nu=1.0,
            class_prior=np.full(k, 1.0 / k),
            sens=np.full(n_r, self.sensitivity_prior),
            fp=np.full(n_r, self.fp_prior),
            confusion=np.zeros((n_r, k, k)),
            spurious_prior=np.full(k, 1.0 / k),
        )
        gamma = self._init_posterior(table)
        trace: list[float] = []
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007  (it is reported)
            new = self._m_step(table, gamma, params)
            logj = _log_joint(table, new)
            gamma = _normalise(logj)
            trace.append(self._objective(table, new, logj))
            delta = max(
                abs(new.mu - params.mu) / new.mu,
                abs(new.nu - params.nu) / new.nu,
                float(np.abs(new.sens - params.sens).max()),
                float(np.abs(new.fp - params.fp).max()),
                float(np.abs(new.class_prior - params.class_prior).max()),
                float(np.abs(new.confusion - params.confusion).max()),
                float(np.abs(new.spurious_prior - params.spurious_prior).max()),
            )
            params = new
            if delta < self.tol:
                converged = True
                break

        self.raters_ = raters
        self._rater_index = col
        self._params = params
        self._with_mean = None
        self.num_classes_ = k
        self.object_rate_ = params.mu
        self.spurious_rate_ = params.nu
        self.class_prior_ = params.class_prior
        self.sensitivity_ = params.sens
        self.fp_rate_ = params.fp
        self.fp_per_image_ = params.nu * params.fp
        self.confusion_ = params.confusion
        self.spurious_prior_ = params.spurious_prior
        self.images_read_ = np.rint(table.images_read()).astype(np.int64)
        self.num_clusters_ = table.num_clusters
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)
        self.objective_trace_ = trace
        self.log_objective_ = trace[-1]
        return self

    # ------------------------------------------------------------------ inference
    def _rater_params(self, raters: Sequence[str]) -> _Params:
        """Parameters with rater arrays in ``raters`` order; a rater not seen in fit gets
        the mean of the fitted raters (a typical rater)."""
        p = self._params
        sens, fp, confusion = self._typical_rows(raters, p.sens, p.fp, p.confusion)
        return _Params(p.mu, p.nu, p.class_prior, sens, fp, confusion, p.spurious_prior)

    def posterior(
        self, image: Detections, clustered: ClusteredImage | None = None
    ) -> PresencePosterior:
        """Cluster an image and compute each cluster's presence and label posteriors.

        Args:
            image (Detections): any image (need not be in the fit data).
            clustered (ClusteredImage | None): its clusters, as :meth:`fit` takes them.
                None: clustered here.

        Returns:
            PresencePosterior: clusters, P(z = 1) (J,) and P(y | z = 1) (J, K).
        """
        self._check_fitted()
        k = self.num_classes_
        ci = clusters_for([image], None if clustered is None else [clustered], k,
                          self.iou_thr, self.linkage)[0]  # fmt: skip
        if not ci.clusters:
            return PresencePosterior(ci, np.zeros(0), np.zeros((0, k)))
        table = image_table(ci)
        logj = _log_joint(table, self._rater_params(ci.raters))
        presence = _normalise(logj)[:, :k].sum(1)
        # P(y | z = 1) from the object columns alone: exact even when P(z = 1) underflows.
        labels = _normalise(logj[:, :k])
        return PresencePosterior(ci, presence[table.cluster_pattern], labels[table.cluster_pattern])

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-serialisable per-rater and global estimates.

        Args:
            class_names (Sequence[str] | None): K names. Defaults to ``'0'..'K-1'``.

        Returns:
            dict: raters, classes, object_rate, spurious_rate, class_prior, and per rater
            sensitivity, fp_rate, fp_per_image, confusion (rows = true class),
            images_read; spurious_prior; num_clusters, n_iter, converged, log_objective.
        """
        self._check_fitted()
        names = self._class_names(class_names)

        per_rater = {
            'sensitivity': self.sensitivity_,
            'fp_rate': self.fp_rate_,
            'fp_per_image': self.fp_per_image_,
            'confusion': self.confusion_,
            'images_read': self.images_read_,
        }
        out: dict = {
            'raters': list(self.raters_),
            'classes': names,
            'object_rate': float(self.object_rate_),
            'spurious_rate': float(self.spurious_rate_),
            'class_prior': self.class_prior_.tolist(),
            'spurious_prior': self.spurious_prior_.tolist(),
        }
        for key, arr in per_rater.items():
            out[key] = {r: np.asarray(v).tolist() for r, v in zip(self.raters_, arr)}
        out.update(
            num_clusters=self.num_clusters_,
            n_iter=self.n_iter_,
            converged=self.converged_,
            log_objective=self.log_objective_,
        )
        return out
