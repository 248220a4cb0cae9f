"""Rater reliability by EM over matched box clusters (Dawid-Skene with a box-error model).

The model (also in ``docs/aggregators.md``):

1. **Clusters.** On each image every rater's boxes are clustered class-agnostically
   (:func:`~earl_mmdet.core.matching.cluster_boxes`, IoU > ``iou_thr``, at most one box per
   rater per cluster). A rater who flips the class of an object therefore lands in the same
   cluster as the raters who did not, instead of forming a separate one-rater box as in
   label-wise WBF (docs/aggregators.md).
2. **Observations.** For cluster j and each rater r who *read* the image, the observation
   l_rj is the label of r's box in j, or ``no_obj`` (index K) when r drew nothing there.
   Raters who did not read the image give no observation.
3. **Object classes (Dawid & Skene 1979).** The cluster's true class z_j is in {0..K-1,
   no_obj}, P(z_j = k) = pi_k. For a real object k < K, P(l_rj = l | z_j = k) =
   theta_r[k, l], row k of a per-rater (K+1)x(K+1) confusion matrix; its last column is the
   miss rate. Raters are independent given z_j.
4. **Spurious clusters (z_j = no_obj).** A cluster is only observed when someone drew a
   box, so plain Dawid-Skene would learn the no_obj row from clusters that are already
   selected on "somebody drew", making it look likely that two raters draw a false box at
   the same place - it then rejects real objects on which two raters disagree about the
   class. Here a spurious cluster is *one* rater's false positive (the limit of the
   likelihood truncated to observed clusters): rater r produces false positives at rate
   lambda_r per image read, with label distribution phi_r, so
   P(obs_j | no_obj) = lambda_c / sum_{r read} lambda_r * phi_c[l] when exactly one rater c
   drew (label l), and 0 when two or more did.
5. **EM.** Initialisation: soft majority vote (q_j = share of the readers' votes per
   class, no_obj votes included). M-step from the posteriors q: theta_r[k, :] from the
   expected counts N_r[k, l] = sum_j q_jk [l_rj = l] plus a Dirichlet prior per row
   (``prior_strength`` pseudo-observations, a share ``prior_diag`` on the diagonal, the rest
   spread evenly); pi from sum_j q_jk plus one pseudo-count per class; lambda_r = (expected
   false positives of r + 0.5) / (images read by r + 1); phi_r from r's expected false
   positives per label plus ``prior_strength`` pseudo-counts spread evenly. E-step: q_jk
   proportional to pi_k P(obs_j | k). Row no_obj of ``confusion_`` is reported from the
   expected counts (descriptive; the E-step uses lambda, phi).
6. **Box model.** A rater's box is the true box plus Gaussian noise, per coordinate, with a
   standard deviation sigma_r relative to the object's size (sqrt of the consensus box
   area). Given sigma, the true box's estimate is the precision-weighted mean t_j of the
   cluster's boxes (weights 1/sigma_r^2) with variance V_j = 1 / sum_r sigma_r^-2; the
   M-step is sigma_r^2 = (sum_j w_j (|e_rj|^2 + 4 V_j) + 4 b s0^2) / (4 (sum_j w_j + b)),
   e_rj = (box_rj - t_j) / size_j, summed over clusters with >= 2 boxes, w_j = 1 - q_j(no_obj)
   (the posterior that the cluster is a real object), b = ``box_prior_strength``,
   s0 = ``box_prior_sigma``. The V_j term keeps sigma_r from collapsing onto a rater whose
   box dominates the mean (the usual EM for an unknown mean). The box model does not enter
   the class posterior; it sets the fusion weights.

Approximation: the object rows are not renormalised for "at least one rater drew" (a
factor 1 - prod_r theta_r[k, no_obj], close to 1 unless raters miss most objects).

Everything is deterministic (no random initialisation; ties broken by index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .aggregator_base import check_number
from .box_ops import box_area, check_iou_thr, paired_box_iou
from .coco_io import RaterBoxes
from .matching import LINKAGES, cluster_boxes

__all__ = ['ClusteredImage', 'RaterEM', 'cluster_image']

#: Constructor arguments of :class:`RaterEM`, as reported by :meth:`RaterEM.get_params`.
_PARAMS = (
    'num_classes',
    'iou_thr',
    'linkage',
    'max_iter',
    'tol',
    'prior_strength',
    'prior_diag',
    'box_prior_strength',
    'box_prior_sigma',
)


@dataclass
class ClusteredImage:
    """Class-agnostic clusters of one image.

    Args:
        clusters (list[np.ndarray]): per cluster, indices into the image's boxes.
        readers (tuple[str, ...]): raters who read the image, in ``image.raters`` order.
        observations (np.ndarray): (J, len(readers)) int64: the label each reader gave the
            cluster, K (= no_obj) when the reader has no box in it.
    """

    clusters: list[np.ndarray]
    readers: tuple[str, ...]
    observations: np.ndarray


def cluster_image(
    image: RaterBoxes, num_classes: int, iou_thr: float = 0.4, linkage: str = 'average'
) -> ClusteredImage:
    """Cluster one image's boxes class-agnostically and build the readers' observations.

    Args:
        image (RaterBoxes): all raters' boxes of the image.
        num_classes (int): K; observation K means "no box in this cluster" (no_obj).
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): see :func:`cluster_boxes`. Defaults to ``'average'``.

    Returns:
        ClusteredImage: clusters and the (J, R) observation matrix.
    """
    readers = image.raters
    rids, labels = image.rater_ids, image.labels
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f'image {image.image_id!r}: label {int(labels.max())} >= num_classes={num_classes}'
        )
    clusters = cluster_boxes(image.boxes, rids, iou_thr, linkage=linkage)
    col = {r: i for i, r in enumerate(readers)}
    obs = np.full((len(clusters), len(readers)), num_classes, np.int64)
    for j, members in enumerate(clusters):
        for m in members:
            obs[j, col[rids[m]]] = labels[m]
    return ClusteredImage(clusters=clusters, readers=readers, observations=obs)


def _box_scale(boxes: np.ndarray) -> np.ndarray:
    """sqrt(area) of xyxy boxes, at least 1 px (object size used to normalise errors)."""
    return np.maximum(np.sqrt(box_area(boxes)), 1.0)


class RaterEM:
    """Dawid-Skene EM over class-agnostic box clusters, with a per-rater box-error model.

    See the module docstring for the model. After :meth:`fit` the estimates are in the
    attributes below (all indexed by ``raters_`` order).

    Args:
        num_classes (int | None): K. None = 1 + the largest label seen in :meth:`fit`.
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): cluster linkage, see :func:`cluster_boxes`. Defaults to 'average'.
        max_iter (int): EM iterations at most. Defaults to 100.
        tol (float): stop when no parameter (pi, theta, lambda, phi, sigma) changes by more
            than tol in an iteration. Defaults to 1e-4.
        prior_strength (float): Dirichlet pseudo-observations per confusion row (> 0).
            Defaults to 2.0.
        prior_diag (float): share of them on the diagonal, in [0, 1]. Defaults to 0.7.
        box_prior_strength (float): pseudo-clusters of the box-error prior (>= 0).
            Defaults to 2.0.
        box_prior_sigma (float): prior relative coordinate std (> 0). Defaults to 0.1.

    Attributes:
        raters_ (tuple[str, ...]): raters seen in fit, sorted.
        num_classes_ (int): K.
        class_prior_ (np.ndarray): (K+1,) pi, last entry = no_obj.
        confusion_ (np.ndarray): (R, K+1, K+1) theta_r[true, said], rows sum to 1 (row
            no_obj: descriptive, from the expected counts and the prior).
        expected_counts_ (np.ndarray): (R, K+1, K+1) N_r without the prior.
        proficiency_ (np.ndarray): (R,) sum_k pi_k theta_r[k, k] / sum_k pi_k over object
            classes k < K: probability that the rater draws a real object with its true label
            (misses and flips both count against it).
        precision_ (np.ndarray): (R,) share of the rater's boxes whose posterior true class
            is the label drawn (NaN for a rater with no box).
        fp_rate_ (np.ndarray): (R,) lambda_r, false-positive clusters per image read
            (smoothed).
        fp_label_dist_ (np.ndarray): (R, K) phi_r, label distribution of the false positives.
        images_read_ (np.ndarray): (R,) images each rater read in the fit data.
        box_sigma_ (np.ndarray): (R,) relative per-coordinate box error std.
        box_iou_ (np.ndarray): (R,) object-posterior-weighted mean IoU of the rater's box to
            the consensus of the *other* boxes of its cluster (NaN if never in a shared
            cluster).
        num_clusters_ (int): clusters in the fit data.
        n_iter_ (int): EM iterations run.
        converged_ (bool): whether ``tol`` was reached.
        log_likelihood_ (float): class-model log-likelihood at the end.

    Examples:
        >>> im = RaterBoxes(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...                 np.array([1, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> em = RaterEM(num_classes=2).fit([im])
        >>> em.raters_, em.posterior(im)[1].argmax(1).tolist()
        (('a', 'b'), [1])
    """

    def __init__(
        self,
        num_classes: int | None = None,
        iou_thr: float = 0.4,
        linkage: str = 'average',
        max_iter: int = 100,
        tol: float = 1e-4,
        prior_strength: float = 2.0,
        prior_diag: float = 0.7,
        box_prior_strength: float = 2.0,
        box_prior_sigma: float = 0.1,
    ) -> None:
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f'num_classes must be a positive int or None, got {num_classes!r}')
        iou_thr = check_iou_thr(iou_thr, 'RaterEM')
        if linkage not in LINKAGES:
            raise ValueError(f'linkage must be one of {LINKAGES}, got {linkage!r}')
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f'max_iter must be an int >= 1, got {max_iter!r}')
        self.num_classes = num_classes
        self.iou_thr = iou_thr
        self.linkage = linkage
        self.max_iter = max_iter
        self.tol = check_number(tol, 'tol', 'RaterEM', 0, open_low=True)
        self.prior_strength = check_number(
            prior_strength, 'prior_strength', 'RaterEM', 0, open_low=True
        )
        self.prior_diag = check_number(prior_diag, 'prior_diag', 'RaterEM', 0, 1)
        self.box_prior_strength = check_number(
            box_prior_strength, 'box_prior_strength', 'RaterEM', 0
        )
        self.box_prior_sigma = check_number(
            box_prior_sigma, 'box_prior_sigma', 'RaterEM', 0, open_low=True
        )
        self.raters_: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def fitted(self) -> bool:
        return self.raters_ is not None

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError('RaterEM is not fitted: call fit(images) first')

    def _prior_rows(self, k1: int) -> np.ndarray:
        """Dirichlet pseudo-counts (K+1, K+1): prior_diag on the diagonal, rest even."""
        off = (1.0 - self.prior_diag) / max(k1 - 1, 1)
        alpha = np.full((k1, k1), off)
        np.fill_diagonal(alpha, self.prior_diag if k1 > 1 else 1.0)
        return alpha * self.prior_strength

    def _rater_params(self, readers: Sequence[str]) -> tuple[np.ndarray, ...]:
        """theta (C, K+1, K+1), lambda (C,), phi (C, K) of the given raters; a rater not seen
        in fit gets the mean of the fitted raters (a typical rater)."""
        idx = [self._rater_index.get(r) for r in readers]
        mean = (self.confusion_.mean(0), self.fp_rate_.mean(), self.fp_label_dist_.mean(0))
        theta = np.stack([self.confusion_[i] if i is not None else mean[0] for i in idx])
        lam = np.array([self.fp_rate_[i] if i is not None else mean[1] for i in idx])
        phi = np.stack([self.fp_label_dist_[i] if i is not None else mean[2] for i in idx])
        return theta, lam, phi

    # ------------------------------------------------------------------ fit
    def fit(self, images: Sequence[RaterBoxes]) -> RaterEM:
        """Estimate confusion matrices, class prior, false-positive and box-error models.

        Args:
            images (Sequence[RaterBoxes]): the multi-rater dataset.

        Returns:
            RaterEM: self.
        """
        images = list(images)
        k = self.num_classes
        if k is None:
            k = 1 + max((int(np.max(im.labels)) for im in images if len(im.labels)), default=0)
        k1 = k + 1
        raters = sorted({r for im in images for r in im.raters})
        if not raters:
            raise ValueError('RaterEM.fit: no rater read any image')
        col = {r: i for i, r in enumerate(raters)}
        n_r = len(raters)
        n_read = np.zeros(n_r)
        for im in images:
            n_read[[col[r] for r in im.raters]] += 1

        # Flatten every cluster of every image into one observation table.
        obs_rows: list[np.ndarray] = []
        box_rows: list[np.ndarray] = []  # (R, 4) boxes, NaN where the rater has no box
        for im in images:
            ci = cluster_image(im, k, self.iou_thr, self.linkage)
            if not ci.clusters:
                continue
            rids, boxes = im.rater_ids, im.boxes
            cols = [col[r] for r in ci.readers]
            full = np.full((len(ci.clusters), n_r), -1, np.int64)
            full[:, cols] = ci.observations
            bx = np.full((len(ci.clusters), n_r, 4), np.nan)
            for j, members in enumerate(ci.clusters):
                for m in members:
                    bx[j, col[rids[m]]] = boxes[m]
            obs_rows.append(full)
            box_rows.append(bx)
        obs = np.concatenate(obs_rows) if obs_rows else np.zeros((0, n_r), np.int64)
        bxs = np.concatenate(box_rows) if box_rows else np.zeros((0, n_r, 4))
        n_j = obs.shape[0]
        drawn = (obs >= 0) & (obs < k)
        single = drawn.sum(1) == 1
        culprit = np.argmax(drawn, 1)  # meaningful where `single`
        fp_label = obs[np.arange(n_j), culprit]

        # Soft majority-vote initialisation.
        q = np.zeros((n_j, k1))
        for r in range(n_r):
            seen = obs[:, r] >= 0
            q[np.flatnonzero(seen), obs[seen, r]] += 1.0
        q /= np.maximum(q.sum(1, keepdims=True), 1e-12)

        alpha = self._prior_rows(k1)
        has_box = ~np.isnan(bxs[..., 0])  # (J, R)
        # The box model learns from clusters with >= 2 boxes only.
        shared = has_box.sum(1) >= 2
        bxs, has_box = bxs[shared], has_box[shared]
        sigma = np.full(n_r, self.box_prior_sigma)
        theta = np.zeros((n_r, k1, k1))
        pi = np.full(k1, 1.0 / k1)
        lam = np.zeros(n_r)
        phi = np.zeros((n_r, k))
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007  (it is reported)
            # M-step: confusion rows, class prior, false-positive model, box model.
            counts = self._expected_counts(obs, q, n_r, k1)
            new_theta = counts + alpha[None]
            new_theta /= new_theta.sum(2, keepdims=True)
            new_pi = (q.sum(0) + 1.0) / (n_j + k1)
            fp = np.zeros((n_r, k))
            if n_j:
                np.add.at(fp, (culprit[single], fp_label[single]), q[single, k])
            new_lam = (fp.sum(1) + 0.5) / (n_read + 1.0)
            new_phi = (fp + self.prior_strength / k) / (
                fp.sum(1, keepdims=True) + self.prior_strength
            )
            new_sigma = self._box_m_step(bxs, has_box, sigma, 1.0 - q[shared, k])
            # E-step.
            logj = self._log_joint(obs, np.log(new_pi), new_theta, new_lam, new_phi)
            q = self._normalise(logj)
            delta = max(
                float(np.abs(new_theta - theta).max()),
                float(np.abs(new_pi - pi).max()),
                float(np.abs(new_lam - lam).max()),
                float(np.abs(new_phi - phi).max()),
                float(np.abs(new_sigma - sigma).max()),
            )
            theta, pi, lam, phi, sigma = new_theta, new_pi, new_lam, new_phi, new_sigma
            if delta < self.tol:
                converged = True
                break

        logj = self._log_joint(obs, np.log(pi), theta, lam, phi)
        if n_j:
            mx = logj.max(1)
            self.log_likelihood_ = float((mx + np.log(np.exp(logj - mx[:, None]).sum(1))).sum())
        else:
            self.log_likelihood_ = 0.0
        final_counts = self._expected_counts(obs, q, n_r, k1)

        self.raters_ = tuple(raters)
        self._rater_index = col
        self.num_classes_ = k
        self.class_prior_ = pi
        self.confusion_ = theta
        self.expected_counts_ = final_counts
        self.fp_rate_ = lam
        self.fp_label_dist_ = phi
        self.images_read_ = n_read.astype(np.int64)
        self.box_sigma_ = sigma
        w_obj = pi[:k] / max(pi[:k].sum(), 1e-12)
        self.proficiency_ = (np.diagonal(theta, axis1=1, axis2=2)[:, :k] * w_obj).sum(1)
        n_drawn = final_counts[:, :, :k].sum((1, 2))
        right = np.trace(final_counts[:, :k, :k], axis1=1, axis2=2)
        with np.errstate(invalid='ignore', divide='ignore'):
            self.precision_ = np.where(
                n_drawn > 0, right / np.where(n_drawn > 0, n_drawn, 1), np.nan
            )
        self.box_iou_ = self._loo_box_iou(bxs, has_box, sigma, 1.0 - q[shared, k])
        self.num_clusters_ = int(n_j)
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)
        return self

    @staticmethod
    def _expected_counts(obs: np.ndarray, q: np.ndarray, n_r: int, k1: int) -> np.ndarray:
        """N_r[k, l] = sum_j q_jk [l_rj = l], (R, K+1, K+1)."""
        counts = np.zeros((n_r, k1, k1))
        for r in range(n_r):
            seen = obs[:, r] >= 0
            if seen.any():
                counts[r] = q[seen].T @ np.eye(k1)[obs[seen, r]]
        return counts

    @staticmethod
    def _normalise(logj: np.ndarray) -> np.ndarray:
        if logj.shape[0] == 0:
            return logj.copy()
        q = np.exp(logj - logj.max(1, keepdims=True))
        return q / q.sum(1, keepdims=True)

    @staticmethod
    def _log_joint(
        obs: np.ndarray, log_pi: np.ndarray, theta: np.ndarray, lam: np.ndarray, phi: np.ndarray
    ) -> np.ndarray:
        """log pi_k + log P(obs_j | k), (J, K+1); columns of ``obs`` index theta/lam/phi.

        obs: (J, C) labels, K = no box, -1 = did not read. theta (C, K+1, K+1), lam (C,),
        phi (C, K).
        """
        n_j, n_c = obs.shape
        k = theta.shape[1] - 1
        out = np.tile(log_pi, (n_j, 1))
        log_theta = np.log(theta[:, :k, :])  # object rows only
        for c in range(n_c):
            seen = obs[:, c] >= 0
            if seen.any():
                out[seen, :k] += log_theta[c][:, obs[seen, c]].T
        drawn = (obs >= 0) & (obs < k)
        single = drawn.sum(1) == 1
        spurious = np.full(n_j, -np.inf)
        if single.any():
            rows = np.flatnonzero(single)
            c = np.argmax(drawn[rows], 1)
            lam_sum = (obs[rows] >= 0).astype(float) @ lam
            spurious[rows] = np.log(lam[c]) - np.log(lam_sum) + np.log(phi[c, obs[rows, c]])
        out[:, k] += spurious
        return out

    def _consensus(
        self, bxs: np.ndarray, has_box: np.ndarray, sigma: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Precision-weighted mean box (J, 4) and its variance factor 1/sum(prec) (J,)."""
        prec = np.where(has_box, 1.0 / sigma[None, :] ** 2, 0.0)
        tot = prec.sum(1)
        safe = np.where(tot > 0, tot, 1.0)
        mean = (np.where(has_box[..., None], bxs, 0.0) * prec[..., None]).sum(1) / safe[:, None]
        return mean, 1.0 / safe

    def _box_m_step(
        self, b: np.ndarray, hb: np.ndarray, sigma: np.ndarray, w: np.ndarray
    ) -> np.ndarray:
        """New sigma (R,) from the clusters with >= 2 boxes: boxes ``b`` (J, R, 4), which
        rater has a box ``hb`` (J, R), object posteriors ``w`` (J,)."""
        if b.shape[0] == 0:
            return sigma.copy()
        t, var = self._consensus(b, hb, sigma)
        e = (np.where(hb[..., None], b, 0.0) - t[:, None, :]) / _box_scale(t)[:, None, None]
        sq = (e**2).sum(2) + 4.0 * var[:, None]  # (J, R)
        wj = np.where(hb, w[:, None], 0.0)
        s0 = self.box_prior_strength
        num = (wj * sq).sum(0) + 4.0 * s0 * self.box_prior_sigma**2
        den = 4.0 * (wj.sum(0) + s0)
        new = np.where(den > 0, num / np.where(den > 0, den, 1.0), sigma**2)
        # Floor: a rater drawing pixel-identical copies of another would otherwise reach 0.
        return np.sqrt(np.maximum(new, 1e-8))

    def _loo_box_iou(
        self, b: np.ndarray, hb: np.ndarray, sigma: np.ndarray, w: np.ndarray
    ) -> np.ndarray:
        """Per rater, the ``w``-weighted mean IoU of its box to the others' consensus
        (arguments as :meth:`_box_m_step`); NaN for a rater in no such cluster."""
        n_r = b.shape[1]
        out = np.full(n_r, np.nan)
        for r in range(n_r):
            rows = np.flatnonzero(hb[:, r])
            if rows.size == 0:
                continue
            others = hb[rows].copy()
            others[:, r] = False
            t, _ = self._consensus(b[rows], others, sigma)
            ious = paired_box_iou(b[rows, r], t)
            ww = w[rows]
            if ww.sum() > 0:
                out[r] = float((ious * ww).sum() / ww.sum())
        return out

    # ------------------------------------------------------------------ inference
    def posterior(self, image: RaterBoxes) -> tuple[ClusteredImage, np.ndarray]:
        """Cluster an image and compute each cluster's posterior over the true class.

        Raters not seen in :meth:`fit` use the mean parameters of the fitted raters.

        Args:
            image (RaterBoxes): any image (need not be in the fit data).

        Returns:
            tuple[ClusteredImage, np.ndarray]: the clusters and their (J, K+1) posteriors
            (last column = no_obj).
        """
        self._check_fitted()
        ci = cluster_image(image, self.num_classes_, self.iou_thr, self.linkage)
        k1 = self.num_classes_ + 1
        if len(ci.clusters) == 0:
            return ci, np.zeros((0, k1))
        theta, lam, phi = self._rater_params(ci.readers)
        logj = self._log_joint(ci.observations, np.log(self.class_prior_), theta, lam, phi)
        return ci, self._normalise(logj)

    def rater_weights(self, kind: str = 'box') -> dict[str, float]:
        """Per-rater weights derived from the fit.

        Args:
            kind (str): ``'box'`` = 1/sigma_r^2 normalised to mean 1 (box coordinates),
                ``'proficiency'`` = proficiency_ (labels), ``'uniform'`` = 1.

        Returns:
            dict[str, float]: rater id -> weight (> 0).
        """
        self._check_fitted()
        if kind == 'box':
            w = 1.0 / self.box_sigma_**2
            w = w / w.mean()
        elif kind == 'proficiency':
            w = np.maximum(self.proficiency_, 1e-6)
        elif kind == 'uniform':
            w = np.ones(len(self.raters_))
        else:
            raise ValueError(f"kind must be 'box', 'proficiency' or 'uniform', got {kind!r}")
        return {r: float(x) for r, x in zip(self.raters_, w)}

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-serialisable estimates (NaN -> None).

        Args:
            class_names (Sequence[str] | None): K names; ``'no_obj'`` is appended.

        Returns:
            dict: raters, classes, class_prior, confusion (per rater, rows = true class),
            proficiency, precision, box_sigma, box_iou, fp_rate, images_read, num_clusters,
            n_iter, converged, log_likelihood.
        """
        self._check_fitted()
        k = self.num_classes_
        if class_names is None:
            names = [str(i) for i in range(k)]
        else:
            names = [str(n) for n in class_names]
            if len(names) != k:
                raise ValueError(f'class_names has {len(names)} names for {k} classes')

        def num(x: float) -> float | None:
            return None if not math.isfinite(float(x)) else float(x)

        def per_rater(arr: np.ndarray) -> dict[str, float | None]:
            return {r: num(v) for r, v in zip(self.raters_, arr)}

        return {
            'raters': list(self.raters_),
            'classes': names + ['no_obj'],
            'class_prior': [float(v) for v in self.class_prior_],
            'confusion': {
                r: [[float(v) for v in row] for row in m]
                for r, m in zip(self.raters_, self.confusion_)
            },
            'proficiency': per_rater(self.proficiency_),
            'precision': per_rater(self.precision_),
            'box_sigma': per_rater(self.box_sigma_),
            'box_iou': per_rater(self.box_iou_),
            'fp_rate': per_rater(self.fp_rate_),
            'images_read': {r: int(v) for r, v in zip(self.raters_, self.images_read_)},
            'num_clusters': self.num_clusters_,
            'n_iter': self.n_iter_,
            'converged': self.converged_,
            'log_likelihood': self.log_likelihood_,
        }

    def get_params(self) -> dict:
        """Constructor arguments (for logging / the fused file's ``info``)."""
        return {k: getattr(self, k) for k in _PARAMS}
