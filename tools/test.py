"""Evaluate a checkpoint and write the mAP report (mmengine Runner; mmdet's flags).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out report.json|preds.pkl]
        [--show] [--show-dir DIR] [--kaggle-submission sub.csv] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

``--out X.json`` writes the metrics (with per-class tables) to X.json and a Markdown report
to X.md; ``--out X.pkl`` dumps the raw predictions as mmdet's tools/test.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import tempfile

from _common import (
    add_runner_args,
    build_runner,
    check_output_paths,
    dicom_scales,
    filter_third_party_warnings,
    load_config,
    set_local_rank,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (and evaluate) a detector (earl-mmdet)')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='directory for evaluation logs')
    p.add_argument('--out', help='report .json (+ .md beside it), or predictions .pkl')
    p.add_argument('--show', action='store_true', help='show predictions in a window')
    p.add_argument('--show-dir', help='save drawn predictions under work_dir/TIMESTAMP/DIR')
    p.add_argument('--wait-time', type=float, default=2, help='seconds between shown images')
    p.add_argument('--kaggle-submission', help='write a Kaggle `image_id,PredictionString` CSV')
    add_runner_args(p)
    args = p.parse_args(argv)
    check_output_paths(
        p,
        files=[('--out', args.out), ('--kaggle-submission', args.kaggle_submission)],
        folders=[('--work-dir', args.work_dir)],
    )
    set_local_rank(args.local_rank)
    return args


def _enable_visualization(cfg, args) -> None:
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise ValueError(
            f'{args.config}: --show/--show-dir need a `visualization` entry in default_hooks '
            "(e.g. dict(type='DetVisualizationHook'))"
        )
    vis = hooks['visualization']
    vis['draw'] = True
    if args.show:
        vis['show'] = True
        vis['wait_time'] = args.wait_time
    if args.show_dir:
        vis['test_out_dir'] = args.show_dir


def main(argv=None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher, check='test')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)

    pred_pkl = None
    if args.out and args.out.endswith(('.pkl', '.pickle')):
        pred_pkl = args.out
    elif args.kaggle_submission:
        pred_pkl = osp.join(tempfile.mkdtemp(prefix='earl_preds_'), 'predictions.pkl')
    if pred_pkl is not None:
        evaluator = cfg.test_evaluator
        evaluators = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
        evaluators.append(dict(type='DumpDetResults', out_file_path=pred_pkl))
        cfg.test_evaluator = evaluators

    runner = build_runner(cfg, args.config, args.work_dir)
    metrics = runner.test()
    if runner.rank != 0:
        return

    tables = {}
    for metric in getattr(runner.test_evaluator, 'metrics', []):
        tables.update(getattr(metric, 'last_tables', None) or {})
    if args.out and args.out.endswith('.json'):
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        report = dict(
            config=osp.abspath(args.config),
            checkpoint=osp.abspath(args.checkpoint),
            metrics={k: float(v) for k, v in metrics.items() if _is_number(v)},
            tables=tables,
        )
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)
        from earl_mmdet.evaluation.report import write_markdown_report

        md = osp.splitext(args.out)[0] + '.md'
        write_markdown_report(report['metrics'], md, tables=tables, title=osp.basename(args.config))
        print(f'report written to {args.out} and {md}')
    if args.kaggle_submission:
        from earl_mmdet.evaluation.predictions import load_prediction_pickle
        from earl_mmdet.evaluation.report import write_kaggle_submission

        predictions = load_prediction_pickle(pred_pkl)  # written by this process just above
        write_kaggle_submission(predictions, args.kaggle_submission, coord_scales=dicom_scales(cfg))
        print(f'Kaggle submission written to {args.kaggle_submission}')


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


if __name__ == '__main__':
    main()
