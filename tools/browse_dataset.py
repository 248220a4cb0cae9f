"""Show each rater's boxes beside the fused boxes, one PNG per image.

Usage::

    python tools/browse_dataset.py CONFIG --out DIR [--num N] [--split train|val|test]

The dataset of ``<split>_dataloader`` (the inner one of a wrapper such as
``MultiImageMixDataset``) is loaded with its annotation file and its ``fusion`` (or
``--method`` instead), with ``LoadImageFromFile`` as the only pipeline step, so boxes are shown
in original-image pixels (a gold ``CocoDataset`` split is read as one rater's boxes). Left
panel: every rater's boxes, one colour per rater, with a legend of the raters who read the
image (``(no box)`` for raters who drew nothing). Right panel: the fused boxes labelled
``class c=<confidence>``. Headless (OpenCV only).
"""

from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import sys
from collections.abc import Sequence

import numpy as np
from _common import (
    CfgOptionsAction,
    check_output_paths,
    filter_third_party_warnings,
    read_config,
)


def _inner_dataset_cfg(cfg_dataset: dict) -> dict:
    # Unwrap MultiImageMixDataset / RepeatDataset / ClassBalancedDataset.
    while 'dataset' in cfg_dataset and 'ann_file' not in cfg_dataset:
        cfg_dataset = cfg_dataset['dataset']
    return cfg_dataset


def build_browse_dataset(cfg, split: str = 'train', method: str | None = None):
    """The split's multi-rater dataset, fused as configured, with LoadImageFromFile only.

    Args:
        cfg (Config): the training config.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        method (str | None): an aggregator (``'wbf'``, ``'rater:R1'``...) to fuse with instead
            of the config's ``fusion``. Defaults to None (the config's).

    Returns:
        MultiRaterCocoDataset: every image in file order (``test_mode``).
    """
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = copy.deepcopy(_inner_dataset_cfg(cfg[f'{split}_dataloader']['dataset']))
    if ds_cfg.get('type') == 'CocoDataset':  # a gold split: one 'default' rater
        ds_cfg['type'] = 'MultiRaterCocoDataset'
    pipeline = ds_cfg.get('pipeline', [])
    loader = next((t for t in pipeline if t['type'] == 'LoadImageFromFile'), None)
    # A deprecated FuseAnnotations step stays for the dataset to turn into its fusion.
    fuse = [t for t in pipeline if t['type'] == 'FuseAnnotations' and method is None]
    ds_cfg['pipeline'] = [loader or dict(type='LoadImageFromFile'), *fuse]
    if method is not None:
        ds_cfg['fusion'] = dict(method=method)
    ds_cfg['test_mode'] = True  # no filtering, no refetch: every image in file order
    return DATASETS.build(ds_cfg)


def main(argv: Sequence[str] | None = None) -> int:
    filter_third_party_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--out', required=True, help='output directory for the PNGs')
    parser.add_argument('--num', type=int, default=20, help='images to draw (default 20)')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    parser.add_argument(
        '--method', help="aggregator instead of the config's fusion (e.g. wbf, mv, rater:R1)"
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction, help='key=value config overrides'
    )
    args = parser.parse_args(argv)
    check_output_paths(parser, folders=[('--out', args.out)])

    import cv2

    import earl_mmdet  # noqa: F401  (registers the dataset and transforms)
    from earl_core.io.safe_output import atomic_write
    from earl_mmdet.utils.draw import render

    try:  # as train/test read it: data_root=DIR moves every dataset path
        cfg = read_config(args.config, args.cfg_options)
    except FileNotFoundError as e:
        parser.error(str(e))
    dataset = build_browse_dataset(cfg, args.split, args.method)
    classes = dataset.metainfo['classes']
    os.makedirs(args.out, exist_ok=True)
    order: dict[str, int] = {}
    n = min(args.num, len(dataset))
    for i in range(n):
        res = dataset[i]
        raw, fused = res['rater_instances'], res['instances']
        canvas = render(
            res['img'],
            np.asarray([x['bbox'] for x in raw], np.float32).reshape(-1, 4),
            np.asarray([x['bbox_label'] for x in raw], np.int64),
            [str(x['rater_id']) for x in raw],
            res['raters'],
            np.asarray([x['bbox'] for x in fused], np.float32).reshape(-1, 4),
            np.asarray([x['bbox_label'] for x in fused], np.int64),
            res['gt_confidence'],
            classes,
            order,
        )
        stem = osp.splitext(osp.basename(res['img_path']))[0]
        path = osp.join(args.out, f'{i:05d}_{stem}.png')
        ok, png = cv2.imencode('.png', canvas)
        if not ok:
            raise OSError(f'could not encode {path}')
        atomic_write(path, png.tobytes(), inputs=[args.config])
    sys.stdout.write(f'wrote {n} image(s) to {args.out}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
