"""Truth inference behind one interface: ``na``, ``rater:<id>``, ``mv``, ``wbf``, ``em``,
``presence_em``, ``bayes``.

An aggregator turns all raters' boxes of one image (a :class:`Detections`) into one set of
fused boxes with a per-box confidence c (another :class:`Detections`). Aggregators that
learn from the whole dataset (``em``, ``presence_em``, ``bayes``) do so in
:meth:`Aggregator.fit`; the others ignore it. This module holds the simple ones (``na``,
``rater:<id>``, ``mv``) and gathers all of them; the interface, the registry and
:func:`build_aggregator` live in :mod:`earl_core.fusion.base`, ``wbf`` (the default, the
paper's) with the fusion it runs in :mod:`earl_core.fusion.wbf`, ``em`` and ``presence_em``
in :mod:`earl_core.fusion.em_aggregators`, ``bayes`` with its model in
:mod:`earl_core.fusion.bayes`.

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
    >>> im = Detections.from_raters(
    ...     np.array([[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50.]]),
    ...     np.array([0, 0, 1]), np.array(['a', 'b', 'c']), ('a', 'b', 'c'))
    >>> res = agg(im)
    >>> res.boxes.tolist(), res.agreement.tolist(), res.confidence.tolist()
    ([[0.5, 0.0, 10.5, 10.0]], [2], [0.6666666865348816])
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from earl_core.deprecation import renamed_attribute
from earl_core.fusion.base import (
    AGGREGATORS,
    Aggregator,
    AggregatorSpec,
    agreement_confidence,
    build_aggregator,
    check_iou_thr,
    raters_of,
    register_aggregator,
)
from earl_core.fusion.bayes import BayesAggregator
from earl_core.fusion.em_aggregators import EMAggregator, PresenceEMAggregator
from earl_core.fusion.matching import LINKAGES, cluster_boxes, cluster_ids
from earl_core.fusion.wbf import WBFAggregator
from earl_core.structures import Detections

# The aggregators defined elsewhere, and the registry and its builder, stay importable
# from here.
__all__ = [
    'CONFIG_AGGREGATORS',
    'AGGREGATORS',
    'Aggregator',
    'AggregatorSpec',
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


def _one_box_each(image: Detections, idx: np.ndarray, c: float, num_raters: int) -> Detections:
    """Boxes ``idx`` of ``image`` kept as they are, each its own fused box (T = 1, c) and
    still its rater's (``rater``)."""
    if idx.size == 0:
        return Detections.empty(num_raters, image)
    idx = idx.astype(np.int64)
    return Detections.fused(
        boxes=image.boxes[idx].astype(np.float32),
        labels=image.labels[idx],
        confidence=np.full(idx.size, c, np.float32),
        agreement=np.ones(idx.size, np.int64),
        num_raters=num_raters,
        members=list(idx[:, None]),
        member_raters=[(image.raters[x],) for x in image.rater_index[idx].tolist()],
        rater=image.rater[idx],
        image=image,
    )


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

    def __call__(self, image: Detections) -> Detections:
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

    def reads(self, image: Detections) -> bool:
        """Whether the rater read ``image``."""
        return self.rater in image.raters

    def __call__(self, image: Detections) -> Detections:
        if not self.reads(image):
            if self.on_missing == 'skip':
                return Detections.empty(0, image)
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

    required_votes = renamed_attribute('required_agreement')

    def required_agreement(self, num_raters: int | np.ndarray) -> int | np.ndarray:
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
        key, agreement = np.unique(cluster * nl + lab, return_counts=True)
        kc, kl = key // nl, key % nl
        o = np.lexsort((kl, -agreement, kc))
        top = o[np.r_[True, kc[o][1:] != kc[o][:-1]]]
        winner, t = kl[top], agreement[top]  # indexed by cluster (kc[top] == 0..n-1)
        ok = t >= self.required_agreement(num_raters)
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

    def __call__(self, image: Detections) -> Detections:
        r = len(image.raters)
        boxes, labels = image.boxes, image.labels
        need = self.required_agreement(r)
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
            return Detections.empty(r, image)
        cluster = cluster_ids(clusters, len(labels))
        kept, winner, t, voter, merged = self.vote(boxes, labels, cluster, len(clusters), r)
        if kept.size == 0:
            return Detections.empty(r, image)
        members = [clusters[j][voter[clusters[j]]] for j in kept.tolist()]
        return Detections.fused(
            boxes=merged[kept].astype(np.float32),
            labels=winner[kept].astype(np.int64),
            confidence=agreement_confidence(t[kept], r, self.confidence).astype(np.float32),
            agreement=t[kept].astype(np.int64),
            num_raters=r,
            members=members,
            member_raters=raters_of(image, members),
            image=image,
        )


def _summed(cluster: np.ndarray, boxes: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) sums of the boxes per cluster, added in box order (as ``ndarray.sum(0)``)."""
    out = np.zeros((n, 4))
    np.add.at(out, cluster, boxes)
    return out


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
