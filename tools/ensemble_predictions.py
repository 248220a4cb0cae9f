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
  A pickle is read without running code from it: only containers, numbers, strings, numpy
  arrays and tensors are built, anything else is refused
  (:func:`earl_mmdet.evaluation.predictions.load_prediction_pickle`).
* COCO results JSON (``[{'image_id', 'category_id', 'bbox' [x, y, w, h], 'score'}]``),
  e.g. ``{outfile_prefix}.bbox.json`` of a metric.

The work is done by :mod:`earl_mmdet.evaluation.predictions`. Per image, each model's
boxes are divided by the gold image's width/height, fused with
:func:`earl_core.fusion.wbf.weighted_boxes_fusion` (ensemble-boxes semantics; a model
with no box on an image takes part with an empty list), and scaled back to pixels.

Writes to ``--out-dir``: ``fused.bbox.json`` (COCO results), ``report.json`` (report dict
of :class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric` plus an ``inputs`` table of
each model alone) and ``report.md``.
"""

from __future__ import annotations

import argparse
import os.path as osp
import pickle
import sys
from collections.abc import Sequence

from _common import check_output_folder, filter_third_party_warnings

from earl_core.io import safe_output

#: The files written under --out-dir.
OUTPUTS = ('fused.bbox.json', 'report.json', 'report.md')


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
    check_output_folder(p, '--out-dir', args.out_dir, OUTPUTS, inputs=[*args.preds, args.gt])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    filter_third_party_warnings()
    args = parse_args(argv)
    from earl_core.io.coco import read_json
    from earl_core.metrics.report import write_markdown_report
    from earl_mmdet.evaluation.predictions import (
        evaluate,
        fuse_predictions,
        load_predictions,
        to_coco_results,
    )

    try:  # bad inputs are one line, not a traceback
        gold = read_json(args.gt)
        models = [load_predictions(p, gold) for p in args.preds]
        fused = fuse_predictions(
            models,
            gold,
            weights=args.weights,
            iou_thr=args.iou_thr,
            skip_box_thr=args.skip_box_thr,
            conf_type=args.conf_type,
        )
    except (ValueError, OSError, pickle.UnpicklingError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    inputs = [*args.preds, args.gt]
    fused_path = osp.join(args.out_dir, 'fused.bbox.json')
    safe_output.write_json(fused_path, to_coco_results(fused, gold), inputs=inputs)

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
    safe_output.write_json(osp.join(args.out_dir, 'report.json'), report, inputs=inputs, indent=1)
    text = write_markdown_report(
        report,
        osp.join(args.out_dir, 'report.md'),
        title='WBF ensemble of predictions',
        inputs=inputs,
    )
    sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
