"""Evaluate a checkpoint and write the mAP report (mmengine Runner; mmdet's flags).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out report.json|report.md|preds.pkl ...] [--show] [--show-dir DIR]
        [--kaggle-submission sub.csv] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

``--out X.json`` writes the metrics (with per-class tables) to X.json and a Markdown report
to X.md; ``--out X.pkl`` dumps the raw predictions as mmdet's tools/test.py does. ``--out``
may be repeated, one file per suffix (``.json``, ``.md``, ``.pkl`` / ``.pickle``); another
suffix is an error. X.md beside X.json is written only when it is new, a report an earlier
run wrote (it ends with the report marker), or named too (``--out X.json --out X.md``): a
report never replaces a file of yours that was not named. Every
file is written to a temporary file and renamed, and none may be the config or checkpoint.
"""

from __future__ import annotations

import argparse
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

from earl_core.io import safe_output

#: ``--out`` suffix -> what is written.
OUT_KINDS = {'.json': 'json', '.md': 'md', '.pkl': 'pkl', '.pickle': 'pkl'}


def _own_report(path: str) -> bool:
    from earl_core.metrics.report import is_own_report

    return is_own_report(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (and evaluate) a detector (earl-mmdet)')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='directory for evaluation logs')
    p.add_argument(
        '--out',
        action='append',
        metavar='PATH',
        help='report .json (+ .md beside it when new), Markdown report .md, or predictions '
        '.pkl; repeat for several',
    )
    p.add_argument('--show', action='store_true', help='show predictions in a window')
    p.add_argument('--show-dir', help='save drawn predictions under work_dir/TIMESTAMP/DIR')
    p.add_argument('--wait-time', type=float, default=2, help='seconds between shown images')
    p.add_argument('--kaggle-submission', help='write a Kaggle `image_id,PredictionString` CSV')
    add_runner_args(p)
    args = p.parse_args(argv)
    named: dict[str, str] = {}  # kind -> path
    for path in args.out or []:
        kind = OUT_KINDS.get(osp.splitext(path)[1].lower())  # None: refused below
        if kind in named:
            p.error(f'--out {named[kind]} and --out {path}: one {kind} file at most')
        if kind is not None:
            named[kind] = path
    files = [('--out', path) for path in args.out or []]
    if 'json' in named and 'md' not in named:
        named['md'] = osp.splitext(named['json'])[0] + '.md'
        if osp.lexists(named['md']) and not _own_report(named['md']):
            p.error(
                f'--out {named["json"]} also writes {named["md"]}, which exists and is not a '
                f'report of this tool: add --out {named["md"]} to replace it, or choose '
                'another name'
            )
        files.append(('--out', named['md']))
    check_output_paths(
        p,
        files=files + [('--kaggle-submission', args.kaggle_submission)],
        folders=[('--work-dir', args.work_dir)],
        inputs=[args.config, args.checkpoint],
        suffixes={'--out': tuple(OUT_KINDS)},
    )
    args.out_json, args.out_md, args.out_pkl = (named.get(k) for k in ('json', 'md', 'pkl'))
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
    if args.out_pkl:  # dumped beside it, renamed over it once complete
        pred_pkl = safe_output.temporary_path(args.out_pkl)
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
    if args.out_pkl:
        safe_output.commit(pred_pkl, args.out_pkl)

    tables = {}
    for metric in getattr(runner.test_evaluator, 'metrics', []):
        tables.update(getattr(metric, 'last_tables', None) or {})
    inputs = [args.config, args.checkpoint]
    scalars = {k: float(v) for k, v in metrics.items() if _is_number(v)}
    if args.out_json:
        report = dict(
            config=osp.abspath(args.config),
            checkpoint=osp.abspath(args.checkpoint),
            metrics=scalars,
            tables=tables,
        )
        safe_output.write_json(args.out_json, report, inputs=inputs, indent=2)
    if args.out_md:
        from earl_core.metrics.report import write_markdown_report

        title = osp.basename(args.config)
        write_markdown_report(scalars, args.out_md, tables=tables, title=title, inputs=inputs)
    written = [path for path in (args.out_json, args.out_md) if path]
    if written:
        print(f'report written to {" and ".join(written)}')
    if args.kaggle_submission:
        from earl_core.metrics.report import write_kaggle_submission
        from earl_mmdet.evaluation.predictions import load_prediction_pickle

        # written by this process just above
        predictions = load_prediction_pickle(args.out_pkl or pred_pkl)
        write_kaggle_submission(
            predictions, args.kaggle_submission, coord_scales=dicom_scales(cfg), inputs=inputs
        )
        print(f'Kaggle submission written to {args.kaggle_submission}')


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


if __name__ == '__main__':
    main()
