"""Rater reliability by EM over matched box clusters (Dawid-Skene with a box-error model).

The model (also in ``docs/aggregators.md``):

1. **Clusters.** On each image every rater's boxes are clustered class-agnostically
   (:mod:`earl_core.fusion.rater_model`: IoU > ``iou_thr``, at most one box per rater per
   cluster). A rater who flips the class of an object therefore lands in the same
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
5. **EM.** Initialisation: soft majority vote (q_j = share of the raters' votes per
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
from typing import NamedTuple

import numpy as np

from earl_core.boxes import paired_box_iou
from earl_core.fusion.base import check_number
from earl_core.fusion.cluster_table import ClusterTable, bincount_rows
from earl_core.fusion.rater_model import (
    ClusteredImage,
    RaterModelBase,
    box_scale,
    cluster_image,
    cluster_images,
    cluster_tables,
    clusters_for,
    confusion_prior,
    image_table,
    infer_num_classes,
    logsumexp_rows,
    softmax_rows,
)
from earl_core.structures import Detections

# The clustering of the images moved to earl_core.fusion.rater_model; its names stay
# importable from here.
__all__ = [
    'ClusteredImage',
    'RaterEM',
    'RaterModelBase',
    'cluster_image',
    'cluster_images',
    'cluster_tables',
    'image_table',
    'infer_num_classes',
]


class _SharedBoxes(NamedTuple):
    """The boxes of the clusters with >= 2 boxes (the box model learns from those).

    Args:
        cluster (np.ndarray): (E,) compact cluster index (0..J_s-1) of each box.
        column (np.ndarray): (E,) rater column of each box.
        boxes (np.ndarray): (E, 4) xyxy.
        global_cluster (np.ndarray): (J_s,) each cluster's index among all clusters.
        num_clusters (int): J_s.
    """

    cluster: np.ndarray
    column: np.ndarray
    boxes: np.ndarray
    global_cluster: np.ndarray
    num_clusters: int


def _shared_boxes(
    images: Sequence[Detections], clustered: Sequence[ClusteredImage], columns: Sequence[np.ndarray]
) -> _SharedBoxes:
    cl, col, bx, offset = [], [], [], 0
    for im, ci, cols in zip(images, clustered, columns):
        if len(ci.clusters):
            size = np.bincount(ci.box_cluster, minlength=len(ci.clusters))
            keep = np.flatnonzero(size[ci.box_cluster] >= 2)
            cl.append(ci.box_cluster[keep] + offset)
            col.append(cols[ci.box_rater[keep]])
            bx.append(im.boxes[keep])
        offset += len(ci.clusters)
    if not cl:
        z = np.zeros(0, np.int64)
        return _SharedBoxes(z, z, np.zeros((0, 4)), z, 0)
    glob, compact = np.unique(np.concatenate(cl), return_inverse=True)
    return _SharedBoxes(
        compact.reshape(-1).astype(np.int64),
        np.concatenate(col).astype(np.int64),
        np.concatenate(bx),
        glob.astype(np.int64),
        int(glob.shape[0]),
    )


class RaterEM(RaterModelBase):
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
        >>> im = Detections.from_raters(np.array([[0, 0, 10, 10], [0, 0, 10, 10.]]),
        ...     np.array([1, 1]), np.array(['a', 'b']), ('a', 'b'))
        >>> em = RaterEM(num_classes=2).fit([im])
        >>> em.raters_, em.posterior(im)[1].argmax(1).tolist()
        (('a', 'b'), [1])
    """

    param_names = ('box_prior_strength', 'box_prior_sigma')

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
        self._check_shared(num_classes, iou_thr, linkage, max_iter, tol, prior_strength, prior_diag)
        self.box_prior_strength = check_number(
            box_prior_strength, 'box_prior_strength', 'RaterEM', 0
        )
        self.box_prior_sigma = check_number(
            box_prior_sigma, 'box_prior_sigma', 'RaterEM', 0, open_low=True
        )

    # ------------------------------------------------------------------ fit
    def fit(
        self, images: Sequence[Detections], clustered: Sequence[ClusteredImage] | None = None
    ) -> RaterEM:
        """Estimate confusion matrices, class prior, false-positive and box-error models.

        Memory and time grow with the boxes and the (image, rater) pairs, not with
        clusters x raters (:mod:`earl_core.fusion.cluster_table`).

        Args:
            images (Sequence[Detections]): the multi-rater dataset.
            clustered (Sequence[ClusteredImage] | None): the images' clusters, made by
                :func:`cluster_image` with this model's K, ``iou_thr`` and ``linkage`` (to
                share one clustering between models). None: clustered here.

        Returns:
            RaterEM: self.
        """
        images = list(images)
        k = infer_num_classes(images, self.num_classes)
        k1 = k + 1
        raters, col, columns, clustered, table = self._fit_table(images, clustered, k)
        n_r = len(raters)
        box = _shared_boxes(images, clustered, columns)
        del clustered
        n_read = table.images_read()
        n_j = table.num_clusters
        count = table.pattern_count
        # The one entry of each pattern whose clusters have exactly one box.
        single = np.flatnonzero(table.drawers()[table.entry_pattern] == 1)
        single_pat = table.entry_pattern[single]
        box_pattern = table.cluster_pattern[box.global_cluster]  # (J_s,)

        q = self._init_posterior(table, k1)
        alpha = confusion_prior(k1, self.prior_diag, self.prior_strength)
        sigma = np.full(n_r, self.box_prior_sigma)
        theta = np.zeros((n_r, k1, k1))
        pi = np.full(k1, 1.0 / k1)
        lam = np.zeros(n_r)
        phi = np.zeros((n_r, k))
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007  (it is reported)
            # M-step: confusion rows, class prior, false-positive model, box model.
            counts = self._expected_counts(table, q)
            new_theta = counts + alpha[None]
            new_theta /= new_theta.sum(2, keepdims=True)
            new_pi = ((q * count[:, None]).sum(0) + 1.0) / (n_j + k1)
            fp = np.zeros((n_r, k))
            np.add.at(
                fp,
                (table.entry_column[single], table.entry_label[single]),
                q[single_pat, k] * count[single_pat],
            )
            new_lam = (fp.sum(1) + 0.5) / (n_read + 1.0)
            new_phi = (fp + self.prior_strength / k) / (
                fp.sum(1, keepdims=True) + self.prior_strength
            )
            new_sigma = self._box_m_step(box, sigma, 1.0 - q[box_pattern, k])
            # E-step.
            logj = self._log_joint(table, np.log(new_pi), new_theta, new_lam, new_phi)
            q = softmax_rows(logj)
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

        logj = self._log_joint(table, np.log(pi), theta, lam, phi)
        self.log_likelihood_ = float((logsumexp_rows(logj) * count).sum())
        final_counts = self._expected_counts(table, q)

        self.raters_ = raters
        self._rater_index = col
        self._with_mean = None
        self.num_classes_ = k
        self.class_prior_ = pi
        self.confusion_ = theta
        self.expected_counts_ = final_counts
        self.fp_rate_ = lam
        self.fp_label_dist_ = phi
        self.images_read_ = np.rint(n_read).astype(np.int64)
        self.box_sigma_ = sigma
        w_obj = pi[:k] / max(pi[:k].sum(), 1e-12)
        self.proficiency_ = (np.diagonal(theta, axis1=1, axis2=2)[:, :k] * w_obj).sum(1)
        n_drawn = final_counts[:, :, :k].sum((1, 2))
        right = np.trace(final_counts[:, :k, :k], axis1=1, axis2=2)
        with np.errstate(invalid='ignore', divide='ignore'):
            self.precision_ = np.where(
                n_drawn > 0, right / np.where(n_drawn > 0, n_drawn, 1), np.nan
            )
        self.box_iou_ = self._loo_box_iou(box, sigma, 1.0 - q[box_pattern, k])
        self.num_clusters_ = int(n_j)
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)
        return self

    @staticmethod
    def _init_posterior(table: ClusterTable, k1: int) -> np.ndarray:
        """Soft majority vote (U, K+1): the share of the raters' votes per class, the
        raters who drew nothing voting no_obj."""
        q = np.zeros((table.num_patterns, k1))
        np.add.at(q, (table.entry_pattern, table.entry_label), 1.0)
        q[:, k1 - 1] = table.raters_read() - table.drawers()
        return q / np.maximum(q.sum(1, keepdims=True), 1e-12)

    @staticmethod
    def _expected_counts(table: ClusterTable, q: np.ndarray) -> np.ndarray:
        """N_r[k, l] = sum_j q_jk [l_rj = l] over the clusters r read, (C, K+1, K+1)."""
        k1 = q.shape[1]
        k = k1 - 1
        c = table.num_columns
        weighted = q * table.pattern_count[:, None]
        drawn = bincount_rows(
            table.entry_column * k + table.entry_label, weighted[table.entry_pattern], c * k
        ).reshape(c, k, k1)  # [column, said, true]
        counts = np.zeros((c, k1, k1))
        counts[:, :, :k] = drawn.transpose(0, 2, 1)
        # no_obj: every cluster the rater read, less those it drew in.
        read = table.per_column(table.set_total(q))  # (C, K+1)
        counts[:, :, k] = np.maximum(read - drawn.sum(1), 0.0)
        return counts

    @staticmethod
    def _log_joint(
        table: ClusterTable,
        log_pi: np.ndarray,
        theta: np.ndarray,
        lam: np.ndarray,
        phi: np.ndarray,
    ) -> np.ndarray:
        """log pi_k + log P(obs | k) per pattern, (U, K+1); the table's columns index
        theta (C, K+1, K+1), lam (C,) and phi (C, K).

        A rater who drew nothing contributes log theta_r[k, no_obj]: summed over the
        rater set, less the entries' raters, who contribute log theta_r[k, l] instead.
        """
        k = theta.shape[1] - 1
        log_theta = np.log(theta[:, :k, :])  # object rows only, (C, K, K+1)
        miss = log_theta[:, :, k]  # (C, K)
        ec, el = table.entry_column, table.entry_label
        out = np.empty((table.num_patterns, k + 1))
        out[:, :k] = (
            log_pi[:k]
            + table.per_set(miss)[table.pattern_set]
            + table.per_pattern(log_theta[ec, :, el] - miss[ec])
        )
        # Spurious: exactly one rater c drew (label l): lam_c / sum_{r read} lam_r * phi_c[l].
        spurious = np.full(table.num_patterns, -np.inf)
        single = np.flatnonzero(table.drawers()[table.entry_pattern] == 1)
        if single.size:
            u, c, lab = table.entry_pattern[single], ec[single], el[single]
            lam_sum = table.per_set(lam)[table.pattern_set[u]]
            spurious[u] = np.log(lam[c]) - np.log(lam_sum) + np.log(phi[c, lab])
        out[:, k] = log_pi[k] + spurious
        return out

    @staticmethod
    def _consensus(box: _SharedBoxes, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
        """Precision-weighted mean box (J_s, 4), its variance factor 1/sum(prec) (J_s,),
        and the sums behind them: sum(prec * box) (J_s, 4), sum(prec) (J_s,), prec (E,)."""
        prec = 1.0 / sigma[box.column] ** 2
        tot = np.bincount(box.cluster, weights=prec, minlength=box.num_clusters)
        num = bincount_rows(box.cluster, box.boxes * prec[:, None], box.num_clusters)
        return num / tot[:, None], 1.0 / tot, num, tot, prec

    def _box_m_step(self, box: _SharedBoxes, sigma: np.ndarray, w: np.ndarray) -> np.ndarray:
        """New sigma (R,) from the clusters with >= 2 boxes and their object posteriors
        ``w`` (J_s,)."""
        if box.num_clusters == 0:
            return sigma.copy()
        t, var = self._consensus(box, sigma)[:2]
        cl = box.cluster
        e = (box.boxes - t[cl]) / box_scale(t)[cl, None]
        sq = (e**2).sum(1) + 4.0 * var[cl]  # (E,)
        wj = w[cl]
        n_r = sigma.shape[0]
        s0 = self.box_prior_strength
        num = np.bincount(box.column, weights=wj * sq, minlength=n_r)
        num = num + 4.0 * s0 * self.box_prior_sigma**2
        den = 4.0 * (np.bincount(box.column, weights=wj, minlength=n_r) + s0)
        new = np.where(den > 0, num / np.where(den > 0, den, 1.0), sigma**2)
        # Floor: a rater drawing pixel-identical copies of another would otherwise reach 0.
        return np.sqrt(np.maximum(new, 1e-8))

    def _loo_box_iou(self, box: _SharedBoxes, sigma: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Per rater, the ``w``-weighted mean IoU of its box to the consensus of the other
        boxes of its cluster (arguments as :meth:`_box_m_step`); NaN for a rater in no
        such cluster."""
        n_r = sigma.shape[0]
        out = np.full(n_r, np.nan)
        if box.num_clusters == 0:
            return out
        _, _, num, tot, prec = self._consensus(box, sigma)
        cl = box.cluster
        others = (num[cl] - box.boxes * prec[:, None]) / (tot[cl] - prec)[:, None]
        ious = paired_box_iou(box.boxes, others)
        ww = w[cl]
        w_sum = np.bincount(box.column, weights=ww, minlength=n_r)
        iou_sum = np.bincount(box.column, weights=ious * ww, minlength=n_r)
        ok = (np.bincount(box.column, minlength=n_r) > 0) & (w_sum > 0)
        out[ok] = iou_sum[ok] / w_sum[ok]
        return out

    # ------------------------------------------------------------------ inference
    def posterior(
        self, image: Detections, clustered: ClusteredImage | None = None
    ) -> tuple[ClusteredImage, np.ndarray]:
        """Cluster an image and compute each cluster's posterior over the true class.

        Raters not seen in :meth:`fit` use the mean parameters of the fitted raters.

        Args:
            image (Detections): any image (need not be in the fit data).
            clustered (ClusteredImage | None): its clusters, as :meth:`fit` takes them.
                None: clustered here.

        Returns:
            tuple[ClusteredImage, np.ndarray]: the clusters and their (J, K+1) posteriors
            (last column = no_obj).
        """
        self._check_fitted()
        k = self.num_classes_
        ci = clusters_for([image], None if clustered is None else [clustered], k,
                          self.iou_thr, self.linkage)[0]  # fmt: skip
        if len(ci.clusters) == 0:
            return ci, np.zeros((0, k + 1))
        table = image_table(ci)
        theta, lam, phi = self._typical_rows(
            ci.raters, self.confusion_, self.fp_rate_, self.fp_label_dist_
        )
        logj = self._log_joint(table, np.log(self.class_prior_), theta, lam, phi)
        return ci, softmax_rows(logj)[table.cluster_pattern]

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
        names = self._class_names(class_names)

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
