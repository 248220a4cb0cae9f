"""The aggregators over the EM rater models: ``em`` and ``presence_em``.

Each fits its model (:class:`~earl_core.fusion.em.RaterEM`,
:class:`~earl_core.fusion.presence_em.PresenceEM`) on the dataset, then fuses each image's
class-agnostic clusters (the clusters of the fit) into one box per cluster: the weighted
mean of *all* the cluster's boxes (a rater who flipped the label still located the object),
a label from the posterior, agreement T and a confidence c. Both are registered
(:func:`~earl_core.fusion.base.build_aggregator`) and re-exported by
:mod:`earl_core.fusion.aggregators`; ``docs/aggregators.md`` and ``docs/presence_em.md``
describe them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from earl_core.deprecation import pop_renamed_kwarg
from earl_core.fusion.base import (
    CONFIDENCE_MODES,
    ModelAggregator,
    agreement_confidence,
    raters_of,
    register_aggregator,
)
from earl_core.fusion.cluster_table import bincount_rows
from earl_core.fusion.em import RaterEM
from earl_core.fusion.presence_em import CONFIDENCE_MODES as PRESENCE_MODES
from earl_core.fusion.presence_em import PresenceEM
from earl_core.fusion.rater_model import ClusteredImage, cluster_images, infer_num_classes
from earl_core.structures import Detections

__all__ = ['EMAggregator', 'PresenceEMAggregator']


class _RaterWeights:
    """Per-rater weights of a fitted model; a rater not seen in fit weighs the mean weight
    (a typical rater)."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.mean = float(np.mean(list(table.values())))

    def of(self, raters: Sequence[str]) -> np.ndarray:
        """(len(raters),) float64 weights."""
        get, mean = self.table.get, self.mean
        return np.fromiter((get(r, mean) for r in raters), np.float64, count=len(raters))


def _per_rater(model: RaterEM | PresenceEM, attr: str) -> dict[str, float]:
    """rater -> ``model.<attr>[rater]`` of a fitted EM model (ValueError if not fitted)."""
    model._check_fitted()
    return {r: float(v) for r, v in zip(model.raters_, getattr(model, attr))}


def _fit_on_clusters(model: RaterEM | PresenceEM, images: list[Detections]) -> list[ClusteredImage]:
    """Cluster ``images`` as ``model`` does, fit it on those clusters and return them (one
    clustering for the fit and the fusion)."""
    k = infer_num_classes(images, model.num_classes)
    clustered = cluster_images(images, k, model.iou_thr, model.linkage)
    model.fit(images, clustered=clustered)
    return clustered


def _clusters_fused(
    image: Detections,
    clusters: Sequence[np.ndarray],
    box_cluster: np.ndarray,
    keep: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    agreement: np.ndarray,
    box_weight: np.ndarray,
    num_raters: int,
) -> Detections:
    """One fused box per kept cluster (em, presence_em), in cluster order.

    Args:
        image (Detections): the image.
        clusters (Sequence[np.ndarray]): (J) per cluster, its box indices (sorted).
        box_cluster (np.ndarray): (N,) the cluster of each box.
        keep (np.ndarray): (M,) the clusters to keep, ascending.
        labels, confidence, agreement (np.ndarray): (J,) per cluster.
        box_weight (np.ndarray): (N,) weight of each box in its cluster's fused box, the
            weighted mean of all the cluster's boxes.
        num_raters (int): R.
    """
    if keep.size == 0:
        return Detections.empty(num_raters, image)
    n_cl = len(clusters)
    num = bincount_rows(box_cluster, image.boxes * box_weight[:, None], n_cl)[keep]
    den = np.bincount(box_cluster, weights=box_weight, minlength=n_cl)[keep]
    members = [clusters[j] for j in keep.tolist()]
    return Detections.fused(
        boxes=(num / den[:, None]).astype(np.float32),
        labels=labels[keep].astype(np.int64),
        confidence=confidence[keep].astype(np.float32),
        agreement=agreement[keep].astype(np.int64),
        num_raters=int(num_raters),
        members=members,
        member_raters=raters_of(image, members),
        image=image,
    )


def _box_averaging(value: str | None, em_params: dict, name: str) -> str:
    """``box_averaging`` (None: ``'box'``), or its deprecated name ``box_weights`` popped
    from ``em_params``; both given is a TypeError."""
    if value is not None:
        em_params['box_averaging'] = value
    where = f'aggregator {name!r}'
    pop_renamed_kwarg(em_params, 'box_weights', 'box_averaging', where, stacklevel=5)
    return em_params.pop('box_averaging', 'box')


@register_aggregator('em')
class EMAggregator(ModelAggregator):
    """Rater reliability by EM (:class:`~earl_core.fusion.em.RaterEM`), then weighted fusion.

    :meth:`fit` runs EM on the dataset. Each image's class-agnostic clusters then get:

    * label: the posterior argmax over the classes and ``no_obj``; a cluster whose argmax
      is ``no_obj`` is dropped (``drop_no_object=True``, default) - that removes most
      one-rater boxes of a flipped class that label-wise WBF keeps as separate boxes;
      with ``drop_no_object=False`` the argmax over the real classes is kept instead;
    * box: the weighted mean of *all* the cluster's boxes (a rater who flipped the label
      still located the object), weights from ``box_averaging`` (default ``'box'`` =
      1 / sigma_r^2 of the box-error model, the maximum-likelihood estimate);
    * agreement T: the raters whose box in the cluster carries the fused label (so it can
      be lower than ``len(member_raters)``, and even 0 when EM overrules every rater);
      ``members`` / ``member_raters``: every box / rater of the cluster;
    * confidence: ``posterior`` (default) = posterior probability of the label;
      ``agreement`` = T; ``agreement_ratio`` = T / R; ``fused_score`` = the
      proficiency-weighted share of the raters behind the label,
      sum_{r in T} p_r / sum_{r read} p_r.

    Args:
        confidence (str | None): ``'posterior'`` (default), ``'agreement'``,
            ``'agreement_ratio'`` or ``'fused_score'``.
        score_mode (str | None): deprecated name of ``confidence``.
        drop_no_object (bool): drop clusters judged ``no_obj``. Defaults to True.
        box_averaging (str | None): ``'box'``, ``'proficiency'`` or ``'uniform'`` (0.1:
            ``box_weights``, deprecated; giving both is a TypeError). None = 'box'.
            Defaults to None.
        **em_params: :class:`RaterEM` arguments (num_classes, iou_thr=0.4, linkage,
            max_iter, tol, prior_strength, prior_diag, box_prior_strength, box_prior_sigma).

    Attributes:
        model (RaterEM): the fitted EM model (confusion_, proficiency_, box_sigma_, ...).
    """

    model_cls = RaterEM
    param_names = ('drop_no_object', 'box_averaging')
    confidence_modes: ClassVar[tuple[str, ...]] = CONFIDENCE_MODES[:4]
    default_confidence: ClassVar[str] = 'posterior'

    def __init__(
        self,
        confidence: str | None = None,
        drop_no_object: bool = True,
        box_averaging: str | None = None,
        score_mode: str | None = None,
        **em_params: Any,
    ) -> None:
        box_averaging = _box_averaging(box_averaging, em_params, 'em')
        if box_averaging not in ('box', 'proficiency', 'uniform'):
            raise ValueError(
                "aggregator 'em': box_averaging must be 'box', 'proficiency' or 'uniform', "
                f'got {box_averaging!r}'
            )
        super().__init__(confidence, score_mode, **em_params)
        self.drop_no_object = bool(drop_no_object)
        self.box_averaging = box_averaging

    def _fit(self, images: list[Detections]) -> list[ClusteredImage]:
        """Fit on ``images``; returns their clusters (one clustering for fit and fusion)."""
        m = self.model
        clustered = _fit_on_clusters(m, images)
        self._w_box = _RaterWeights(m.rater_weights(self.box_averaging))
        self._w_prof = _RaterWeights(m.rater_weights('proficiency'))
        return clustered

    # Exposed estimates (after fit).
    @property
    def confusion(self) -> dict[str, np.ndarray]:
        """rater -> (K+1, K+1) confusion matrix (rows: true class, last = no_obj)."""
        self.model._check_fitted()
        return dict(zip(self.model.raters_, self.model.confusion_))

    @property
    def proficiency(self) -> dict[str, float]:
        """rater -> probability of drawing a real object with its true label."""
        return _per_rater(self.model, 'proficiency_')

    @property
    def box_error(self) -> dict[str, float]:
        """rater -> relative per-coordinate box error std (sigma_r)."""
        return _per_rater(self.model, 'box_sigma_')

    def _fuse(self, image: Detections, clustered: ClusteredImage | None = None) -> Detections:
        self._require_fitted()
        ci, q = self.model.posterior(image, clustered)
        k = self.model.num_classes_
        r = len(ci.raters)
        n_cl = len(ci.clusters)
        if n_cl == 0:
            return Detections.empty(r, image)
        if self.drop_no_object:
            lab = q.argmax(1)
            keep = np.flatnonzero(lab != k)
        else:
            lab = q[:, :k].argmax(1)
            keep = np.arange(n_cl)
        cl = ci.box_cluster
        same_label = image.labels == lab[cl]
        t = np.bincount(cl, weights=same_label, minlength=n_cl)
        if self.confidence == 'posterior':
            confidence = q[np.arange(n_cl), lab]
        elif self.confidence == 'fused_score':
            w = self._w_prof.of(image.raters)
            behind = np.bincount(cl, weights=w[image.rater_index] * same_label, minlength=n_cl)
            confidence = behind / sum(w.tolist())
        else:
            confidence = agreement_confidence(t, r, self.confidence)
        box_w = self._w_box.of(image.raters)[image.rater_index]
        return _clusters_fused(image, ci.clusters, cl, keep, lab, confidence, t, box_w, r)


@register_aggregator('presence_em')
class PresenceEMAggregator(ModelAggregator):
    """Presence-aware EM (:class:`~earl_core.fusion.presence_em.PresenceEM`), then fusion.

    :meth:`fit` runs the presence-aware EM on the dataset (per-rater sensitivity s_r,
    false-positive propensity f_r and label confusion; ``docs/presence_em.md``). Each
    image's class-agnostic clusters (the same clusters as ``em``) then get:

    * label: the argmax of the label posterior P(y | z = 1) (ties: the lowest index);
      every cluster is kept, however low its presence: the confidence says how likely it
      is real, and a loss policy decides what to do with it (EARL weight, soft target,
      ignore region below a threshold);
    * box: as ``em`` does, the weighted mean of *all* the cluster's boxes; ``box_averaging=
      'box'`` (default) fits :class:`~earl_core.fusion.em.RaterEM` on the same images for
      its box-error model (weights 1 / sigma_r^2), ``'uniform'`` = the plain mean (no
      second fit);
    * agreement T: the raters whose box in the cluster carries the fused label;
      ``members`` / ``member_raters``: every box / rater of the cluster;
    * confidence: ``presence`` (default) = P(z = 1), the posterior that the cluster is a
      real object of any class; ``posterior`` = max_y P(z = 1, y) = P(z = 1) *
      max_y P(y | z = 1), real *and* of the fused label.

    Args:
        confidence (str | None): ``'presence'`` (default) or ``'posterior'``.
        box_averaging (str | None): ``'box'`` or ``'uniform'`` (0.1: ``box_weights``,
            deprecated; giving both is a TypeError). None = 'box'. Defaults to None.
        score_mode (str | None): deprecated name of ``confidence``.
        **em_params: :class:`PresenceEM` arguments (num_classes, iou_thr=0.4, linkage,
            max_iter, tol, sensitivity_prior, fp_prior, rate_prior_strength,
            prior_strength, prior_diag).

    Attributes:
        model (PresenceEM): the fitted presence-aware EM (sensitivity_, fp_rate_, ...).
        sensitivity (dict[str, float]): rater -> s_r (after fit).
        fp_rate (dict[str, float]): rater -> f_r (after fit).
    """

    model_cls = PresenceEM
    param_names = ('box_averaging',)
    confidence_modes: ClassVar[tuple[str, ...]] = PRESENCE_MODES
    default_confidence: ClassVar[str] = 'presence'

    def __init__(
        self,
        confidence: str | None = None,
        box_averaging: str | None = None,
        score_mode: str | None = None,
        **em_params: Any,
    ) -> None:
        box_averaging = _box_averaging(box_averaging, em_params, 'presence_em')
        if box_averaging not in ('box', 'uniform'):
            raise ValueError(
                f"aggregator 'presence_em': box_averaging must be 'box' or 'uniform', got "
                f'{box_averaging!r}'
            )
        super().__init__(confidence, score_mode, **em_params)
        self.box_averaging = box_averaging

    def _fit(self, images: list[Detections]) -> list[ClusteredImage]:
        """Fit on ``images``; returns their clusters (one clustering for both models and
        the fusion)."""
        m = self.model
        clustered = _fit_on_clusters(m, images)
        weights = {r: 1.0 for r in m.raters_}
        if self.box_averaging == 'box':
            box_em = RaterEM(num_classes=m.num_classes_, iou_thr=m.iou_thr, linkage=m.linkage)
            weights = box_em.fit(images, clustered=clustered).rater_weights('box')
        self._w_box = _RaterWeights(weights)
        return clustered

    # Exposed estimates (after fit): rater -> s_r (draws a box on a real object it reads),
    # rater -> f_r (draws a box on a spurious site it reads).
    sensitivity = property(lambda self: _per_rater(self.model, 'sensitivity_'))
    fp_rate = property(lambda self: _per_rater(self.model, 'fp_rate_'))

    def _fuse(self, image: Detections, clustered: ClusteredImage | None = None) -> Detections:
        self._require_fitted()
        post = self.model.posterior(image, clustered)
        ci = post.clustered
        r = len(ci.raters)
        n_cl = len(ci.clusters)
        if n_cl == 0:
            return Detections.empty(r, image)
        lab = post.labels
        cl = ci.box_cluster
        t = np.bincount(cl, weights=image.labels == lab[cl], minlength=n_cl)
        box_w = self._w_box.of(image.raters)[image.rater_index]
        confidence = post.confidence(self.confidence)
        return _clusters_fused(
            image, ci.clusters, cl, np.arange(n_cl), lab, confidence, t, box_w, r
        )
