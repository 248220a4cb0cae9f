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
  :mod:`earl_mmdet.core.em` (:func:`~earl_mmdet.core.em.cluster_image`); a cluster is one
  site, with a latent presence z (1 = real object, 0 = spurious) and, if present, a class y.
  Only sites on which at least one reader drew a box become clusters (truncation); with
  Poisson sites this is exact: the clusters of each kind are again Poisson with means
  ``mu * (1 - prod_r (1 - s_r))`` and ``nu * (1 - prod_r (1 - f_r))``, and the posterior of
  a cluster needs no truncation factor.
* **EM.** E-step: P(z = 1, y | cluster) from the readers who drew *and* the readers who read
  and drew nothing. M-step (closed form, MAP with Beta / Dirichlet / Gamma smoothing):
  mu and nu exactly given s, f; s_r and f_r by the missing-site step (the expected number of
  sites nobody drew, ``mu * prod_r (1 - s_r)`` per image, counts as sites that every reader
  missed); pi_r and the two class priors from expected counts. Each step increases the
  MAP objective (:attr:`PresenceEM.log_objective_`).

Everything is deterministic (initialisation from the readers' votes; no randomness).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .aggregator_base import check_number
from .box_ops import check_iou_thr
from .coco_io import RaterBoxes
from .em import ClusteredImage, cluster_image
from .matching import LINKAGES

__all__ = ['CONFIDENCE_MODES', 'PresenceEM', 'PresencePosterior']

#: Confidence modes of :meth:`PresencePosterior.confidence`: ``'presence'`` c = P(z = 1),
#: ``'posterior'`` c = P(z = 1) * max_y P(y | z = 1) = max_y P(z = 1, y).
CONFIDENCE_MODES = ('presence', 'posterior')
#: Constructor arguments, as reported by :meth:`PresenceEM.get_params`.
_PARAMS = (
    'num_classes',
    'iou_thr',
    'linkage',
    'max_iter',
    'tol',
    'sensitivity_prior',
    'fp_prior',
    'rate_prior_strength',
    'prior_strength',
    'prior_diag',
)


@dataclass
class PresencePosterior:
    """Posterior of the clusters of one image.

    Args:
        clustered (ClusteredImage): the clusters, readers and (J, R) observations.
        presence (np.ndarray): (J,) float64 P(z = 1 | observations).
        label_posterior (np.ndarray): (J, K) float64 P(y | z = 1, observations), rows sum
            to 1.
    """

    clustered: ClusteredImage
    presence: np.ndarray
    label_posterior: np.ndarray

    def __len__(self) -> int:
        return int(self.presence.shape[0])

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


class _Observations:
    """Observations of clusters laid out for the vectorised E- and M-steps.

    Args:
        obs (np.ndarray): (J, C) int64: the label each column's rater gave the cluster, K
            when it read the image and drew nothing there, -1 when it did not read it.
        k (int): K.
    """

    def __init__(self, obs: np.ndarray, k: int) -> None:
        self.k = k
        self.num_clusters, self.num_columns = obs.shape
        drawn = (obs >= 0) & (obs < k)
        self.drawn = drawn.astype(np.float64)  # (J, C)
        self.missed = (obs == k).astype(np.float64)  # read, no box
        self.readers = self.drawn + self.missed
        # One entry per drawn box: cluster, column, label.
        self.box_cluster, self.box_column = np.nonzero(drawn)
        self.box_label = obs[self.box_cluster, self.box_column]

    def label_loglik(self, confusion: np.ndarray) -> np.ndarray:
        """(J, K): sum over the raters who drew of log pi_r[c, l_r], for every class c."""
        log_conf = np.log(confusion)[self.box_column, :, self.box_label]  # (boxes, K)
        out = np.empty((self.num_clusters, self.k))
        for c in range(self.k):
            out[:, c] = np.bincount(
                self.box_cluster, weights=log_conf[:, c], minlength=self.num_clusters
            )
        return out

    def label_counts(self, weights: np.ndarray) -> np.ndarray:
        """(C, K, K) N_r[c, l] = sum of weights[j, c] over r's boxes labelled l."""
        flat = self.box_column * self.k + self.box_label
        size = self.num_columns * self.k
        out = np.stack(
            [
                np.bincount(flat, weights=weights[self.box_cluster, c], minlength=size)
                for c in range(self.k)
            ],
            axis=1,
        )  # (C * K_said, K_true)
        return out.reshape(self.num_columns, self.k, self.k).transpose(0, 2, 1)


def _log_joint(o: _Observations, p: _Params) -> np.ndarray:
    """log P(obs_j, z_j = 1, y_j = c) in column c < K, log P(obs_j, z_j = 0, a_j = c) in
    column K + c, up to a constant per image; (J, 2K) float64.

    Column c of the observations uses the rater parameters of index c of ``p``.
    """
    det_obj = o.drawn @ np.log(p.sens) + o.missed @ np.log1p(-p.sens)
    det_fp = o.drawn @ np.log(p.fp) + o.missed @ np.log1p(-p.fp)
    labels = o.label_loglik(p.confusion)
    obj = math.log(p.mu) + np.log(p.class_prior)[None, :] + det_obj[:, None]
    spur = math.log(p.nu) + np.log(p.spurious_prior)[None, :] + det_fp[:, None]
    return np.concatenate([obj + labels, spur + labels], axis=1)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of a (J, M) array, (J,)."""
    if a.shape[0] == 0:
        return np.zeros(0)
    mx = a.max(1, keepdims=True)
    return (mx + np.log(np.exp(a - mx).sum(1, keepdims=True)))[:, 0]


def _normalise(logj: np.ndarray) -> np.ndarray:
    """Softmax of each row."""
    return np.exp(logj - _logsumexp(logj)[:, None])


class PresenceEM:
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
            :func:`~earl_mmdet.core.matching.cluster_boxes`. Defaults to ``'average'``.
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
        >>> im = RaterBoxes(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...                 np.array([1, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> em = PresenceEM(num_classes=2).fit([im])
        >>> post = em.posterior(im)
        >>> em.raters_, post.labels.tolist(), bool(post.presence[0] > 0.5)
        (('a', 'b'), [1], True)
    """

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
        where = 'PresenceEM'
        self.iou_thr = check_iou_thr(iou_thr, where)
        self.tol = check_number(tol, 'tol', where, 0, open_low=True)
        self.sensitivity_prior = check_number(
            sensitivity_prior, 'sensitivity_prior', where, 0, 1, open_low=True, open_high=True
        )
        self.fp_prior = check_number(
            fp_prior, 'fp_prior', where, 0, 1, open_low=True, open_high=True
        )
        self.rate_prior_strength = check_number(
            rate_prior_strength, 'rate_prior_strength', where, 0, open_low=True
        )
        self.prior_strength = check_number(
            prior_strength, 'prior_strength', where, 0, open_low=True
        )
        self.prior_diag = check_number(prior_diag, 'prior_diag', where, 0, 1)
        others = dict(
            num_classes=(
                num_classes,
                num_classes is None or (isinstance(num_classes, int) and num_classes >= 1),
                'a positive int or None',
            ),
            linkage=(linkage, linkage in LINKAGES, f'one of {LINKAGES}'),
            max_iter=(max_iter, isinstance(max_iter, int) and max_iter >= 1, 'an int >= 1'),
        )
        for name, (value, ok, what) in others.items():
            if not ok:
                raise ValueError(f'PresenceEM: {name} must be {what}, got {value!r}')
            setattr(self, name, value)
        self.raters_: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if self.raters_ is None:
            raise ValueError('PresenceEM is not fitted: call fit(images) first')

    def _confusion_prior(self, k: int) -> np.ndarray:
        """Dirichlet pseudo-counts (K, K): prior_diag on the diagonal, the rest even."""
        if k == 1:
            return np.full((1, 1), self.prior_strength)
        alpha = np.full((k, k), (1.0 - self.prior_diag) / (k - 1))
        np.fill_diagonal(alpha, self.prior_diag)
        return alpha * self.prior_strength

    def _beta(self, mean: float) -> tuple[float, float]:
        return self.rate_prior_strength * mean, self.rate_prior_strength * (1.0 - mean)

    def _table(
        self, images: Sequence[RaterBoxes], k: int
    ) -> tuple[tuple[str, ...], _Observations, np.ndarray]:
        """Cluster every image; observations over all raters and the (I, R) read matrix."""
        clustered = [cluster_image(im, k, self.iou_thr, self.linkage) for im in images]
        raters = tuple(sorted({r for ci in clustered for r in ci.readers}))
        if not raters:
            raise ValueError('PresenceEM.fit: no rater read any image')
        col = {r: i for i, r in enumerate(raters)}
        read = np.zeros((len(clustered), len(raters)), bool)
        rows = []
        for i, ci in enumerate(clustered):
            cols = [col[r] for r in ci.readers]
            read[i, cols] = True
            if ci.observations.shape[0]:
                full = np.full((ci.observations.shape[0], len(raters)), -1, np.int64)
                full[:, cols] = ci.observations
                rows.append(full)
        obs = np.concatenate(rows) if rows else np.zeros((0, len(raters)), np.int64)
        return raters, _Observations(obs, k), read.astype(np.float64)

    @staticmethod
    def _init_posterior(o: _Observations) -> np.ndarray:
        """Votes: P(z = 1) = share of the readers who drew, classes by their label shares."""
        k = o.k
        votes = np.zeros((o.num_clusters, k))
        np.add.at(votes, (o.box_cluster, o.box_label), 1.0)
        n_draw = o.drawn.sum(1)
        share = votes / np.maximum(n_draw, 1)[:, None]
        w = (n_draw / np.maximum(o.readers.sum(1), 1))[:, None]
        return np.concatenate([share * w, share * (1.0 - w)], axis=1)

    def _m_step(
        self, o: _Observations, read: np.ndarray, gamma: np.ndarray, old: _Params
    ) -> _Params:
        """Closed-form MAP updates given the cluster posteriors and the old s, f."""
        k = o.k
        w, u = gamma[:, :k].sum(1), gamma[:, k:].sum(1)
        # Rates given the old s, f: observed kind-count over the expected share drawn.
        p0_obj = np.exp(read @ np.log1p(-old.sens))  # (I,) P(no reader draws an object)
        p0_fp = np.exp(read @ np.log1p(-old.fp))
        mu = (w.sum() + 0.5) / ((1.0 - p0_obj).sum() + 1.0)
        nu = (u.sum() + 0.5) / ((1.0 - p0_fp).sum() + 1.0)
        # Sites nobody drew, per image, count as missed by every reader of the image.
        miss_obj = read.T @ (mu * p0_obj)  # (R,)
        miss_fp = read.T @ (nu * p0_fp)
        a, b = self._beta(self.sensitivity_prior)
        sens = (w @ o.drawn + a) / (w @ o.readers + miss_obj + a + b)
        a, b = self._beta(self.fp_prior)
        fp = (u @ o.drawn + a) / (u @ o.readers + miss_fp + a + b)
        class_prior = (gamma[:, :k].sum(0) + 1.0) / (w.sum() + k)
        spurious_prior = (gamma[:, k:].sum(0) + 1.0) / (u.sum() + k)
        # One confusion per rater: how it labels what it sees, object or spurious site.
        conf = o.label_counts(gamma[:, :k] + gamma[:, k:]) + self._confusion_prior(k)[None]
        conf /= conf.sum(2, keepdims=True)
        return _Params(float(mu), float(nu), class_prior, sens, fp, conf, spurious_prior)

    def _objective(self, read: np.ndarray, p: _Params, logj: np.ndarray) -> float:
        """Observed-data log-likelihood + log prior (up to a constant); ``logj`` is
        :func:`_log_joint` of the parameters ``p``."""
        k = p.class_prior.shape[0]
        p0_obj = np.exp(read @ np.log1p(-p.sens))
        p0_fp = np.exp(read @ np.log1p(-p.fp))
        ll = float(_logsumexp(logj).sum())
        ll -= p.mu * (1.0 - p0_obj).sum() + p.nu * (1.0 - p0_fp).sum()
        lp = 0.5 * math.log(p.mu) - p.mu + 0.5 * math.log(p.nu) - p.nu
        for mean, x in ((self.sensitivity_prior, p.sens), (self.fp_prior, p.fp)):
            a, b = self._beta(mean)
            lp += float((a * np.log(x) + b * np.log1p(-x)).sum())
        lp += float(np.log(p.class_prior).sum() + np.log(p.spurious_prior).sum())
        lp += float((self._confusion_prior(k)[None] * np.log(p.confusion)).sum())
        return ll + lp

    # ------------------------------------------------------------------ fit
    def fit(self, images: Sequence[RaterBoxes]) -> PresenceEM:
        """Estimate sensitivities, false-positive propensities, confusions and rates.

        Args:
            images (Sequence[RaterBoxes]): the multi-rater dataset (images nobody drew on
                count: they are evidence of misses and of no false positive).

        Returns:
            PresenceEM: self.
        """
        images = list(images)
        if not images:
            raise ValueError('PresenceEM.fit: no images')
        k = self.num_classes
        if k is None:
            k = 1 + max((int(np.max(im.labels)) for im in images if len(im.labels)), default=0)
        raters, obs, read = self._table(images, k)
        n_r = len(raters)
        params = _Params(
            mu=1.0,
            nu=1.0,
            class_prior=np.full(k, 1.0 / k),
            sens=np.full(n_r, self.sensitivity_prior),
            fp=np.full(n_r, self.fp_prior),
            confusion=np.zeros((n_r, k, k)),
            spurious_prior=np.full(k, 1.0 / k),
        )
        gamma = self._init_posterior(obs)
        trace: list[float] = []
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007  (it is reported)
            new = self._m_step(obs, read, gamma, params)
            logj = _log_joint(obs, new)
            gamma = _normalise(logj)
            trace.append(self._objective(read, new, logj))
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
        self._rater_index = {r: i for i, r in enumerate(raters)}
        self._params = params
        self.num_classes_ = k
        self.object_rate_ = params.mu
        self.spurious_rate_ = params.nu
        self.class_prior_ = params.class_prior
        self.sensitivity_ = params.sens
        self.fp_rate_ = params.fp
        self.fp_per_image_ = params.nu * params.fp
        self.confusion_ = params.confusion
        self.spurious_prior_ = params.spurious_prior
        self.images_read_ = read.sum(0).astype(np.int64)
        self.num_clusters_ = obs.num_clusters
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)
        self.objective_trace_ = trace
        self.log_objective_ = trace[-1]
        return self

    # ------------------------------------------------------------------ inference
    def _reader_params(self, readers: Sequence[str]) -> _Params:
        """Parameters with rater arrays in ``readers`` order; a rater not seen in fit gets
        the mean of the fitted raters (a typical rater)."""
        p = self._params
        idx = [self._rater_index.get(r) for r in readers]

        def pick(arr: np.ndarray) -> np.ndarray:
            mean = arr.mean(0)
            if not idx:
                return np.zeros((0,) + arr.shape[1:])
            return np.stack([arr[i] if i is not None else mean for i in idx])

        return _Params(
            p.mu, p.nu, p.class_prior, pick(p.sens), pick(p.fp), pick(p.confusion),
            p.spurious_prior,
        )  # fmt: skip

    def posterior(self, image: RaterBoxes) -> PresencePosterior:
        """Cluster an image and compute each cluster's presence and label posteriors.

        Args:
            image (RaterBoxes): any image (need not be in the fit data).

        Returns:
            PresencePosterior: clusters, P(z = 1) (J,) and P(y | z = 1) (J, K).
        """
        self._check_fitted()
        k = self.num_classes_
        ci = cluster_image(image, k, self.iou_thr, self.linkage)
        if not ci.clusters:
            return PresencePosterior(ci, np.zeros(0), np.zeros((0, k)))
        logj = _log_joint(_Observations(ci.observations, k), self._reader_params(ci.readers))
        presence = _normalise(logj)[:, :k].sum(1)
        # P(y | z = 1) from the object columns alone: exact even when P(z = 1) underflows.
        return PresencePosterior(ci, presence, _normalise(logj[:, :k]))

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
        k = self.num_classes_
        names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
        if len(names) != k:
            raise ValueError(f'class_names has {len(names)} names for {k} classes')

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

    def get_params(self) -> dict:
        """Constructor arguments (for logging / the fused file's ``info``)."""
        return {name: getattr(self, name) for name in _PARAMS}
