"""Truth inference behind one interface: ``na``, ``rater:<id>``, ``mv``, ``wbf``, ``em``,
``presence_em``, ``bayes``.

An aggregator turns all raters' boxes of one image (:class:`RaterBoxes`) into one set of
boxes with a per-box confidence c (:class:`FusedBoxes`). Aggregators that learn from the
whole dataset (``em``, ``presence_em``) do so in :meth:`Aggregator.fit`; the others ignore
it. The interface and registry live in :mod:`earl_core.fusion.base`; ``wbf``
(the default, the paper's) lives with the fusion it runs, in :mod:`earl_core.fusion.wbf`.

=================  ==========================================================================
name               what it does
=================  ==========================================================================
``na``             every rater's box kept as is, agreement 1 (the paper's baseline).
``rater:<id>``     one rater's boxes only (e.g. ``rater:R8``).
``mv``             majority vote: cluster across raters, vote the label, keep a cluster when
                   at least ``quorum`` raters voted its label.
``wbf``            the paper (Algorithm 1): label-wise WBF, one list per rater, scores 1,
                   optional per-rater proficiencies as weights.
``em``             Dawid-Skene EM over class-agnostic clusters with a box-error model, then
                   reliability-weighted box fusion (:mod:`earl_core.fusion.em`).
``presence_em``    EM with per-rater sensitivity and false-positive propensity: each
                   cluster's posterior that it is a real object (presence) and its label
                   posterior (:mod:`earl_core.fusion.presence_em`); box fused as ``em``.
``bayes``          Bayesian rater model by variational EM: per-rater confusion with a
                   background class and box precision, unseen sites modelled; soft class
                   distribution per box (:mod:`earl_core.fusion.bayes`).
=================  ==========================================================================

Confidence modes (the confidence c, ``confidence=``; ``docs/aggregators.md``):
``agreement`` = T, the number of raters behind the fused label; ``agreement_ratio`` = T / R
with R the raters who read the image (the paper's c, default of ``mv`` and ``wbf``);
``fused_score`` = the WBF score (for equal weights min(boxes, R) / R, for ``em`` the
proficiency-weighted fraction); ``posterior`` (``em``, its default) = the EM posterior
probability of the fused label; ``presence`` (``presence_em``, its default) = the posterior
that the box is a real object (``posterior`` there: real and of the fused label). ``na`` and
``rater:<id>`` default to ``agreement`` (c = 1).

Examples:
    >>> agg = build_aggregator('mv', quorum=2)
    >>> im = RaterBoxes(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50.]]),
    ...                 np.array([0, 0, 1]), np.array(['a', 'b', 'c']), ('a', 'b', 'c'))
    >>> res = agg(im)
    >>> res.boxes.tolist(), res.agreement.tolist(), res.confidence.tolist()
    ([[0.5, 0.0, 10.5, 10.0]], [2], [0.6666666865348816])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Union

import numpy as np

from earl_core.boxes import check_iou_thr
from earl_core.fusion.base import (
    AGGREGATORS,
    CONFIDENCE_MODES,
    Aggregator,
    agreement_confidence,
    register_aggregator,
)
from earl_core.fusion.bayes import BayesAggregator
from earl_core.fusion.cluster_table import bincount_rows
from earl_core.fusion.em import ClusteredImage, RaterEM, cluster_images, infer_num_classes
from earl_core.fusion.matching import LINKAGES, cluster_boxes
from earl_core.fusion.presence_em import CONFIDENCE_MODES as PRESENCE_MODES
from earl_core.fusion.presence_em import PresenceEM
from earl_core.fusion.wbf import WBFAggregator
from earl_core.io.coco import FusedBoxes, RaterBoxes

__all__ = [
    'CONFIG_AGGREGATORS',
    'AGGREGATORS',
    'Aggregator',
    'BayesAggregator',
    'EMAggregator',
    'MajorityVoteAggregator',
    'NoAggregation',
    'PresenceEMAggregator',
    'SingleRater',
    'WBFAggregator',
    'build_aggregator',
    'register_aggregator',
]

#: Names shown in error messages, in the order of the documentation.
_SPELLINGS = ('na', 'rater:<id>', 'mv', 'wbf', 'em', 'presence_em', 'bayes')

AggregatorSpec = Union[str, Mapping]


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


def _member_raters(image: RaterBoxes, members: Sequence[np.ndarray]) -> list[tuple[str, ...]]:
    """Per group of box indices, the raters of its boxes (in box order)."""
    raters, index = image.raters, image.rater_index
    return [tuple([raters[x] for x in index[m].tolist()]) for m in members]


def _one_box_each(image: RaterBoxes, idx: np.ndarray, c: float, num_raters: int) -> FusedBoxes:
    """Boxes ``idx`` of ``image`` kept as they are, each its own fused box (T = 1, c)."""
    if idx.size == 0:
        return FusedBoxes.empty(num_raters)
    idx = idx.astype(np.int64)
    return FusedBoxes(
        boxes=image.boxes[idx].astype(np.float32),
        labels=image.labels[idx],
        confidence=np.full(idx.size, c, np.float32),
        agreement=np.ones(idx.size, np.int64),
        num_raters=num_raters,
        members=list(idx[:, None]),
        member_raters=[(image.raters[x],) for x in image.rater_index[idx].tolist()],
    )


def _clusters_fused(
    image: RaterBoxes,
    clusters: Sequence[np.ndarray],
    box_cluster: np.ndarray,
    keep: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    agreement: np.ndarray,
    box_weight: np.ndarray,
    num_raters: int,
) -> FusedBoxes:
    """One fused box per kept cluster (em, presence_em), in cluster order.

    Args:
        image (RaterBoxes): the image.
        clusters (Sequence[np.ndarray]): (J) per cluster, its box indices (sorted).
        box_cluster (np.ndarray): (N,) the cluster of each box.
        keep (np.ndarray): (M,) the clusters to keep, ascending.
        labels, confidence, agreement (np.ndarray): (J,) per cluster.
        box_weight (np.ndarray): (N,) weight of each box in its cluster's fused box, the
            weighted mean of all the cluster's boxes.
        num_raters (int): R.
    """
    if keep.size == 0:
        return FusedBoxes.empty(num_raters)
    n_cl = len(clusters)
    num = bincount_rows(box_cluster, image.boxes * box_weight[:, None], n_cl)[keep]
    den = np.bincount(box_cluster, weights=box_weight, minlength=n_cl)[keep]
    members = [clusters[j] for j in keep.tolist()]
    return FusedBoxes(
        boxes=(num / den[:, None]).astype(np.float32),
        labels=labels[keep].astype(np.int64),
        confidence=confidence[keep].astype(np.float32),
        agreement=agreement[keep].astype(np.int64),
        num_raters=int(num_raters),
        members=members,
        member_raters=_member_raters(image, members),
    )


def _agreement_confidence(t: np.ndarray, r: int, mode: str) -> np.ndarray:
    """:func:`agreement_confidence` of agreements ``t`` (M,) on an image read by R = r."""
    if mode == 'agreement':
        return t.astype(np.float64)
    if r <= 0:
        return np.zeros(t.shape)
    return (t if mode == 'agreement_ratio' else np.minimum(t, r)) / float(r)


@register_aggregator('na')
class NoAggregation(Aggregator):
    """Every rater's box kept unchanged, agreement T = 1 (the paper's NA baseline).

    Confidence: ``agreement`` (default) = T = 1, every box weighs the same;
    ``agreement_ratio`` and ``fused_score`` = 1 / R (a one-rater cluster's WBF score).

    Args:
        confidence (str | None): ``'agreement'`` (default), ``'agreement_ratio'`` or
            ``'fused_score'``.
        score_mode (str | None): deprecated name of ``confidence``.
    """

    default_confidence: ClassVar[str] = 'agreement'

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        r = len(image.raters)
        idx = np.arange(len(image), dtype=np.int64)
        return _one_box_each(image, idx, agreement_confidence(1, r, self.confidence), r)


@register_aggregator('rater')
class SingleRater(Aggregator):
    """One rater's boxes only (spec ``'rater:<id>'``), agreement 1, R = 1.

    R is 1 because the result speaks for that rater alone, so every confidence mode gives
    c = 1.

    Args:
        rater (str | int): the rater id (compared as str).
        on_missing (str): what to do on an image the rater did not read: ``'error'``
            (default) raises ValueError; ``'skip'`` returns an empty result with
            ``num_raters = 0`` ("nobody read it"), which ``tools/fuse_annotations.py``
            drops from its output. An empty result with R = 1 would instead claim the
            rater saw no finding.
        confidence (str | None): ``'agreement'`` (default), ``'agreement_ratio'`` or
            ``'fused_score'`` (all give 1).
        score_mode (str | None): deprecated name of ``confidence``.
    """

    param_names = ('rater', 'on_missing')
    default_confidence: ClassVar[str] = 'agreement'

    def __init__(
        self,
        rater: str | int,
        on_missing: str = 'error',
        confidence: str | None = None,
        score_mode: str | None = None,
    ) -> None:
        super().__init__(confidence, score_mode)
        if isinstance(rater, bool) or not isinstance(rater, (str, int)) or str(rater) == '':
            raise ValueError(f"aggregator 'rater': rater must be a non-empty id, got {rater!r}")
        if on_missing not in ('error', 'skip'):
            raise ValueError(
                f"aggregator 'rater': on_missing must be 'error' or 'skip', got {on_missing!r}"
            )
        self.rater = str(rater)
        self.on_missing = on_missing

    def reads(self, image: RaterBoxes) -> bool:
        """Whether the rater read ``image``."""
        return self.rater in image.raters

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        if not self.reads(image):
            if self.on_missing == 'skip':
                return FusedBoxes.empty(0)
            raise ValueError(
                f'rater {self.rater!r} did not read image {image.image_id!r} (its raters: '
                f"{list(image.raters)!r}); use on_missing='skip' to leave such images out"
            )
        idx = np.flatnonzero(image.rater_index == image.raters.index(self.rater))
        return _one_box_each(image, idx, agreement_confidence(1, 1, self.confidence), 1)


@register_aggregator('mv')
class MajorityVoteAggregator(Aggregator):
    """Majority vote with a quorum.

    Boxes are clustered across raters (:func:`cluster_boxes`: greedy agglomerative, IoU >
    ``iou_thr``, at most one box per rater per cluster; class-agnostic by default). Each
    cluster's label is the label most of its raters drew (tie: the smallest label index);
    the T raters who drew that label must reach the quorum, and their boxes form the fused
    box (``members``, ``member_raters``; boxes of a minority label are discarded).

    Args:
        iou_thr (float): clustering IoU threshold (strict). Defaults to 0.4.
        quorum (int | float | None): raters needed. None (default) = a strict majority,
            T > R / 2; an int k >= 1 = T >= k; a float f in (0, 1] = T >= f * R. An int
            above an image's R leaves that image without a box: warned once per aggregator
            (UserWarning naming the image and R).
        box_mode (str): ``'average'`` (mean coordinates, default), ``'union'`` (enclosing
            box) or ``'intersection'`` (common area; falls back to the average if the boxes
            share no area).
        class_agnostic (bool): cluster across labels, then vote (default True); False
            clusters each label separately (then T = cluster size).
        linkage (str): ``'average'``, ``'complete'`` or ``'single'``. Defaults to 'average'.
        confidence (str | None): ``'agreement_ratio'`` (T/R, default), ``'agreement'`` (T)
            or ``'fused_score'`` (= T/R with equal weights).
        score_mode (str | None): deprecated name of ``confidence``.
    """

    param_names = ('iou_thr', 'quorum', 'box_mode', 'class_agnostic', 'linkage')
    box_modes: ClassVar[tuple[str, ...]] = ('average', 'union', 'intersection')

    def __init__(
        self,
        iou_thr: float = 0.4,
        quorum: int | float | None = None,
        box_mode: str = 'average',
        class_agnostic: bool = True,
        linkage: str = 'average',
        confidence: str | None = None,
        score_mode: str | None = None,
    ) -> None:
        super().__init__(confidence, score_mode)
        self.iou_thr = check_iou_thr(iou_thr, "aggregator 'mv'")
        if quorum is not None:
            if isinstance(quorum, bool) or not isinstance(quorum, (int, float)):
                raise ValueError(
                    f"aggregator 'mv': quorum must be int, float or None, got {quorum!r}"
                )
            if isinstance(quorum, int) and quorum < 1:
                raise ValueError(f"aggregator 'mv': an int quorum must be >= 1, got {quorum!r}")
            if isinstance(quorum, float) and not 0.0 < quorum <= 1.0:
                raise ValueError(
                    f"aggregator 'mv': a float quorum is a fraction of R in (0, 1], got {quorum!r}"
                )
        if box_mode not in self.box_modes:
            raise ValueError(
                f"aggregator 'mv': box_mode must be one of {self.box_modes}, got {box_mode!r}"
            )
        if linkage not in LINKAGES:
            raise ValueError(f"aggregator 'mv': linkage must be one of {LINKAGES}, got {linkage!r}")
        self.quorum = quorum
        self._warned_quorum = False
        self.box_mode = box_mode
        self.class_agnostic = bool(class_agnostic)
        self.linkage = linkage

    def required_votes(self, num_raters: int | np.ndarray) -> int | np.ndarray:
        """Smallest T that passes the quorum on an image read by ``num_raters`` raters (an
        int, or an int array of several images)."""
        if self.quorum is None:
            return num_raters // 2 + 1
        if isinstance(self.quorum, int):
            return self.quorum
        # Tolerance so that e.g. 2/3 * 3 asks for 2 raters, not 3.
        if isinstance(num_raters, np.ndarray):
            return np.maximum(1, np.ceil(self.quorum * num_raters - 1e-9)).astype(np.int64)
        return max(1, math.ceil(self.quorum * num_raters - 1e-9))

    def vote(
        self,
        boxes: np.ndarray,
        labels: np.ndarray,
        cluster: np.ndarray,
        num_clusters: int,
        num_raters: int,
    ) -> tuple[np.ndarray, ...]:
        """The vote and box merge of every cluster at once (numpy, no loop over clusters).

        Args:
            boxes (np.ndarray): (N, 4) float64 xyxy.
            labels (np.ndarray): (N,) labels.
            cluster (np.ndarray): (N,) cluster of each box, 0..num_clusters-1, every
                cluster holding a box.
            num_clusters (int): number of clusters.
            num_raters (int | np.ndarray): R, for the quorum; or (num_clusters,) the R of
                each cluster's image.

        Returns:
            tuple[np.ndarray, ...]: ``kept`` (M,) the clusters that pass the quorum, ordered
            by their smallest box index; per cluster (num_clusters,) the winning label
            (the most voted, ties: the smallest) and its votes T; ``voter`` (N,) bool, the
            boxes of a kept cluster that carry its label; ``merged`` (num_clusters, 4)
            float64, the fused box of each kept cluster (``box_mode`` of its voters).
        """
        lab_values, lab = np.unique(labels, return_inverse=True)
        lab = lab.reshape(-1)
        nl = len(lab_values)
        # Votes per (cluster, label); per cluster the most voted label, ties: the smallest.
        key, votes = np.unique(cluster * nl + lab, return_counts=True)
        kc, kl = key // nl, key % nl
        o = np.lexsort((kl, -votes, kc))
        top = o[np.r_[True, kc[o][1:] != kc[o][:-1]]]
        winner, t = kl[top], votes[top]  # indexed by cluster (kc[top] == 0..n-1)
        ok = t >= self.required_votes(num_raters)
        voter = ok[cluster] & (lab == winner[cluster])
        vc, vb = cluster[voter], boxes[voter]
        n = num_clusters
        if self.box_mode == 'average':
            merged = _summed(vc, vb, n) / t[:, None]
        else:
            lo = np.full((n, 2), np.inf)
            hi = np.full((n, 2), -np.inf)
            if self.box_mode == 'union':
                np.minimum.at(lo, vc, vb[:, :2])
                np.maximum.at(hi, vc, vb[:, 2:])
                merged = np.concatenate([lo, hi], 1)
            else:  # intersection, the average where it is empty
                lo[:] = -np.inf
                hi[:] = np.inf
                np.maximum.at(lo, vc, vb[:, :2])
                np.minimum.at(hi, vc, vb[:, 2:])
                merged = np.concatenate([lo, hi], 1)
                empty = (merged[:, 2] <= merged[:, 0]) | (merged[:, 3] <= merged[:, 1])
                merged[empty] = (_summed(vc, vb, n) / t[:, None])[empty]
        first = np.full(n, cluster.shape[0])
        np.minimum.at(first, cluster, np.arange(cluster.shape[0]))
        kept = np.flatnonzero(ok)
        kept = kept[np.argsort(first[kept], kind='stable')]
        return kept, lab_values[winner], t, voter, merged

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        r = len(image.raters)
        boxes, labels = image.boxes, image.labels
        need = self.required_votes(r)
        if need > r > 0 and not self._warned_quorum:
            self._warned_quorum = True
            warnings.warn(
                f"aggregator 'mv': quorum {self.quorum!r} exceeds the R = {r} raters who read "
                f'image {image.image_id!r}, so none of its boxes can pass (warned once; '
                'a fraction such as quorum=0.5 adapts to R)',
                stacklevel=2,
            )
        clusters = cluster_boxes(
            boxes,
            image.rater_index,
            self.iou_thr,
            None if self.class_agnostic else labels,
            self.linkage,
        )
        if not clusters:
            return FusedBoxes.empty(r)
        cluster = _box_cluster(clusters, len(labels))
        kept, winner, t, voter, merged = self.vote(boxes, labels, cluster, len(clusters), r)
        if kept.size == 0:
            return FusedBoxes.empty(r)
        members = [clusters[j][voter[clusters[j]]] for j in kept.tolist()]
        return FusedBoxes(
            boxes=merged[kept].astype(np.float32),
            labels=winner[kept].astype(np.int64),
            confidence=_agreement_confidence(t[kept], r, self.confidence).astype(np.float32),
            agreement=t[kept].astype(np.int64),
            num_raters=r,
            members=members,
            member_raters=_member_raters(image, members),
        )


def _box_cluster(clusters: Sequence[np.ndarray], n: int) -> np.ndarray:
    """(n,) int64: the cluster of each box."""
    out = np.zeros(n, np.int64)
    out[np.concatenate(clusters)] = np.repeat(np.arange(len(clusters)), [len(c) for c in clusters])
    return out


def _summed(cluster: np.ndarray, boxes: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) sums of the boxes per cluster, added in box order (as ``ndarray.sum(0)``)."""
    out = np.zeros((n, 4))
    np.add.at(out, cluster, boxes)
    return out


@register_aggregator('em')
class EMAggregator(Aggregator):
    """Rater reliability by EM (:class:`~earl_core.fusion.em.RaterEM`), then weighted fusion.

    :meth:`fit` runs EM on the dataset. Each image's class-agnostic clusters then get:

    * label: the posterior argmax over the classes and ``no_obj``; a cluster whose argmax
      is ``no_obj`` is dropped (``drop_no_object=True``, default) - that removes most
      one-rater boxes of a flipped class that label-wise WBF keeps as separate boxes;
      with ``drop_no_object=False`` the argmax over the real classes is kept instead;
    * box: the weighted mean of *all* the cluster's boxes (a rater who flipped the label
      still located the object), weights from ``box_weights`` (default ``'box'`` =
      1 / sigma_r^2 of the box-error model, the maximum-likelihood estimate);
    * agreement T: the raters whose box in the cluster carries the fused label (so it can
      be lower than ``len(member_raters)``, and even 0 when EM overrules every rater);
      ``members`` / ``member_raters``: every box / rater of the cluster;
    * confidence: ``posterior`` (default) = posterior probability of the label;
      ``agreement`` = T; ``agreement_ratio`` = T / R; ``fused_score`` = the
      proficiency-weighted share of the readers behind the label,
      sum_{r in T} p_r / sum_{r read} p_r.

    Args:
        confidence (str | None): ``'posterior'`` (default), ``'agreement'``,
            ``'agreement_ratio'`` or ``'fused_score'``.
        score_mode (str | None): deprecated name of ``confidence``.
        drop_no_object (bool): drop clusters judged ``no_obj``. Defaults to True.
        box_weights (str): ``'box'``, ``'proficiency'`` or ``'uniform'``. Defaults to 'box'.
        **em_params: :class:`RaterEM` arguments (num_classes, iou_thr=0.4, linkage,
            max_iter, tol, prior_strength, prior_diag, box_prior_strength, box_prior_sigma).

    Attributes:
        model (RaterEM): the fitted EM model (confusion_, proficiency_, box_sigma_, ...).
    """

    param_names = ('drop_no_object', 'box_weights')
    confidence_modes: ClassVar[tuple[str, ...]] = CONFIDENCE_MODES[:4]
    default_confidence: ClassVar[str] = 'posterior'

    def __init__(
        self,
        confidence: str | None = None,
        drop_no_object: bool = True,
        box_weights: str = 'box',
        score_mode: str | None = None,
        **em_params: Any,
    ) -> None:
        super().__init__(confidence, score_mode)
        if box_weights not in ('box', 'proficiency', 'uniform'):
            raise ValueError(
                "aggregator 'em': box_weights must be 'box', 'proficiency' or 'uniform', got "
                f'{box_weights!r}'
            )
        self.model = self._build_model(RaterEM, em_params)
        self.drop_no_object = bool(drop_no_object)
        self.box_weights = box_weights

    def fit(self, images: Sequence[RaterBoxes]) -> EMAggregator:
        self._fit(list(images))
        return self

    def _fit(self, images: list[RaterBoxes]) -> list[ClusteredImage]:
        """Fit on ``images``; returns their clusters (one clustering for fit and fusion)."""
        m = self.model
        k = infer_num_classes(images, m.num_classes)
        clustered = cluster_images(images, k, m.iou_thr, m.linkage)
        m.fit(images, clustered=clustered)
        self._w_box = _RaterWeights(m.rater_weights(self.box_weights))
        self._w_prof = _RaterWeights(m.rater_weights('proficiency'))
        return clustered

    def fuse_all(self, images: Sequence[RaterBoxes]) -> list[FusedBoxes]:
        images = list(images)
        clustered = self._fit(images)
        return [self._fuse(im, ci) for im, ci in zip(images, clustered)]

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

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        return self._fuse(image)

    def _fuse(self, image: RaterBoxes, clustered: ClusteredImage | None = None) -> FusedBoxes:
        self._require_fitted(self.model)
        ci, q = self.model.posterior(image, clustered)
        k = self.model.num_classes_
        r = len(ci.readers)
        n_cl = len(ci.clusters)
        if n_cl == 0:
            return FusedBoxes.empty(r)
        if self.drop_no_object:
            lab = q.argmax(1)
            keep = np.flatnonzero(lab != k)
        else:
            lab = q[:, :k].argmax(1)
            keep = np.arange(n_cl)
        cl = ci.box_cluster
        agree = image.labels == lab[cl]
        t = np.bincount(cl, weights=agree, minlength=n_cl)
        if self.confidence == 'posterior':
            conf = q[np.arange(n_cl), lab]
        elif self.confidence == 'fused_score':
            w = self._w_prof.of(image.raters)
            behind = np.bincount(cl, weights=w[image.rater_index] * agree, minlength=n_cl)
            conf = behind / sum(w.tolist())
        else:
            conf = _agreement_confidence(t, r, self.confidence)
        box_w = self._w_box.of(image.raters)[image.rater_index]
        return _clusters_fused(image, ci.clusters, cl, keep, lab, conf, t, box_w, r)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), **self.model.get_params()}


#: The aggregators as the MED-MNIST configs build them (configs/medmnist/yolox_nano_*),
#: by method name; tools/score_truth.py scores these, and a test pins them to the configs.
CONFIG_AGGREGATORS: dict[str, dict[str, Any]] = {
    'na': dict(type='na'),
    'mv': dict(type='mv', confidence='agreement'),
    'wbf': dict(type='wbf', iou_thr=0.4, confidence='agreement_ratio'),
    'em': dict(type='em', confidence='posterior'),
    'presence_em': dict(type='presence_em', confidence='presence'),
    'bayes': dict(type='bayes', confidence='posterior'),
}


@register_aggregator('presence_em')
class PresenceEMAggregator(Aggregator):
    """Presence-aware EM (:class:`~earl_core.fusion.presence_em.PresenceEM`), then fusion.

    :meth:`fit` runs the presence-aware EM on the dataset (per-rater sensitivity s_r,
    false-positive propensity f_r and label confusion; ``docs/presence_em.md``). Each
    image's class-agnostic clusters (the same clusters as ``em``) then get:

    * label: the argmax of the label posterior P(y | z = 1) (ties: the lowest index);
      every cluster is kept, however low its presence: the confidence says how likely it
      is real, and a loss policy decides what to do with it (EARL weight, soft target,
      ignore region below a threshold);
    * box: as ``em`` does, the weighted mean of *all* the cluster's boxes; ``box_weights=
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
        box_weights (str): ``'box'`` or ``'uniform'``. Defaults to 'box'.
        score_mode (str | None): deprecated name of ``confidence``.
        **em_params: :class:`PresenceEM` arguments (num_classes, iou_thr=0.4, linkage,
            max_iter, tol, sensitivity_prior, fp_prior, rate_prior_strength,
            prior_strength, prior_diag).

    Attributes:
        model (PresenceEM): the fitted presence-aware EM (sensitivity_, fp_rate_, ...).
        sensitivity (dict[str, float]): rater -> s_r (after fit).
        fp_rate (dict[str, float]): rater -> f_r (after fit).
    """

    param_names = ('box_weights',)
    confidence_modes: ClassVar[tuple[str, ...]] = PRESENCE_MODES
    default_confidence: ClassVar[str] = 'presence'

    def __init__(
        self,
        confidence: str | None = None,
        box_weights: str = 'box',
        score_mode: str | None = None,
        **em_params: Any,
    ) -> None:
        super().__init__(confidence, score_mode)
        if box_weights not in ('box', 'uniform'):
            raise ValueError(
                f"aggregator 'presence_em': box_weights must be 'box' or 'uniform', got "
                f'{box_weights!r}'
            )
        self.model = self._build_model(PresenceEM, em_params)
        self.box_weights = box_weights

    def fit(self, images: Sequence[RaterBoxes]) -> PresenceEMAggregator:
        self._fit(list(images))
        return self

    def _fit(self, images: list[RaterBoxes]) -> list[ClusteredImage]:
        """Fit on ``images``; returns their clusters (one clustering for both models and
        the fusion)."""
        m = self.model
        k = infer_num_classes(images, m.num_classes)
        clustered = cluster_images(images, k, m.iou_thr, m.linkage)
        m.fit(images, clustered=clustered)
        weights = {r: 1.0 for r in m.raters_}
        if self.box_weights == 'box':
            box_em = RaterEM(num_classes=m.num_classes_, iou_thr=m.iou_thr, linkage=m.linkage)
            weights = box_em.fit(images, clustered=clustered).rater_weights('box')
        self._w_box = _RaterWeights(weights)
        return clustered

    def fuse_all(self, images: Sequence[RaterBoxes]) -> list[FusedBoxes]:
        images = list(images)
        clustered = self._fit(images)
        return [self._fuse(im, ci) for im, ci in zip(images, clustered)]

    # Exposed estimates (after fit): rater -> s_r (draws a box on a real object it reads),
    # rater -> f_r (draws a box on a spurious site it reads).
    sensitivity = property(lambda self: _per_rater(self.model, 'sensitivity_'))
    fp_rate = property(lambda self: _per_rater(self.model, 'fp_rate_'))

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        return self._fuse(image)

    def _fuse(self, image: RaterBoxes, clustered: ClusteredImage | None = None) -> FusedBoxes:
        self._require_fitted(self.model)
        post = self.model.posterior(image, clustered)
        ci = post.clustered
        r = len(ci.readers)
        n_cl = len(ci.clusters)
        if n_cl == 0:
            return FusedBoxes.empty(r)
        lab = post.labels
        cl = ci.box_cluster
        t = np.bincount(cl, weights=image.labels == lab[cl], minlength=n_cl)
        box_w = self._w_box.of(image.raters)[image.rater_index]
        conf = post.confidence(self.confidence)
        return _clusters_fused(image, ci.clusters, cl, np.arange(n_cl), lab, conf, t, box_w, r)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), **self.model.get_params()}


def build_aggregator(spec: AggregatorSpec | Aggregator, **params: Any) -> Aggregator:
    """Build an aggregator from a name or a config dict.

    Args:
        spec (str | Mapping | Aggregator): ``'na'``, ``'rater:<id>'``, ``'mv'``, ``'wbf'``,
            ``'em'``, ``'presence_em'``, ``'bayes'``, or a dict with ``type`` set to one of them
            (``{'type': 'rater', 'rater': 'R8'}`` works too) plus parameters. An
            Aggregator is returned as is (then ``params`` must be empty).
        **params: constructor parameters; they override those in a dict spec.

    Returns:
        Aggregator: a new, unfitted aggregator.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or invalid parameters.

    Examples:
        >>> build_aggregator('rater:R8').rater
        'R8'
        >>> build_aggregator({'type': 'mv', 'quorum': 2}).quorum
        2
    """
    if isinstance(spec, Aggregator):
        if params:
            raise ValueError(f'cannot apply parameters {sorted(params)} to a built {spec!r}')
        return spec
    if isinstance(spec, Mapping):
        cfg = dict(spec)
        if 'type' not in cfg:
            raise ValueError(f"aggregator config needs a 'type' key (one of {_SPELLINGS}): {cfg!r}")
        name = cfg.pop('type')
        cfg.update(params)
        params = cfg
    elif isinstance(spec, str):
        name = spec
    else:
        raise ValueError(
            f'aggregator spec must be a name or a dict, got {type(spec).__name__}: {spec!r}'
        )
    if not isinstance(name, str):
        raise ValueError(f'aggregator type must be a str, got {name!r}')
    name = name.strip()
    if name.startswith('rater:'):
        rater = name[len('rater:') :]
        if not rater:
            raise ValueError("aggregator 'rater:<id>' needs a rater id, e.g. 'rater:R8'")
        if 'rater' in params and str(params['rater']) != rater:
            raise ValueError(f'conflicting rater ids {rater!r} and {params["rater"]!r}')
        params = {**params, 'rater': rater}
        name = 'rater'
    if name not in AGGREGATORS:
        raise ValueError(f'unknown aggregator {name!r}; valid names: {", ".join(_SPELLINGS)}')
    if name == 'rater' and 'rater' not in params:
        raise ValueError("aggregator 'rater' needs a rater id: use 'rater:<id>', e.g. 'rater:R8'")
    try:
        return AGGREGATORS[name](**params)
    except TypeError as e:
        raise ValueError(f'invalid parameters for aggregator {name!r}: {e}') from e
