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

_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _p in (_ROOT, osp.dirname(osp.abspath(__file__))):  # the package; tools/_common.py
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _common import check_output_paths, filter_third_party_warnings  # noqa: E402

#: BGR colours for raters (colour-blind friendly first, then generated).
_RATER_COLOURS = [
    (0, 114, 230),
    (178, 114, 0),
    (115, 158, 0),
    (167, 121, 204),
    (66, 228, 240),
    (0, 94, 213),
    (233, 180, 86),
    (255, 255, 255),
]
_FUSED_COLOUR = (0, 220, 255)


def rater_colour(index: int) -> tuple[int, int, int]:
    """BGR colour of the ``index``-th rater of a run (stable across images)."""
    if index < len(_RATER_COLOURS):
        return _RATER_COLOURS[index]
    rng = np.random.default_rng(index)
    return tuple(int(v) for v in rng.integers(60, 256, 3))


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour, scale: float) -> None:
    import cv2

    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    cv2.rectangle(img, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def render(
    img: np.ndarray,
    rater_boxes: np.ndarray,
    rater_labels: np.ndarray,
    rater_ids: Sequence[str],
    raters: Sequence[str],
    fused_boxes: np.ndarray,
    fused_labels: np.ndarray,
    fused_conf: np.ndarray,
    classes: Sequence[str],
    rater_order: dict[str, int] | None = None,
) -> np.ndarray:
    """Draw raters' boxes (left) beside fused boxes (right).

    Args:
        img (np.ndarray): (H, W, 3) uint8 BGR (or (H, W) grey) image.
        rater_boxes (np.ndarray): (N, 4) xyxy pixels, all raters' boxes.
        rater_labels (np.ndarray): (N,) int labels.
        rater_ids (Sequence[str]): (N,) rater of each box.
        raters (Sequence[str]): raters who read the image (legend).
        fused_boxes (np.ndarray): (M, 4) xyxy pixels.
        fused_labels (np.ndarray): (M,) int labels.
        fused_conf (np.ndarray): (M,) confidence c.
        classes (Sequence[str]): class names by label.
        rater_order (dict[str, int] | None): rater -> colour index, to keep colours stable
            across images; updated with unseen raters. Defaults to a fresh one.

    Returns:
        np.ndarray: (H + legend, 2 W + gap, 3) uint8 BGR canvas.
    """
    import cv2

    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    h, w = img.shape[:2]
    scale = max(0.35, min(h, w) / 700)
    thick = max(1, int(round(min(h, w) / 300)))
    order = {} if rater_order is None else rater_order
    for r in list(raters) + [str(x) for x in rater_ids]:
        order.setdefault(str(r), len(order))

    def name(lab: int) -> str:
        return classes[lab] if 0 <= lab < len(classes) else str(lab)

    left, right = img.copy(), img.copy()
    for box, lab, rid in zip(np.asarray(rater_boxes).reshape(-1, 4), rater_labels, rater_ids):
        c = rater_colour(order[str(rid)])
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(left, (x1, y1), (x2, y2), c, thick)
        _text(left, name(int(lab)), (x1, max(y1 - 2, 12)), c, scale)
    for box, lab, conf in zip(np.asarray(fused_boxes).reshape(-1, 4), fused_labels, fused_conf):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(right, (x1, y1), (x2, y2), _FUSED_COLOUR, thick)
        _text(
            right,
            f'{name(int(lab))} c={float(conf):.3g}',
            (x1, max(y1 - 2, 12)),
            _FUSED_COLOUR,
            scale,
        )

    drew = {str(r) for r in rater_ids}
    legend = [(str(r), str(r) if str(r) in drew else f'{r} (no box)') for r in raters]
    legend += [(r, f'{r} (not listed)') for r in sorted(drew - {str(x) for x in raters})]
    line = int(30 * scale / 0.5)
    legend_h = line * (len(legend) + 1) + 8
    gap = 8
    canvas = np.zeros((h + legend_h, 2 * w + gap, 3), np.uint8)
    canvas[:h, :w] = left
    canvas[:h, w + gap :] = right
    y = h + line
    _text(canvas, f'raters ({len(raters)} read)', (4, y), (255, 255, 255), scale)
    _text(canvas, f'fused: {len(fused_labels)} boxes', (w + gap + 4, y), _FUSED_COLOUR, scale)
    for r, label in legend:
        y += line
        c = rater_colour(order[r])
        cv2.rectangle(canvas, (6, y - line // 2), (6 + line // 2, y), c, -1)
        _text(canvas, label, (12 + line // 2, y), c, scale)
    return canvas


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
        MultiAnnotatorCocoDataset: every image in file order (``test_mode``).
    """
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = copy.deepcopy(_inner_dataset_cfg(cfg[f'{split}_dataloader']['dataset']))
    if ds_cfg.get('type') == 'CocoDataset':  # a gold split: one 'default' rater
        ds_cfg['type'] = 'MultiAnnotatorCocoDataset'
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
    from mmengine.config import Config, DictAction

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--out', required=True, help='output directory for the PNGs')
    parser.add_argument('--num', type=int, default=20, help='images to draw (default 20)')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    parser.add_argument(
        '--method', help="aggregator instead of the config's fusion (e.g. wbf, mv, rater:R1)"
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='key=value config overrides'
    )
    args = parser.parse_args(argv)
    check_output_paths(parser, folders=[('--out', args.out)])

    import cv2

    import earl_mmdet  # noqa: F401  (registers the dataset and transforms)

    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
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
        if not cv2.imwrite(path, canvas):
            raise OSError(f'could not write {path}')
    sys.stdout.write(f'wrote {n} image(s) to {args.out}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
