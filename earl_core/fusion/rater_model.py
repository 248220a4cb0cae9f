"""What the rater models (``em``, ``presence_em``, ``bayes``) share: the images' clusters
and the model base class (numpy only).

Every rater model sees an image through its class-agnostic clusters: each rater's boxes
are clustered (:func:`~earl_core.fusion.matching.cluster_boxes`, IoU > ``iou_thr``, at most
one box per rater per cluster), so a rater who flips the class of an object lands in the
same cluster as the raters who did not. :func:`cluster_images` clusters a whole dataset at
once; :func:`cluster_tables` lays the clusters out as the sparse
:class:`~earl_core.fusion.cluster_table.ClusterTable` the EM models learn from.

:class:`RaterModelBase` holds what the models have in common: the check of their shared
parameters, the rater columns of a fit, the parameters of a rater not seen in the fit
(a typical rater), the fitted check and ``get_params``; the maths they share are
:func:`softmax_rows`, :func:`logsumexp_rows`, :func:`confusion_prior` and
:func:`box_scale`, and their posteriors derive from :class:`ClusterPosterior`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from earl_core.boxes import box_area
from earl_core.deprecation import renamed_attribute
from earl_core.fusion.base import check_iou_thr, check_number
from earl_core.fusion.cluster_table import ClusterTable, build_cluster_table
from earl_core.fusion.matching import LINKAGES, cluster_boxes, cluster_ids, cluster_segments
from earl_core.structures import Detections

__all__ = [
    'ClusterPosterior',
    'ClusteredImage',
    'RaterModelBase',
    'box_scale',
    'cluster_image',
    'cluster_images',
    'cluster_tables',
    'clusters_for',
    'confusion_prior',
    'image_table',
    'infer_num_classes',
    'logsumexp_rows',
    'softmax_rows',
]


@dataclass
class ClusteredImage:
    """Class-agnostic clusters of one image.

    Args:
        clusters (list[np.ndarray]): per cluster, indices into the image's boxes.
        raters (tuple[str, ...]): raters who read the image, in ``image.raters`` order.
        box_cluster (np.ndarray): (N,) int64, the cluster of each box.
        box_rater (np.ndarray): (N,) int64, the rater (position in ``raters``) of each
            box (``image.rater_index``).
        box_label (np.ndarray): (N,) int64 labels.
        num_classes (int): K.
    """

    clusters: list[np.ndarray]
    raters: tuple[str, ...]
    box_cluster: np.ndarray
    box_rater: np.ndarray
    box_label: np.ndarray
    num_classes: int

    @property
    def observations(self) -> np.ndarray:
        """(J, len(raters)) int64: the label each rater gave each cluster, K (= no_obj)
        when the rater has no box in it. Built on demand (clusters x raters): the EM
        models use the sparse :class:`~earl_core.fusion.cluster_table.ClusterTable`."""
        obs = np.full((len(self.clusters), len(self.raters)), self.num_classes, np.int64)
        obs[self.box_cluster, self.box_rater] = self.box_label
        return obs

    readers = renamed_attribute('raters')

    box_reader = renamed_attribute('box_rater')


@dataclass
class ClusterPosterior:
    """Base of a rater model's answer for the clusters of one image: the clusters, and in
    the subclass one row per cluster of each posterior array.

    Args:
        clustered (ClusteredImage): the clusters (indices into the image's boxes), raters
            and their (J, R) observations.
    """

    clustered: ClusteredImage

    def __len__(self) -> int:
        """J, the clusters of the image."""
        return len(self.clustered.clusters)


def cluster_image(
    image: Detections, num_classes: int, iou_thr: float = 0.4, linkage: str = 'average'
) -> ClusteredImage:
    """Cluster one image's boxes class-agnostically (at most one box per rater per cluster).

    Args:
        image (Detections): all raters' boxes of the image.
        num_classes (int): K; observation K means "no box in this cluster" (no_obj).
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): see :func:`cluster_boxes`. Defaults to ``'average'``.

    Returns:
        ClusteredImage: the clusters and, per box, its cluster, rater and label.
    """
    labels = image.labels
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f'image {image.image_id!r}: label {int(labels.max())} >= num_classes={num_classes}'
        )
    clusters = cluster_boxes(image.boxes, image.rater_index, iou_thr, linkage=linkage)
    return ClusteredImage(
        clusters=clusters,
        raters=image.raters,
        box_cluster=cluster_ids(clusters, len(labels)),
        box_rater=image.rater_index,
        box_label=labels,
        num_classes=int(num_classes),
    )


def cluster_images(
    images: Sequence[Detections], num_classes: int, iou_thr: float = 0.4, linkage: str = 'average'
) -> list[ClusteredImage]:
    """:func:`cluster_image` of every image, computed for all images at once
    (:func:`~earl_core.fusion.matching.cluster_segments`): the same clusters, without a
    Python loop over the images' boxes.

    Args:
        images (Sequence[Detections]): the images.
        num_classes (int): K.
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        linkage (str): see :func:`cluster_boxes`. Defaults to ``'average'``.

    Returns:
        list[ClusteredImage]: per image, as :func:`cluster_image` returns it.
    """
    images = list(images)
    for im in images:
        if im.labels.size and im.labels.max() >= num_classes:
            raise ValueError(
                f'image {im.image_id!r}: label {int(im.labels.max())} >= num_classes={num_classes}'
            )
    sizes = np.fromiter((len(im) for im in images), np.int64, count=len(images))
    if not sizes.sum():
        return [cluster_image(im, num_classes, iou_thr, linkage) for im in images]
    cid = cluster_segments(
        np.concatenate([im.boxes for im in images]),
        sizes,
        np.concatenate([im.rater_index for im in images]),
        iou_thr,
        None,
        linkage,
    )
    box_start = np.cumsum(sizes) - sizes
    # Clusters are numbered image by image: image i holds clusters first[i]..first[i+1]-1.
    n_cl = np.zeros(len(images), np.int64)
    has = sizes > 0
    n_cl[has] = np.maximum.reduceat(cid, box_start[has]) - cid[box_start[has]] + 1
    first = np.cumsum(n_cl) - n_cl
    order = np.argsort(cid, kind='stable')  # box indices cluster by cluster, ascending
    local = order - np.repeat(box_start, sizes)[order]
    members = np.split(local, np.cumsum(np.bincount(cid))[:-1])
    out = []
    for i, im in enumerate(images):
        f, m = int(first[i]), int(n_cl[i])
        out.append(
            ClusteredImage(
                clusters=members[f : f + m],
                raters=im.raters,
                box_cluster=cid[box_start[i] : box_start[i] + sizes[i]] - f,
                box_rater=im.rater_index,
                box_label=im.labels,
                num_classes=int(num_classes),
            )
        )
    return out


def infer_num_classes(images: Sequence[Detections], num_classes: int | None) -> int:
    """K: ``num_classes``, or 1 + the largest label of ``images`` when it is None."""
    if num_classes is not None:
        return num_classes
    return 1 + max((int(np.max(im.labels)) for im in images if len(im.labels)), default=0)


def clusters_for(
    images: list[Detections],
    clustered: Sequence[ClusteredImage] | None,
    k: int,
    iou_thr: float,
    linkage: str,
) -> list[ClusteredImage]:
    """``clustered`` checked against ``images``, or the images clustered now."""
    if clustered is None:
        return cluster_images(images, k, iou_thr, linkage)
    clustered = list(clustered)
    if len(clustered) != len(images):
        raise ValueError(f'{len(clustered)} clustered images for {len(images)} images')
    for im, ci in zip(images, clustered):
        if ci.num_classes != k or ci.box_cluster.shape[0] != len(im):
            raise ValueError(
                f'image {im.image_id!r}: its clusters were made for another image or another '
                f'number of classes ({ci.num_classes}, not {k})'
            )
    return clustered


def cluster_tables(
    clustered: Sequence[ClusteredImage], columns: Sequence[np.ndarray], num_columns: int, k: int
) -> ClusterTable:
    """The :class:`ClusterTable` of clustered images whose raters have the given columns.

    Args:
        clustered (Sequence[ClusteredImage]): the images' clusters.
        columns (Sequence[np.ndarray]): per image, (R_i,) int64 column of each rater.
        num_columns (int): C.
        k (int): K.
    """
    return build_cluster_table(
        k,
        num_columns,
        columns,
        [ci.box_cluster for ci in clustered],
        [ci.box_rater for ci in clustered],
        [ci.box_label for ci in clustered],
        [len(ci.clusters) for ci in clustered],
    )


def image_table(ci: ClusteredImage) -> ClusterTable:
    """The :class:`ClusterTable` of one image, its raters as the columns, one pattern per
    cluster (no compression: a posterior is computed once per cluster anyway)."""
    n, n_cl = len(ci.raters), len(ci.clusters)
    return ClusterTable(
        k=ci.num_classes,
        num_columns=n,
        set_images=np.ones(1),
        set_size=np.array([n], np.int64),
        pair_set=np.zeros(n, np.int64),
        pair_column=np.arange(n, dtype=np.int64),
        pattern_set=np.zeros(n_cl, np.int64),
        pattern_count=np.ones(n_cl),
        entry_pattern=ci.box_cluster,
        entry_column=ci.box_rater,
        entry_label=ci.box_label,
        cluster_pattern=np.arange(n_cl, dtype=np.int64),
    )


def box_scale(boxes: np.ndarray) -> np.ndarray:
    """sqrt(area) of xyxy boxes, at least 1 px: the object size that box errors are
    relative to."""
    return np.maximum(np.sqrt(box_area(boxes)), 1.0)


def confusion_prior(n: int, diag: float, strength: float) -> np.ndarray:
    """Dirichlet pseudo-counts (n, n) of a confusion matrix: a share ``diag`` of
    ``strength`` on the diagonal, the rest spread evenly (all of it on one class)."""
    alpha = np.full((n, n), (1.0 - diag) / max(n - 1, 1))
    np.fill_diagonal(alpha, diag if n > 1 else 1.0)
    return alpha * strength


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of a (J, M) array, (J,)."""
    if a.shape[0] == 0:
        return np.zeros(0)
    mx = a.max(1, keepdims=True)
    return (mx + np.log(np.exp(a - mx).sum(1, keepdims=True)))[:, 0]


def softmax_rows(logj: np.ndarray) -> np.ndarray:
    """Softmax of each row of a (J, M) array of log-weights."""
    if logj.shape[0] == 0:
        return logj.copy()
    q = np.exp(logj - logj.max(1, keepdims=True))
    return q / q.sum(1, keepdims=True)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class RaterModelBase:
    """What the rater models (``RaterEM``, ``PresenceEM``, ``BayesRaterModel``) share.

    A subclass lists its own constructor arguments in ``param_names``, checks the shared
    ones (``shared_params``) with :meth:`_check_shared` and sets ``raters_`` (None until
    fitted) and, once fitted, ``num_classes_`` and ``_rater_index`` (rater -> its row in
    the fitted arrays).
    """

    #: The constructor arguments every rater model has, checked by :meth:`_check_shared`.
    shared_params: ClassVar[tuple[str, ...]] = (
        'num_classes',
        'iou_thr',
        'linkage',
        'max_iter',
        'tol',
        'prior_strength',
        'prior_diag',
    )
    #: The subclass's other constructor arguments, reported by :meth:`get_params` after
    #: the shared ones.
    param_names: ClassVar[tuple[str, ...]] = ()
    raters_: tuple[str, ...] | None
    num_classes_: int

    def _check_shared(
        self,
        num_classes: Any,
        iou_thr: Any,
        linkage: Any,
        max_iter: Any,
        tol: Any,
        prior_strength: Any,
        prior_diag: Any,
    ) -> None:
        """Check and set the parameters every rater model has; a ValueError names the
        model, the parameter and the value. Also marks the model unfitted."""
        where = type(self).__name__
        if num_classes is not None and not _positive_int(num_classes):
            raise ValueError(
                f'{where}: num_classes must be a positive int or None, got {num_classes!r}'
            )
        if not _positive_int(max_iter):
            raise ValueError(f'{where}: max_iter must be an int >= 1, got {max_iter!r}')
        if linkage not in LINKAGES:
            raise ValueError(f'{where}: linkage must be one of {LINKAGES}, got {linkage!r}')
        self.num_classes = num_classes
        self.iou_thr = check_iou_thr(iou_thr, where)
        self.linkage = linkage
        self.max_iter = max_iter
        self.tol = check_number(tol, 'tol', where, 0, open_low=True)
        self.prior_strength = check_number(
            prior_strength, 'prior_strength', where, 0, open_low=True
        )
        self.prior_diag = check_number(prior_diag, 'prior_diag', where, 0, 1)
        self.raters_ = None
        self._with_mean: tuple[np.ndarray, ...] | None = None

    @property
    def fitted(self) -> bool:
        return self.raters_ is not None

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError(f'{type(self).__name__} is not fitted: call fit(images) first')

    def _fit_table(
        self, images: list[Detections], clustered: Sequence[ClusteredImage] | None, k: int
    ) -> tuple[
        tuple[str, ...], dict[str, int], list[np.ndarray], list[ClusteredImage], ClusterTable
    ]:
        """What a fit starts from: the raters (sorted), their columns (rater -> index),
        each image's rater columns, its clusters (:func:`clusters_for`) and their table."""
        raters = tuple(sorted({r for im in images for r in im.raters}))
        if not raters:
            raise ValueError(f'{type(self).__name__}.fit: no rater read any image')
        col = {r: i for i, r in enumerate(raters)}
        columns = [
            np.fromiter((col[r] for r in im.raters), np.int64, count=len(im.raters))
            for im in images
        ]
        clustered = clusters_for(images, clustered, k, self.iou_thr, self.linkage)
        return raters, col, columns, clustered, cluster_tables(clustered, columns, len(raters), k)

    def _typical_rows(self, raters: Sequence[str], *per_rater: np.ndarray) -> tuple:
        """The rows of the fitted per-rater arrays for ``raters``; a rater not seen in fit
        gets the mean of the fitted raters (a typical rater). The arrays with their mean
        row are kept after the first call, until the next fit."""
        if self._with_mean is None:  # the fitted raters, then the mean rater
            self._with_mean = tuple(
                np.concatenate([a, a.mean(0, keepdims=True)]) for a in per_rater
            )
        n_r = len(self.raters_)
        get = self._rater_index.get
        idx = np.fromiter((get(r, n_r) for r in raters), np.int64, count=len(raters))
        return tuple(a[idx] for a in self._with_mean)

    def _class_names(self, class_names: Sequence[str] | None) -> list[str]:
        """``num_classes_`` names as str: ``class_names`` or ``'0'..'K-1'``."""
        k = self.num_classes_
        names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
        if len(names) != k:
            raise ValueError(f'class_names has {len(names)} names for {k} classes')
        return names

    def get_params(self) -> dict:
        """Constructor arguments (for logging / the fused file's ``info``)."""
        return {name: getattr(self, name) for name in (*self.shared_params, *self.param_names)}
