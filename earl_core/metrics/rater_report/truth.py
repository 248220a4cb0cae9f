"""How good a training truth is against the real one (simulated data only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from earl_core.boxes import box_iou
from earl_core.structures import Detections

__all__ = ['truth_quality']


def truth_quality(
    fused: Sequence[Detections],
    gold: Sequence[Detections],
    iou_thr: float = 0.5,
) -> dict[str, Any]:
    """How good a training truth is against the real one (simulated data only).

    A training box is *correct* when it overlaps a gold box of the same label with
    IoU > ``iou_thr`` (many-to-one: the NA baseline's three boxes on one object are all
    correct); a gold object is *covered* when some correct training box overlaps it. A
    training box is a *false positive* when it overlaps no gold box at all (IoU <=
    ``iou_thr`` with every gold box, any label): on clutter or background, not a wrong
    label. A gold object is *missed* when no training box overlaps it (any label).

    Args:
        fused (Sequence[Detections]): per image, the aggregator's boxes (xyxy pixels),
            labels and confidence c.
        gold (Sequence[Detections]): per image, in the same order, the true boxes.
        iou_thr (float): IoU threshold. Defaults to 0.5.

    Returns:
        dict: ``boxes``, ``gold_boxes``, ``correct``, ``covered``, ``precision``
        (correct / boxes), ``recall`` (covered / gold_boxes), ``weighted_precision``
        (sum of c over correct boxes / sum of c: the share of an EARL loss weight that
        lands on correct boxes), ``mean_iou`` (correct boxes' best IoU with a gold box of
        their label), ``false_positives`` and ``fp_share`` (of the boxes), ``missed``
        and ``miss_share`` (of the gold objects), and ``by_agreement`` (T -> boxes,
        correct, precision, false_positives, fp_share, and ``miss_share_t_at_least``:
        the share of gold objects that no box of agreement >= T overlaps, i.e. what
        keeping only boxes with agreement >= T would miss).

    Raises:
        ValueError: if the two sequences differ in length.
    """
    fused, gold = list(fused), list(gold)
    if len(fused) != len(gold):
        raise ValueError(f'{len(fused)} fused images but {len(gold)} gold images')
    n_boxes = n_gold = n_correct = n_covered = 0
    c_all = c_correct = iou_sum = 0.0
    by_t: dict[int, list[int]] = {}
    gold_best_t: list[np.ndarray] = []  # per gold object: highest T of a box on it, 0 = none
    for f, g in zip(fused, gold):
        n_boxes += len(f)
        n_gold += len(g.boxes)
        correct = np.zeros(len(f), bool)
        fp = np.ones(len(f), bool)
        best = np.zeros(len(f))
        agreement = np.asarray(f.agreement, np.int64).reshape(-1)
        best_t = np.zeros(len(g.boxes), np.int64)
        if len(f) and len(g.boxes):
            iou = box_iou(np.asarray(f.boxes, np.float64), np.asarray(g.boxes, np.float64))
            same = np.asarray(f.labels)[:, None] == np.asarray(g.labels)[None, :]
            overlap = iou > iou_thr
            hit = overlap & same
            correct = hit.any(axis=1)
            fp = ~overlap.any(axis=1)
            best = np.where(same, iou, 0.0).max(axis=1)
            n_covered += int(hit.any(axis=0).sum())
            best_t = np.where(overlap, agreement[:, None], 0).max(axis=0)
        gold_best_t.append(best_t)
        n_correct += int(correct.sum())
        iou_sum += float(best[correct].sum())
        confidence = np.asarray(f.confidence, np.float64)
        c_all += float(confidence.sum())
        c_correct += float(confidence[correct].sum())
        for t, ok, bad in zip(agreement.tolist(), correct.tolist(), fp.tolist()):
            entry = by_t.setdefault(int(t), [0, 0, 0])
            entry[0] += 1
            entry[1] += int(ok)
            entry[2] += int(bad)

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    gold_t = np.concatenate(gold_best_t) if gold_best_t else np.zeros(0, np.int64)
    n_fp = sum(e[2] for e in by_t.values())
    n_missed = int((gold_t == 0).sum())

    return dict(
        boxes=n_boxes,
        gold_boxes=n_gold,
        correct=n_correct,
        covered=n_covered,
        iou_thr=float(iou_thr),
        precision=ratio(n_correct, n_boxes),
        recall=ratio(n_covered, n_gold),
        weighted_precision=ratio(c_correct, c_all),
        mean_iou=ratio(iou_sum, n_correct),
        false_positives=n_fp,
        fp_share=ratio(n_fp, n_boxes),
        missed=n_missed,
        miss_share=ratio(n_missed, n_gold),
        by_agreement={
            t: dict(
                boxes=b,
                correct=c,
                precision=ratio(c, b),
                false_positives=x,
                fp_share=ratio(x, b),
                miss_share_t_at_least=ratio(int((gold_t < t).sum()), n_gold),
            )
            for t, (b, c, x) in sorted(by_t.items())
        },
    )
