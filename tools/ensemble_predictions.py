"""Fuse several models' predictions with WBF and evaluate them against a gold COCO file.

The paper's *Rads-ensemble*: one model per radiologist, predictions combined with Weighted
Boxes Fusion. Example::

    .venv/bin/python tools/ensemble_predictions.py r8.pkl r9.pkl r10.pkl \\
        --gt data/vindr/test_gold.json --out-dir work_dirs/rads_ensemble --kaggle

Inputs, in any mix:

* mmdet ``--out`` pickles (``tools/test.py ... --out preds.pkl``): a list of data-sample
  dicts with ``img_id`` and ``pred_instances`` (``bboxes`` xyxy pixels, ``scores``,
  ``labels``). Label ``i`` is the ``i``-th category of the gold file (file order), which is
  mmdet's mapping when the config's ``classes`` list the gold categories in file order.
  Loading a pickle runs code from the file: use only files you produced.
* COCO results JSON (``[{'image_id', 'category_id', 'bbox' [x, y, w, h], 'score'}]``),
  e.g. ``{outfile_prefix}.bbox.json`` of a metric.

Per image, each model's boxes are divided by the gold image's width/height, fused with
:func:`earl_mmdet.core.fusion.weighted_boxes_fusion` (ensemble-boxes semantics; a model
with no box on an image takes part with an empty list), and scaled back to pixels.

Writes to ``--out-dir``: ``fused.bbox.json`` (COCO results), ``report.json`` (report dict
of :class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric` plus an ``inputs`` table of
each model alone) and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _p in (_ROOT, osp.dirname(osp.abspath(__file__))):  # the package; tools/_common.py
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _common import check_output_paths, filter_third_party_warnings  # noqa: E402

#: Per image: (boxes (N, 4) float64 xyxy pixels, scores (N,) float64, labels (N,) int64).
Preds = dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def load_predictions(path: str, gold: Mapping) -> Preds:
    """Read one model's predictions (mmdet ``.pkl`` or COCO results ``.json``).

    Args:
        path (str): prediction file.
        gold (Mapping): gold COCO dict (its categories give the label order).

    Returns:
        Preds: ``{image_id: (boxes, scores, labels)}``; labels index the gold categories.
    """
    cat_ids = [c['id'] for c in gold['categories']]
    label_of = {c: i for i, c in enumerate(cat_ids)}
    out: Preds = {}
    if path.endswith('.json'):
        with open(path, encoding='utf-8') as f:
            dets = json.load(f)
        if not isinstance(dets, list):
            raise ValueError(f'{path}: a COCO results file must hold a list, got {type(dets)}')
        grouped: dict[Any, list] = {}
        for k, d in enumerate(dets):
            if d.get('category_id') not in label_of:
                raise ValueError(
                    f'{path}: result #{k}: category_id {d.get("category_id")!r} is not a gold '
                    f'category ({cat_ids})'
                )
            x, y, w, h = (float(v) for v in d['bbox'])
            grouped.setdefault(d['image_id'], []).append(
                (x, y, x + w, y + h, float(d['score']), label_of[d['category_id']])
            )
        for img_id, rows in grouped.items():
            a = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
            out[img_id] = (a[:, :4], a[:, 4], a[:, 5].astype(np.int64))
        return out
    if path.endswith(('.pkl', '.pickle')):
        from mmengine.fileio import load

        samples = load(path)
        if not isinstance(samples, list):
            raise ValueError(f'{path}: an mmdet --out pickle holds a list, got {type(samples)}')
        for k, s in enumerate(samples):
            if 'img_id' not in s or 'pred_instances' not in s:
                raise ValueError(
                    f'{path}: entry #{k} lacks img_id/pred_instances (keys: {sorted(s)})'
                )
            p = s['pred_instances']
            labels = _np(p['labels']).astype(np.int64).reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= len(cat_ids)):
                raise ValueError(
                    f'{path}: image {s["img_id"]!r}: label {int(labels.max())} outside the '
                    f'{len(cat_ids)} gold categories'
                )
            out[s['img_id']] = (
                _np(p['bboxes']).astype(np.float64).reshape(-1, 4),
                _np(p['scores']).astype(np.float64).reshape(-1),
                labels,
            )
        return out
    raise ValueError(f'{path}: unknown prediction format (expected .pkl or .json)')


def fuse_predictions(
    models: Sequence[Preds],
    gold: Mapping,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = 'avg',
) -> Preds:
    """WBF of several models' predictions, image by image, in pixel coordinates.

    Args:
        models (Sequence[Preds]): one prediction dict per model.
        gold (Mapping): gold COCO dict; its images (and their width/height) are fused.
        weights (Sequence[float] | None): per-model weight. Defaults to None (all 1).
        iou_thr (float): WBF match threshold (IoU > thr). Defaults to 0.55.
        skip_box_thr (float): drop boxes with a lower score first. Defaults to 0.0.
        conf_type (str): WBF confidence rule. Defaults to ``'avg'``.

    Returns:
        Preds: fused boxes per gold image (images where every model is empty are omitted).
    """
    from earl_mmdet.core.fusion import weighted_boxes_fusion

    if weights is not None and len(weights) != len(models):
        raise ValueError(f'{len(weights)} weights for {len(models)} prediction files')
    fused: Preds = {}
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    for im in gold['images']:
        w, h = float(im.get('width') or 0), float(im.get('height') or 0)
        if w <= 0 or h <= 0:
            raise ValueError(f'gold image {im["id"]!r} needs a positive width and height')
        per = [m.get(im['id'], empty) for m in models]
        if not any(p[0].shape[0] for p in per):
            continue
        scale = np.array([w, h, w, h])
        boxes, scores, labels = weighted_boxes_fusion(
            [np.clip(p[0] / scale, 0.0, 1.0) for p in per],
            [p[1] for p in per],
            [p[2] for p in per],
            weights=None if weights is None else list(weights),
            iou_thr=iou_thr,
            skip_box_thr=skip_box_thr,
            conf_type=conf_type,
        )
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
        fused[im['id']] = (
            boxes,
            np.asarray(scores, np.float64).reshape(-1),
            np.asarray(labels).astype(np.int64).reshape(-1),
        )
    return fused


def evaluate(preds: Preds, gt_path: str, gold: Mapping, **metric_kwargs: Any):
    """Evaluate predictions with :class:`DetectionMAPMetric` (the same numbers as training).

    Returns:
        tuple[dict, dict]: the unprefixed scalar metrics and the metric's report dict.
    """
    from earl_mmdet.evaluation.metrics import DetectionMAPMetric

    metric = DetectionMAPMetric(ann_file=gt_path, **metric_kwargs)
    metric.dataset_meta = dict(classes=[c['name'] for c in gold['categories']])
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    results = []
    for im in gold['images']:
        b, s, lab = preds.get(im['id'], empty)
        results.append(({}, dict(img_id=im['id'], bboxes=b, scores=s, labels=lab)))
    scalars = metric.compute_metrics(results)
    return dict(scalars), metric.report


def to_coco_results(preds: Preds, gold: Mapping) -> list[dict]:
    """Fused predictions as a COCO results list (gold category ids, xywh boxes)."""
    from earl_mmdet.core.ap import detections_to_coco

    ids = list(preds)
    return detections_to_coco(
        ids,
        [preds[i][0] for i in ids],
        [preds[i][1] for i in ids],
        [preds[i][2] for i in ids],
        [c['id'] for c in gold['categories']],
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('preds', nargs='+', help='prediction files (.pkl mmdet --out, .json COCO)')
    p.add_argument('--gt', required=True, help='gold COCO file (plain COCO)')
    p.add_argument('--out-dir', required=True, help='folder for fused.bbox.json and reports')
    p.add_argument('--weights', type=float, nargs='+', help='one weight per prediction file')
    p.add_argument('--iou-thr', type=float, default=0.55, help='WBF IoU threshold (IoU > thr)')
    p.add_argument('--skip-box-thr', type=float, default=0.0, help='drop boxes scored lower')
    p.add_argument(
        '--conf-type',
        default='avg',
        choices=['avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg'],
        help='WBF confidence rule',
    )
    p.add_argument(
        '--backend', default='faster_coco_eval', choices=['faster_coco_eval', 'pycocotools']
    )
    p.add_argument('--max-dets', type=int, default=100, help='detections per image and class')
    p.add_argument('--kaggle', action='store_true', help='add the Kaggle VinBigData metric')
    p.add_argument(
        '--no-finding',
        default='one_minus_max',
        choices=['one_minus_max', 'constant', 'none'],
        help="Kaggle mode: score of the 'No finding' prediction",
    )
    p.add_argument('--no-eval-inputs', action='store_true', help='skip evaluating each input')
    args = p.parse_args(argv)
    check_output_paths(p, folders=[('--out-dir', args.out_dir)])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    filter_third_party_warnings()
    args = parse_args(argv)
    from earl_mmdet.evaluation.report import write_markdown_report

    with open(args.gt, encoding='utf-8') as f:
        gold = json.load(f)
    models = [load_predictions(p, gold) for p in args.preds]
    fused = fuse_predictions(
        models,
        gold,
        weights=args.weights,
        iou_thr=args.iou_thr,
        skip_box_thr=args.skip_box_thr,
        conf_type=args.conf_type,
    )
    os.makedirs(args.out_dir, exist_ok=True)
    fused_path = osp.join(args.out_dir, 'fused.bbox.json')
    with open(fused_path, 'w', encoding='utf-8') as f:
        json.dump(to_coco_results(fused, gold), f)

    kw = dict(backend=args.backend, max_dets=args.max_dets, kaggle=args.kaggle)
    if args.kaggle:
        kw['no_finding'] = args.no_finding
    scalars, report = evaluate(fused, args.gt, gold, **kw)
    tables = dict(report['tables'])
    if not args.no_eval_inputs:
        keys = list(scalars)
        rows = [['WBF ensemble'] + [scalars[k] for k in keys]]
        for path, preds in zip(args.preds, models):
            s, _ = evaluate(preds, args.gt, gold, **kw)
            rows.append([osp.basename(path)] + [s[k] for k in keys])
        tables = {'inputs': dict(columns=['predictions'] + keys, rows=rows), **tables}
    report = dict(
        report,
        tables=tables,
        settings=dict(
            report['settings'],
            inputs=list(args.preds),
            weights=args.weights,
            wbf_iou_thr=args.iou_thr,
            skip_box_thr=args.skip_box_thr,
            conf_type=args.conf_type,
        ),
    )
    with open(osp.join(args.out_dir, 'report.json'), 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1)
    text = write_markdown_report(
        report, osp.join(args.out_dir, 'report.md'), title='WBF ensemble of predictions'
    )
    sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
