"""Rater-quality and agreement statistics of a multi-rater detection dataset.

:func:`rater_report` returns one JSON-serialisable dict (NaN -> None) with

* ``per_rater``: images read, boxes drawn, and each rater's precision / recall / F1 against
  a **leave-one-out consensus** - the consensus of the *other* raters on the images the
  rater read (aggregator ``mv`` by default: a strict majority of the others), so that a
  rater is never scored against their own boxes (:mod:`.consensus`);
* ``em``: the EM estimates (per-rater confusion matrix, proficiency, precision, box error;
  :class:`~earl_core.fusion.em.RaterEM`);
* ``pairwise_f1``: for raters a and b, on the images both read, F1 = 2 TP / (n_a + n_b)
  with TP the boxes matched one-to-one (greedy, IoU > ``iou_thr``, same label), for every
  two raters who read a common image (sparse), and as a matrix over the 30 most active
  (:mod:`.pairwise`);
* ``krippendorff_alpha``: Krippendorff's alpha for boxes (:mod:`.alpha`);
* ``partner_statistics``: how often and how closely one rater's boxes are met by
  another's, overall and per ordered rater pair, and the WBF agreement T distribution; the
  numbers docs/medmnist.md holds against VinDr-CXR (:mod:`.partners`).

:func:`truth_quality` (:mod:`.truth`) scores a training truth against the real one, on
simulated data.

Scale. Nothing here is sized by the raters of the file squared or by clusters x raters:
every image is clustered and paired at once (:func:`~earl_core.fusion.matching.cluster_segments`,
:func:`~earl_core.fusion.matching.segment_iou_pairs`), the leave-one-out ``mv`` consensus of
every (image, rater) is one batch, and the pair statistics are held only for the pairs of
raters who read (or drew on) a common image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from earl_core.deprecation import renamed_attributes
from earl_core.fusion.aggregators import Aggregator, AggregatorSpec, build_aggregator
from earl_core.fusion.base import check_iou_thr
from earl_core.fusion.em import RaterEM
from earl_core.metrics.rater_report.alpha import krippendorff_alpha_boxes
from earl_core.metrics.rater_report.consensus import (
    LOO_EXACT_MAX_RATERS,
    consensus_entry,
    leave_one_out_counts,
)
from earl_core.metrics.rater_report.flat import json_float, rater_columns
from earl_core.metrics.rater_report.pairwise import (
    MAX_SHOWN_RATERS,
    most_active,
    pair_f1,
    pairwise_counts,
    pairwise_f1,
)
from earl_core.metrics.rater_report.partners import (
    PARTNER_QUANTILES,
    partner_statistics,
    wbf_agreement_shares,
)
from earl_core.metrics.rater_report.truth import truth_quality
from earl_core.structures import Detections

__all__ = [
    'LOO_EXACT_MAX_RATERS',
    'PARTNER_QUANTILES',
    'MAX_SHOWN_RATERS',
    'krippendorff_alpha_boxes',
    'most_active',
    'pairwise_counts',
    'pairwise_f1',
    'partner_statistics',
    'rater_report',
    'truth_quality',
    'wbf_agreement_shares',
]

#: ``LOO_EXACT_MAX_READERS``: the name of :data:`LOO_EXACT_MAX_RATERS` until 0.2 (warned).
__getattr__ = renamed_attributes(__name__, globals(), LOO_EXACT_MAX_READERS='LOO_EXACT_MAX_RATERS')


def rater_report(
    images: Sequence[Detections],
    aggregator: AggregatorSpec | Aggregator = 'mv',
    iou_thr: float = 0.5,
    class_names: Sequence[str] | None = None,
    em_params: Mapping[str, Any] | None = None,
    include_empty_images: bool = False,
    partner_iou_thr: float = 0.4,
    max_shown_raters: int = MAX_SHOWN_RATERS,
) -> dict[str, Any]:
    """Agreement and rater-quality statistics; JSON-serialisable (NaN -> None).

    Memory and time grow with the boxes and with the pairs of raters who read a common
    image, not with the square of the raters: a crowd of 1,000 raters reading 3 per image
    costs what its boxes cost.

    Args:
        images (Sequence[Detections]): the multi-rater dataset.
        aggregator (str | Mapping | Aggregator): builds each rater's leave-one-out
            consensus from the *other* raters' boxes (refitted on the leave-one-out data if
            it learns, e.g. ``em``: one fit per rater). Defaults to ``'mv'`` (strict
            majority of the others; one clustering per image).
        iou_thr (float): matching threshold (IoU > iou_thr, same label, one-to-one greedy)
            for precision / recall / pairwise F1, and the unit threshold of alpha.
            Defaults to 0.5.
        class_names (Sequence[str] | None): names of the K classes (for ``em``).
        em_params (Mapping | None): :class:`RaterEM` arguments. Defaults to None.
        include_empty_images (bool): see :func:`krippendorff_alpha_boxes`.
        partner_iou_thr (float): threshold of :func:`partner_statistics` and of the WBF
            agreement shares. Defaults to 0.4.
        max_shown_raters (int): the pairwise F1 matrix holds at most this many raters,
            those who read the most images (:func:`most_active`). Defaults to 30.

    Returns:
        dict: ``raters``, ``num_images``, ``num_boxes``, ``iou_thr``, ``consensus``,
        ``per_rater`` (rater -> images_read, boxes, boxes_per_image, images_with_boxes,
        loo_images, tp, consensus_boxes, precision, recall, f1), ``em`` (see
        :meth:`RaterEM.summary`), ``pairwise_f1`` (``pairs``: every two raters who read a
        common image, with F1 and shared images; ``raters``, ``matrix``,
        ``shared_images``: the matrices over the shown raters; ``shown``: which they
        are), ``krippendorff_alpha``, ``partner_statistics``
        (:func:`partner_statistics`), ``wbf_agreement`` (:func:`wbf_agreement_shares`).
    """
    images = list(images)
    check_iou_thr(iou_thr, 'rater_report')
    if not isinstance(max_shown_raters, int) or max_shown_raters < 1:
        raise ValueError(f'max_shown_raters must be an int >= 1, got {max_shown_raters!r}')
    raters, columns = rater_columns(images)
    spec = aggregator.get_params() if isinstance(aggregator, Aggregator) else aggregator
    build_aggregator(spec)  # validate early, before the per-rater loop

    loo = leave_one_out_counts(images, spec, raters, float(iou_thr))
    # Per rater, in one pass over the images: images read, boxes, images with a box,
    # images read together with someone else.
    n = len(raters)
    stats = np.zeros((4, n), np.int64)
    for im, cols in zip(images, columns):
        drawn = np.bincount(im.rater_index, minlength=len(cols))
        stats[0, cols] += 1
        stats[1, cols] += drawn
        stats[2, cols] += drawn > 0
        stats[3, cols] += len(cols) >= 2
    per_rater: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(raters):
        read, n_boxes, with_boxes, loo_images = stats[:, i].tolist()
        tp, n_r, n_c = loo[r]
        prec = tp / n_r if n_r else float('nan')
        rec = tp / n_c if n_c else float('nan')
        f1 = 2 * tp / (n_r + n_c) if (n_r + n_c) else float('nan')
        per_rater[r] = {
            'images_read': read,
            'boxes': n_boxes,
            'boxes_per_image': json_float(n_boxes / read) if read else None,
            'images_with_boxes': with_boxes,
            'loo_images': loo_images,
            'tp': int(tp),
            'rater_boxes_on_loo_images': int(n_r),
            'consensus_boxes': int(n_c),
            'precision': json_float(prec),
            'recall': json_float(rec),
            'f1': json_float(f1),
        }

    em_summary: dict[str, Any] | None = None
    if images and raters:
        num_classes = None if class_names is None else len(class_names)
        params = dict(em_params or {})
        params.setdefault('num_classes', num_classes)
        em = RaterEM(**params).fit(images)
        em_summary = em.summary(class_names)
        em_summary['params'] = em.get_params()

    counts = pairwise_counts(images, iou_thr)
    shown = most_active(raters, stats[0], stats[1], max_shown_raters)
    f1, shared = pairwise_f1(images, shown, iou_thr, counts)
    f1_pairs = pair_f1(counts['tp'], counts['boxes'])
    return {
        'raters': raters,
        'num_images': len(images),
        'num_boxes': int(sum(len(im.labels) for im in images)),
        'iou_thr': float(iou_thr),
        'consensus': consensus_entry(images, spec),
        'per_rater': per_rater,
        'em': em_summary,
        'pairwise_f1': {
            'raters': shown,
            'matrix': [[json_float(v) for v in row] for row in f1],
            'shared_images': shared.tolist(),
            'shown': (
                f'all {n} raters'
                if len(shown) == n
                else f'the {len(shown)} raters who read the most images, of {n}'
            ),
            'pairs': [
                {'rater': raters[a], 'other': raters[b], 'shared_images': s, 'f1': json_float(v)}
                for a, b, s, v in zip(
                    counts['a'].tolist(),
                    counts['b'].tolist(),
                    counts['shared_images'].tolist(),
                    f1_pairs.tolist(),
                )
            ],
        },
        'krippendorff_alpha': krippendorff_alpha_boxes(images, iou_thr, include_empty_images),
        'partner_statistics': partner_statistics(images, partner_iou_thr),
        'wbf_agreement': wbf_agreement_shares(images, partner_iou_thr),
    }
