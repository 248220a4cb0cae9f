"""Bayesian rater model fitted by variational EM on matched boxes, and its aggregator ``bayes``.

The model, its variational updates and their limits are in ``docs/bayes_raters.md``; in
short:

* **Sites.** On each image, sites occur as a Poisson process with mean ``Lambda``; a site
  has a class z in {0..K-1} (a real object) or z = K (*background*: a spurious site that
  invites a false positive), z ~ Cat(pi), pi ~ Dirichlet(beta).
* **Raters.** Every rater r who reads the image answers each site with l in {0..K}:
  a box labelled l < K, or l = K, no box (a miss when z < K). P(l | z) = theta_r[z, l], a
  (K+1) x (K+1) confusion matrix per rater, each row ~ Dirichlet(alpha_z). The detector in
  the loop is one more rater (it reads every image).
* **Clusters.** An image's boxes are matched class-agnostically
  (:mod:`~earl_core.fusion.rater_model`, as ``em`` and ``presence_em``); a cluster
  is a site at least one rater drew. The sites nobody drew are latent Poisson counts
  (m_iz per image and class), so the truncation "only drawn sites are seen" is modelled
  exactly rather than learnt as a background row from clusters that somebody drew.
* **Boxes.** A rater's box is the site's true box t_j plus Gaussian noise per coordinate,
  relative to the object size s_j (sqrt of the cluster's mean box area), with a per-rater
  precision tau_r ~ Gamma(a0, b0). The fused box is the precision-weighted mean.
* **Variational EM.** q(z_j) q(m) q(theta) q(pi) q(t) q(tau), mean-field, closed-form
  updates; ``Lambda`` by maximum likelihood. Deterministic: initialised from the raters'
  votes, no randomness.

Per fused box the model gives a class distribution over K classes and background (the
soft target), a box, and a confidence (P(z = label) or the presence 1 - P(z = K)).
The arrays are sparse in the raters (one entry per box and per read image), so a crowd of
1,000 raters who each read a few images costs what 5 raters reading everything cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from earl_core.fusion.base import (
    ModelAggregator,
    agreement_confidence,
    check_number,
    register_aggregator,
)
from earl_core.fusion.cluster_table import bincount_rows
from earl_core.fusion.rater_model import (
    ClusteredImage,
    ClusterPosterior,
    RaterModelBase,
    box_scale,
    cluster_image,
    cluster_images,
    infer_num_classes,
    softmax_rows,
)
from earl_core.structures import Detections

__all__ = ['BayesAggregator', 'BayesPosterior', 'BayesRaterModel']


def _digamma(x: np.ndarray) -> np.ndarray:
    from scipy.special import digamma

    return digamma(x)


@dataclass
class BayesPosterior(ClusterPosterior):
    """The model's answer for the clusters of one image.

    Args:
        clustered (ClusteredImage): clusters (indices into the image's boxes), raters and
            their (J, R) observations.
        class_probs (np.ndarray): (J, K + 1) float64 q(z_j): columns 0..K-1 the classes,
            column K background (not a real object); rows sum to 1.
        boxes (np.ndarray): (J, 4) float64 fused boxes, xyxy pixels (precision-weighted
            mean of the cluster's boxes).
        box_std (np.ndarray): (J,) float64 posterior std of each fused coordinate, pixels.
    """

    class_probs: np.ndarray
    boxes: np.ndarray
    box_std: np.ndarray

    @property
    def presence(self) -> np.ndarray:
        """(J,) P(z != background): the posterior that the cluster is a real object."""
        return 1.0 - self.class_probs[:, -1]

    @property
    def labels(self) -> np.ndarray:
        """(J,) int64 most probable real class (ties: the lowest index)."""
        return self.class_probs[:, :-1].argmax(1).astype(np.int64)


class _Table:
    """The fit data laid out sparsely: per read image, per cluster, per drawn box.

    Rater arrays index :attr:`raters`; image arrays index the fit images that someone read.
    """

    def __init__(self, images: Sequence[Detections], k: int, iou_thr: float, linkage: str):
        read = [im for im in images if im.raters]
        self.read_pos = [i for i, im in enumerate(images) if im.raters]  # in ``images``
        raters = sorted({str(r) for im in read for r in im.raters})
        col = {r: i for i, r in enumerate(raters)}
        self.raters = tuple(raters)
        self.num_images = len(read)
        read_img, read_rater = [], []
        clu_img, scale = [], []
        box_clu, box_rater, box_label, box_xyxy = [], [], [], []
        # Every image clustered at once (the same clusters as cluster_image on each).
        self.clustered: list[ClusteredImage] = cluster_images(read, k, iou_thr, linkage)
        for i, (im, ci) in enumerate(zip(read, self.clustered)):
            cols = [col[str(r)] for r in im.raters]
            read_img.extend([i] * len(cols))
            read_rater.extend(cols)
            rids = im.rater_ids
            for members in ci.clusters:
                j = len(clu_img)
                clu_img.append(i)
                scale.append(float(box_scale(im.boxes[members].mean(0))))
                for m in members.tolist():
                    box_clu.append(j)
                    box_rater.append(col[str(rids[m])])
                    box_label.append(int(im.labels[m]))
                    box_xyxy.append(im.boxes[m])
        i64 = np.int64
        self.read_img = np.asarray(read_img, i64)
        self.read_rater = np.asarray(read_rater, i64)
        self.clu_img = np.asarray(clu_img, i64)
        self.num_clusters = len(clu_img)
        self.scale = np.asarray(scale, np.float64)
        self.box_clu = np.asarray(box_clu, i64)
        self.box_rater = np.asarray(box_rater, i64)
        self.box_label = np.asarray(box_label, i64)
        self.box_xyxy = np.asarray(box_xyxy, np.float64).reshape(-1, 4)
        sizes = np.bincount(self.box_clu, minlength=self.num_clusters)
        # The box model learns from clusters of >= 2 boxes; a lone box is its own estimate.
        self.shared = sizes[self.box_clu] >= 2 if self.box_clu.size else np.zeros(0, bool)


class BayesRaterModel(RaterModelBase):
    """Per-rater confusion (with background) and box error, fitted by variational EM.

    See the module docstring and ``docs/bayes_raters.md`` for the model and the updates.

    Args:
        num_classes (int | None): K. None = 1 + the largest label seen in :meth:`fit`.
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): cluster linkage (:func:`~earl_core.fusion.matching.cluster_boxes`).
            Defaults to ``'average'``.
        max_iter (int): variational iterations at most. Defaults to 500.
        tol (float): stop when no posterior mean (theta, pi, tau relative, q(z)) moves by
            more than ``tol`` in an iteration. Defaults to 1e-5.
        prior_strength (float): Dirichlet pseudo-counts per confusion row (> 0).
            Defaults to 2.0.
        prior_diag (float): share of an object row's pseudo-counts on the diagonal.
            Defaults to 0.7.
        prior_miss (float): share of an object row's pseudo-counts on "no box" (a miss);
            ``prior_diag + prior_miss <= 1``, the rest is spread over the other classes.
            Defaults to 0.1.
        fp_prior (float): share of the background row's pseudo-counts on drawing a box
            (spread over the K labels), in (0, 1). Defaults to 0.2.
        box_prior_strength (float): pseudo-clusters of the Gamma prior on tau_r (> 0).
            Defaults to 2.0.
        box_prior_sigma (float): prior relative coordinate std, 1 / sqrt(E tau) (> 0).
            Defaults to 0.1.

    Attributes:
        raters_ (tuple[str, ...]): raters seen in fit, sorted.
        num_classes_ (int): K.
        confusion_ (np.ndarray): (R, K+1, K+1) posterior mean of theta_r (rows: true
            class, last = background; columns: label drawn, last = no box).
        confusion_alpha_ (np.ndarray): (R, K+1, K+1) its Dirichlet parameters.
        class_prior_ (np.ndarray): (K+1,) posterior mean of pi (sites, drawn or not).
        site_rate_ (float): Lambda, sites per image (drawn or not).
        sensitivity_ (np.ndarray): (R,) P(box | real object) = sum_k pi_k (1 -
            theta_r[k, K]) / sum_k pi_k.
        fp_per_image_ (np.ndarray): (R,) expected false-positive boxes per image read,
            Lambda pi_K (1 - theta_r[K, K]).
        box_sigma_ (np.ndarray): (R,) relative box error std, 1 / sqrt(E tau_r).
        box_gamma_ (np.ndarray): (R, 2) Gamma(shape, rate) posterior of tau_r.
        images_read_ (np.ndarray): (R,) images each rater read in the fit data.
        num_clusters_ (int): clusters in the fit data.
        n_iter_ (int): iterations run. converged_ (bool): ``tol`` reached.

    Examples:
        >>> im = Detections.from_raters(np.array([[0, 0, 10, 10], [1, 0, 11, 10.]]),
        ...     np.array([0, 0]), np.array(['a', 'b']), ('a', 'b', 'c'))  # c: read, no box
        >>> BayesRaterModel(num_classes=1).fit([im]).posterior(im).class_probs.shape
        (1, 2)
    """

    param_names = ('prior_miss', 'fp_prior', 'box_prior_strength', 'box_prior_sigma')

    def __init__(
        self,
        num_classes: int | None = None,
        iou_thr: float = 0.4,
        linkage: str = 'average',
        max_iter: int = 500,
        tol: float = 1e-5,
        prior_strength: float = 2.0,
        prior_diag: float = 0.7,
        prior_miss: float = 0.1,
        fp_prior: float = 0.2,
        box_prior_strength: float = 2.0,
        box_prior_sigma: float = 0.1,
    ) -> None:
        self._check_shared(num_classes, iou_thr, linkage, max_iter, tol, prior_strength, prior_diag)
        where = 'BayesRaterModel'
        self.prior_miss = check_number(prior_miss, 'prior_miss', where, 0, 1)
        self.fp_prior = check_number(
            fp_prior, 'fp_prior', where, 0, 1, open_low=True, open_high=True
        )
        self.box_prior_strength = check_number(
            box_prior_strength, 'box_prior_strength', where, 0, open_low=True
        )
        self.box_prior_sigma = check_number(
            box_prior_sigma, 'box_prior_sigma', where, 0, open_low=True
        )
        if self.prior_diag + self.prior_miss > 1.0:
            raise ValueError(
                f'{where}: prior_diag + prior_miss must be <= 1, got '
                f'{self.prior_diag + self.prior_miss!r}'
            )

    # ------------------------------------------------------------------ priors
    def _confusion_prior(self, k: int) -> np.ndarray:
        """Dirichlet parameters alpha (K+1, K+1): object rows diag / miss / rest, the
        background row (1 - fp_prior) on "no box" and fp_prior spread over the labels."""
        k1 = k + 1
        alpha = np.zeros((k1, k1))
        rest = (1.0 - self.prior_diag - self.prior_miss) / max(k - 1, 1)
        alpha[:k, :k] = rest
        np.fill_diagonal(alpha[:k, :k], self.prior_diag if k > 1 else 1.0 - self.prior_miss)
        alpha[:k, k] = self.prior_miss
        alpha[k, :k] = self.fp_prior / k
        alpha[k, k] = 1.0 - self.fp_prior
        # A zero share would make a log-probability -inf: keep every cell possible.
        return np.maximum(alpha * self.prior_strength, 1e-3)

    def _tau_prior(self) -> tuple[float, float]:
        """Gamma(shape, rate) of tau: ``box_prior_strength`` pseudo-clusters of 4 squared
        relative errors of ``box_prior_sigma`` ** 2 each."""
        a0 = 2.0 * self.box_prior_strength
        return a0, a0 * self.box_prior_sigma**2

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _elog_dirichlet(alpha: np.ndarray) -> np.ndarray:
        return _digamma(alpha) - _digamma(alpha.sum(-1, keepdims=True))

    # ------------------------------------------------------------------ fit
    def fit(self, images: Sequence[Detections]) -> BayesRaterModel:
        """Fit q(theta), q(pi), q(tau) and the site rate on a multi-rater dataset.

        Args:
            images (Sequence[Detections]): the images; those nobody read are skipped
                (unlabelled), images read with no box count (evidence of misses).

        Returns:
            BayesRaterModel: self.
        """
        images = list(images)
        k = infer_num_classes(images, self.num_classes)
        t = _Table(images, k, self.iou_thr, self.linkage)
        if not t.raters:
            raise ValueError('BayesRaterModel.fit: no rater read any image')
        k1, n_r, n_i, n_j = k + 1, len(t.raters), t.num_images, t.num_clusters
        alpha0 = self._confusion_prior(k)
        beta0 = np.ones(k1)
        a0, b0 = self._tau_prior()

        # Initial q(z): the raters' votes (share who drew, split by their labels).
        raters_per_image = np.bincount(t.read_img, minlength=n_i).astype(np.float64)
        q = np.zeros((n_j, k1))
        np.add.at(q, (t.box_clu, t.box_label), 1.0)
        drawn = q[:, :k].sum(1)
        q[:, k] = np.maximum(raters_per_image[t.clu_img] - drawn, 0.0)
        q /= np.maximum(q.sum(1, keepdims=True), 1e-12)
        unseen = np.zeros((n_i, k1))  # E m_iz
        e_tau = np.full(n_r, a0 / b0)
        prev = None
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007  (reported)
            # q(theta), q(pi): Dirichlet posteriors from the expected counts.
            alpha = alpha0[None] + self._label_counts(t, q, unseen, n_r, k1)
            beta = beta0 + q.sum(0) + unseen.sum(0)
            elog_theta = self._elog_dirichlet(alpha)
            elog_pi = self._elog_dirichlet(beta)
            # Sites nobody drew: q(m_iz) = Poisson(Lambda g_iz), Lambda by maximum likelihood.
            none = elog_pi[None, :] + self._sum_raters(t, elog_theta[:, :, k], n_i)
            g = np.exp(none)
            lam = n_j / max(n_i - float(g.sum()), 1e-12) if n_i else 0.0
            unseen = lam * g
            # q(z_j).
            q = softmax_rows(self._log_joint(t, elog_theta, elog_pi, none))
            # q(t_j), q(tau_r).
            box_a, box_b, e_tau = self._box_update(t, q[:, k], e_tau, a0, b0, n_r)
            state = (alpha / alpha.sum(2, keepdims=True), beta / beta.sum(), q, e_tau)
            if prev is not None:
                delta = max(
                    float(np.abs(state[0] - prev[0]).max()),
                    float(np.abs(state[1] - prev[1]).max()),
                    float(np.abs(state[2] - prev[2]).max()) if n_j else 0.0,
                    float(np.abs(np.log(state[3] / prev[3])).max()),
                )
                if delta < self.tol:
                    converged = True
                    break
            prev = state

        self.raters_ = t.raters
        self._rater_index = {r: i for i, r in enumerate(t.raters)}
        # The fit images' clusters, by position in ``images`` (fuse_all reuses them).
        self.fit_clusters_ = dict(zip(t.read_pos, t.clustered))
        self.num_classes_ = k
        self.confusion_alpha_ = alpha
        self.confusion_ = alpha / alpha.sum(2, keepdims=True)
        self._elog_theta = elog_theta
        self._elog_pi = elog_pi
        self._elog_theta_prior = self._elog_dirichlet(alpha0)
        self.class_prior_ = beta / beta.sum()
        self.site_rate_ = float(lam)
        pi_obj = self.class_prior_[:k] / max(self.class_prior_[:k].sum(), 1e-12)
        self.sensitivity_ = ((1.0 - self.confusion_[:, :k, k]) * pi_obj).sum(1)
        self.fp_per_image_ = lam * self.class_prior_[k] * (1.0 - self.confusion_[:, k, k])
        self.box_gamma_ = np.stack([box_a, box_b], 1)
        self._e_tau = e_tau
        self.box_sigma_ = 1.0 / np.sqrt(e_tau)
        self.images_read_ = np.bincount(t.read_rater, minlength=n_r).astype(np.int64)
        self.num_clusters_ = int(n_j)
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)
        self._fit_q = q
        return self

    @staticmethod
    def _sum_raters(t: _Table, per_rater: np.ndarray, n_i: int) -> np.ndarray:
        """(I, C) sum over each image's raters of ``per_rater`` (R, C)."""
        # bincount adds in the order np.add.at does (same sums), far faster.
        return bincount_rows(t.read_img, per_rater[t.read_rater], n_i).reshape(
            n_i, per_rater.shape[1]
        )

    @staticmethod
    def _label_counts(
        t: _Table, q: np.ndarray, unseen: np.ndarray, n_r: int, k1: int
    ) -> np.ndarray:
        """Expected counts N_r[z, l] (R, K+1, K+1): boxes drawn with label l on clusters of
        class z, and (l = K) clusters and unseen sites of the images read with no box."""
        k = k1 - 1
        # bincount adds in the order np.add.at does (same sums), far faster.
        q_box = q[t.box_clu]
        counts = (
            bincount_rows(t.box_rater * k1 + t.box_label, q_box, n_r * k1)
            .reshape(n_r, k1, k1)
            .transpose(0, 2, 1)
            .copy()
        )  # [rater, true z, said l]
        drew = bincount_rows(t.box_rater, q_box, n_r).reshape(n_r, k1)
        per_image = bincount_rows(t.clu_img, q, t.num_images).reshape(t.num_images, k1)
        per_image += unseen
        sites_read = bincount_rows(t.read_rater, per_image[t.read_img], n_r).reshape(n_r, k1)
        counts[:, :, k] += sites_read - drew
        return counts

    @staticmethod
    def _log_joint(
        t: _Table, elog_theta: np.ndarray, elog_pi: np.ndarray, none: np.ndarray
    ) -> np.ndarray:
        """(J, K+1) E log pi_z + sum over raters of E log theta_r[z, l_rj]: every rater
        "no box" (``none``, per image) corrected by the boxes drawn."""
        k = elog_pi.shape[0] - 1
        out = none[t.clu_img].copy()
        if t.box_clu.size:
            delta = (
                elog_theta[t.box_rater, :, t.box_label] - elog_theta[t.box_rater, :, k]
            )  # (B, K+1)
            out += bincount_rows(t.box_clu, delta, out.shape[0]).reshape(out.shape)
        return out

    def _box_update(
        self, t: _Table, background: np.ndarray, e_tau: np.ndarray, a0: float, b0: float, n_r: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One update of q(t_j) and q(tau_r) from the shared clusters; returns the Gamma
        shape, rate and the new E tau (R,)."""
        a = np.full(n_r, a0)
        b = np.full(n_r, b0)
        sel = t.shared
        if sel.any():
            clu, rat = t.box_clu[sel], t.box_rater[sel]
            y = t.box_xyxy[sel] / t.scale[clu][:, None]
            prec = e_tau[rat]
            tot = np.bincount(clu, weights=prec, minlength=t.num_clusters)
            mean = bincount_rows(clu, y * prec[:, None], t.num_clusters)
            mean[tot > 0] /= tot[tot > 0, None]
            sq = ((y - mean[clu]) ** 2).sum(1) + 4.0 / tot[clu]
            w = 1.0 - background[clu]  # learn the box error on real objects
            a += 2.0 * np.bincount(rat, weights=w, minlength=n_r)
            b += 0.5 * np.bincount(rat, weights=w * sq, minlength=n_r)
        return a, b, a / b

    # ------------------------------------------------------------------ inference
    def _rater_params(self, raters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """E log theta (C, K+1, K+1) and E tau (C,) of the given raters; a rater not seen
        in fit gets the prior (what the model knows of a rater it has never seen)."""
        a0, b0 = self._tau_prior()
        idx = [self._rater_index.get(str(r)) for r in raters]
        k1 = self.num_classes_ + 1
        elog = np.stack([self._elog_theta[i] if i is not None else self._elog_theta_prior
                         for i in idx]) if idx else np.zeros((0, k1, k1))  # fmt: skip
        tau = np.array([self._e_tau[i] if i is not None else a0 / b0 for i in idx])
        return elog, tau

    def posterior(
        self, image: Detections, clustered: ClusteredImage | None = None
    ) -> BayesPosterior:
        """Cluster an image; each cluster's class distribution and fused box.

        Args:
            image (Detections): any image (need not be in the fit data).
            clustered (ClusteredImage | None): its clusters (``cluster_image`` with this
                model's K, ``iou_thr`` and ``linkage``). None: clustered here.

        Returns:
            BayesPosterior: clusters, q(z) (J, K+1), fused boxes (J, 4) and their std.
        """
        self._check_fitted()
        k = self.num_classes_
        ci = clustered if clustered is not None else cluster_image(image, k, self.iou_thr,
                                                                     self.linkage)  # fmt: skip
        n_j = len(ci.clusters)
        if n_j == 0:
            return BayesPosterior(ci, np.zeros((0, k + 1)), np.zeros((0, 4)), np.zeros(0))
        elog, tau = self._rater_params(ci.raters)
        obs = ci.observations  # (J, C), K = no box
        logj = np.tile(self._elog_pi, (n_j, 1))
        for c in range(obs.shape[1]):
            logj += elog[c][:, obs[:, c]].T
        col = {r: i for i, r in enumerate(ci.raters)}
        boxes = np.zeros((n_j, 4))
        std = np.zeros(n_j)
        for j, members in enumerate(ci.clusters):
            prec = tau[[col[str(r)] for r in image.rater_ids[members]]]
            boxes[j] = (image.boxes[members] * prec[:, None]).sum(0) / prec.sum()
            std[j] = float(box_scale(image.boxes[members].mean(0))) / math.sqrt(prec.sum())
        return BayesPosterior(ci, softmax_rows(logj), boxes, std)

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-serialisable estimates: raters, classes (+ ``'background'``), class_prior,
        site_rate, and per rater confusion (posterior mean, rows = true class),
        sensitivity, fp_per_image, box_sigma, images_read; num_clusters, n_iter,
        converged."""
        self._check_fitted()
        names = self._class_names(class_names)

        def per_rater(arr: np.ndarray) -> dict:
            return {r: np.asarray(v).tolist() for r, v in zip(self.raters_, arr)}

        return {
            'raters': list(self.raters_),
            'classes': names + ['background'],
            'class_prior': self.class_prior_.tolist(),
            'site_rate': self.site_rate_,
            'confusion': per_rater(self.confusion_),
            'sensitivity': per_rater(self.sensitivity_),
            'fp_per_image': per_rater(self.fp_per_image_),
            'box_sigma': per_rater(self.box_sigma_),
            'images_read': per_rater(self.images_read_),
            'num_clusters': self.num_clusters_,
            'n_iter': self.n_iter_,
            'converged': self.converged_,
        }


@register_aggregator('bayes')
class BayesAggregator(ModelAggregator):
    """The Bayesian rater model (:class:`BayesRaterModel`), then one fused box per cluster.

    :meth:`fit` runs the variational EM on the dataset. Each image's class-agnostic
    clusters (``em``'s) then get:

    * label: the most probable real class of q(z) (ties: the lowest index);
    * box: the precision-weighted mean of all the cluster's boxes (weights E tau_r);
    * agreement T: the raters (not the ``detector`` source) whose box carries the label;
    * confidence: ``posterior`` (default) = q(z = label), the soft target of the fused
      class; ``presence`` = 1 - q(z = background); ``agreement`` = T;
      ``agreement_ratio`` = T / R (R: the raters who read the image, detector excluded).

    Clusters with presence below ``min_presence`` are dropped (default 0: every cluster is
    kept, the loss policy decides). With a ``detector`` source (the hook
    ``DetectorRaterHook`` adds it), a cluster that only the detector drew is kept when its
    presence reaches ``detector_min_presence``: an object every rater missed.

    Args:
        confidence (str | None): ``'posterior'`` (default), ``'presence'``,
            ``'agreement'`` or ``'agreement_ratio'``.
        min_presence (float): drop clusters below this presence, in [0, 1]. Defaults to 0.
        detector (str | None): rater id of the detector source, if any. Defaults to None.
        detector_min_presence (float): keep a detector-only cluster from this presence
            on, in [0, 1]. Defaults to 0.5.
        score_mode (str | None): deprecated name of ``confidence``.
        **model_params: :class:`BayesRaterModel` arguments.

    Attributes:
        model (BayesRaterModel): the fitted model (confusion_, box_sigma_, ...).
    """

    model_cls = BayesRaterModel
    param_names = ('min_presence', 'detector', 'detector_min_presence')
    confidence_modes: ClassVar[tuple[str, ...]] = (
        'posterior',
        'presence',
        'agreement',
        'agreement_ratio',
    )
    default_confidence: ClassVar[str] = 'posterior'

    def __init__(
        self,
        confidence: str | None = None,
        min_presence: float = 0.0,
        detector: str | None = None,
        detector_min_presence: float = 0.5,
        score_mode: str | None = None,
        **model_params: Any,
    ) -> None:
        super().__init__(confidence, score_mode, **model_params)
        where = "aggregator 'bayes'"
        self.min_presence = check_number(min_presence, 'min_presence', where, 0, 1)
        self.detector_min_presence = check_number(
            detector_min_presence, 'detector_min_presence', where, 0, 1
        )
        if detector is not None and not isinstance(detector, str):
            raise ValueError(
                f"aggregator 'bayes': detector must be a rater id (str), got {detector!r}"
            )
        self.detector = detector

    def _fit(self, images: list[Detections]) -> list[ClusteredImage | None]:
        self.model.fit(images)
        clusters = self.model.fit_clusters_  # (of the images someone read)
        return [clusters.get(i) for i in range(len(images))]

    def posterior(
        self, image: Detections, clustered: ClusteredImage | None = None
    ) -> BayesPosterior:
        """The model's clusters, class distributions (K + 1 columns) and fused boxes."""
        self._require_fitted()
        return self.model.posterior(image, clustered)

    def _fuse(self, image: Detections, clustered: ClusteredImage | None = None) -> Detections:
        post = self.posterior(image, clustered)
        raters = [r for r in image.raters if r != self.detector]
        r = len(raters)
        presence = post.presence
        out: tuple[list, ...] = ([], [], [], [], [], [])
        for j, (members, lab) in enumerate(zip(post.clustered.clusters, post.labels.tolist())):
            rids = image.rater_ids[members]
            human = rids != self.detector if self.detector is not None else np.ones(len(rids), bool)
            if presence[j] < self.min_presence:
                continue
            if not human.any() and presence[j] < self.detector_min_presence:
                continue
            t = int((human & (image.labels[members] == lab)).sum())
            if self.confidence == 'posterior':
                c = float(post.class_probs[j, lab])
            elif self.confidence == 'presence':
                c = float(presence[j])
            else:
                c = agreement_confidence(t, r, self.confidence)
            values = (post.boxes[j], lab, c, t, members, tuple(str(x) for x in rids))
            for lst, v in zip(out, values):
                lst.append(v)
        boxes, labels, confidence, agreement, members, member_raters = out
        if not boxes:
            return Detections.empty(r, image)
        return Detections.fused(
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64),
            confidence=np.asarray(confidence, np.float32),
            agreement=np.asarray(agreement, np.int64),
            num_raters=r,
            members=[np.asarray(m, np.int64) for m in members],
            member_raters=list(member_raters),
            image=image,
        )
