"""Fuse a multi-rater COCO file into one standard COCO file with per-box confidences.

Example::

    .venv/bin/python tools/fuse_annotations.py train_multi.json train_wbf.json \\
        --method wbf --iou-thr 0.4 --confidence agreement_ratio

The output keeps the input's images and categories (original category ids). Each fused
box becomes one annotation with ``bbox`` [x, y, w, h], ``area``, ``category_id``,
``iscrowd`` 0, ``score`` (the confidence c), ``agreement`` (T), ``num_raters`` (R) and
``raters`` (the raters whose boxes formed it). The images' ``annotators`` list is renamed
``raters_read`` so that the file reads as a plain (pre-fused) COCO file, with one
annotation source, in any framework and in ``earl_mmdet``'s loader. An image nobody read
(``annotators: []``) keeps ``raters_read: []``, which ``earl_mmdet``'s loader reads as
unlabelled again (not as a negative); the summary counts such images.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import os.path as osp
import sys
from collections.abc import Sequence
from typing import Any

from _common import (
    check_output_paths,
    filter_third_party_warnings,
    rater_file_options,
    rater_file_parser,
)

from earl_core.deprecation import add_renamed_flag
from earl_core.fusion.base import LEGACY_CONFIDENCE_MODES as _LEGACY_CONFIDENCE_MODES
from earl_core.io.coco_writer import coco_annotation, coco_file, write_coco

#: Deprecated ``--score`` values -> ``--confidence`` values (the core's table, plus the
#: unchanged 'posterior').
_OLD_SCORES = {**_LEGACY_CONFIDENCE_MODES, 'posterior': 'posterior'}

#: CLI option -> (aggregator parameter, methods that accept it).
_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    'iou_thr': ('iou_thr', ('mv', 'wbf', 'em', 'presence_em', 'bayes')),
    'confidence': ('confidence', ('na', 'rater', 'mv', 'wbf', 'em', 'presence_em', 'bayes')),
    'quorum': ('quorum', ('mv',)),
    'box_mode': ('box_mode', ('mv',)),
    'per_label': ('class_agnostic', ('mv',)),
    'linkage': ('linkage', ('mv', 'em', 'presence_em', 'bayes')),
    'rater': ('rater', ('rater',)),
    'on_missing': ('on_missing', ('rater',)),
    'skip_box_thr': ('skip_box_thr', ('wbf',)),
    'conf_type': ('conf_type', ('wbf',)),
    'rater_weights': ('rater_weights', ('wbf',)),
    'keep_no_object': ('drop_no_object', ('em',)),
    'box_averaging': ('box_averaging', ('em', 'presence_em')),
    'max_iter': ('max_iter', ('em', 'presence_em', 'bayes')),
}


def _quorum(text: str) -> int | float:
    """'2' -> 2 raters; '0.5' -> half of R."""
    try:
        return float(text) if any(c in text for c in '.eE') else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'quorum must be an int (raters) or a fraction like 0.5, got {text!r}'
        ) from None


class _Weights(dict):
    """{rater: weight}, with the file it was read from (``source``; None: given inline)."""

    source: str | None = None


def _weights(text: str) -> _Weights:
    """'R1=0.9,R2=0.7' or a JSON object / JSON file path -> {rater: weight}."""
    source = None
    if osp.isfile(text):
        source = text
        with open(text, encoding='utf-8') as f:
            text = f.read()
    text = text.strip()
    try:
        if text.startswith('{'):
            data = json.loads(text)
            out = _Weights({str(k): float(v) for k, v in data.items()})
        else:
            out = _Weights()
            for part in text.split(','):
                k, v = part.split('=')
                out[k.strip()] = float(v)
        out.source = source
        return out
    except (ValueError, json.JSONDecodeError, AttributeError):
        raise argparse.ArgumentTypeError(
            f"rater weights must look like 'R1=0.9,R2=0.7' or a JSON object, got {text!r}"
        ) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = rater_file_parser(
        'Fuse a multi-rater COCO file (annotator_id per box, annotators per image) into a '
        'standard COCO file with score = c, agreement = T, num_raters = R.',
        name='input',
    )
    p.add_argument('output', help='fused COCO JSON to write')
    p.add_argument(
        '--method',
        default='wbf',
        help='aggregator: na | rater:<id> | mv | wbf | em | presence_em | bayes (see '
        'docs/aggregators.md)',
    )
    p.add_argument('--iou-thr', type=float, default=None, help='IoU threshold (default 0.4)')
    p.add_argument(
        '--confidence',
        default=None,
        help='confidence c: agreement = T, agreement_ratio = T/R, fused_score = WBF score, '
        'posterior (em, presence_em), presence (presence_em: P(real object)); default: '
        'agreement_ratio (mv, wbf), posterior (em), presence (presence_em), agreement (na, '
        'rater: c = 1)',
    )
    p.add_argument(
        '--score',
        default=None,
        choices=tuple(_OLD_SCORES),
        help='deprecated: use --confidence (count = agreement, fraction = agreement_ratio, '
        'wbf = fused_score)',
    )
    g = p.add_argument_group('mv')
    g.add_argument('--quorum', type=_quorum, default=None, help='int raters or fraction of R')
    g.add_argument('--box-mode', choices=('average', 'union', 'intersection'), default=None)
    g.add_argument(
        '--per-label',
        action='store_const',
        const=False,
        default=None,
        help='cluster each label separately (default: across labels, then vote)',
    )
    g.add_argument('--linkage', choices=('average', 'complete', 'single'), default=None)
    g = p.add_argument_group('rater')
    g.add_argument('--rater', default=None, help='rater id for --method rater')
    g.add_argument(
        '--on-missing',
        choices=('error', 'skip'),
        default=None,
        help='image the rater did not read: error, or leave it out of the output',
    )
    g = p.add_argument_group('wbf')
    g.add_argument('--skip-box-thr', type=float, default=None)
    g.add_argument('--conf-type', default=None)
    g.add_argument(
        '--rater-weights',
        type=_weights,
        default=None,
        help="fusion weight per rater (e.g. its proficiency p_r): 'R1=0.9,R2=0.7', a JSON "
        'object, or a JSON file',
    )
    g = p.add_argument_group('em, presence_em')
    g.add_argument(
        '--keep-no-object',
        action='store_const',
        const=False,
        default=None,
        help='keep clusters EM judges to be no object (default: drop them)',
    )
    g.add_argument(
        '--box-averaging',
        choices=('box', 'proficiency', 'uniform'),
        default=None,
        help="how the fused box averages the raters' boxes: box = 1 / sigma_r^2, proficiency "
        '= p_r, uniform = plain mean (presence_em: box or uniform)',
    )
    add_renamed_flag(
        g,
        '--box-weights',
        '--box-averaging',
        'box_averaging',
        choices=('box', 'proficiency', 'uniform'),
    )
    g.add_argument('--max-iter', type=int, default=None)
    args = p.parse_args(argv)
    if args.score is not None:
        if args.confidence is not None:
            p.error('give --confidence only (--score is its deprecated name)')
        args.confidence = _OLD_SCORES[args.score]
        print(
            f'warning: --score is deprecated; use --confidence {args.confidence}',
            file=sys.stderr,
        )
    weights_file = getattr(args.rater_weights, 'source', None)
    check_output_paths(p, files=[('output', args.output)], inputs=[args.input, weights_file])
    return args


def aggregator_from_args(args: argparse.Namespace):
    """Build the aggregator; refuse options that do not apply to the method."""
    from earl_core.fusion.aggregators import build_aggregator

    method = args.method.strip()
    base = 'rater' if method.startswith('rater') else method
    params: dict[str, Any] = {}
    for opt, (param, methods) in _OPTIONS.items():
        value = getattr(args, opt)
        if value is None:
            continue
        if base not in methods:
            flag = '--' + opt.replace('_', '-')
            raise ValueError(f'{flag} does not apply to --method {method} (only {methods})')
        params[param] = value
    return build_aggregator(method, **params)


def fuse_file(args: argparse.Namespace) -> tuple[dict, dict]:
    """Run the fusion; return (fused COCO dict, summary)."""
    from earl_core.fusion.aggregators import SingleRater
    from earl_core.io.coco import load_multirater_coco

    coco = load_multirater_coco(args.input, **rater_file_options(args))
    agg = aggregator_from_args(args)
    results = agg.fuse_all(coco.images)
    out_images, anns = [], []
    by_t: collections.Counter = collections.Counter()
    skipped = unlabelled = 0
    for info, res in zip(coco.image_infos, results):
        if isinstance(agg, SingleRater) and res.num_raters == 0:
            skipped += 1  # the rater did not read it: not a negative image, leave it out
            continue
        unlabelled += not info['annotators']  # kept with raters_read []: still unlabelled
        img = dict(info)
        img['raters_read'] = list(img.pop('annotators', []))
        out_images.append(img)
        member_raters = res.member_raters  # (a list built per call: once per image)
        for k in range(len(res)):
            t = int(res.agreement[k])
            by_t[t] += 1
            anns.append(
                coco_annotation(
                    len(anns) + 1,
                    info['id'],
                    coco.categories[int(res.labels[k])]['id'],
                    res.boxes[k],
                    score=float(res.confidence[k]),
                    agreement=t,
                    num_raters=int(res.num_raters),
                    raters=[str(r) for r in member_raters[k]],
                )
            )
    info = dict(coco.raw.get('info') or {})
    info['earl_fusion'] = {'source': os.fspath(args.input), 'aggregator': agg.get_params()}
    fused = coco_file(
        out_images, anns, coco.raw['categories'], info=info, licenses=coco.raw.get('licenses')
    )
    summary = {
        'aggregator': agg.get_params(),
        'images_in': len(coco.images),
        'images_out': len(out_images),
        'images_skipped': skipped,
        'images_unlabelled': unlabelled,
        'boxes_in': coco.num_boxes,
        'boxes_out': len(anns),
        'by_agreement': dict(sorted(by_t.items())),
        'repairs': dict(coco.repairs),
    }
    return fused, summary


def main(argv: Sequence[str] | None = None) -> int:
    filter_third_party_warnings()
    args = parse_args(argv)
    try:
        fused, s = fuse_file(args)
        # A temporary file renamed over the output: a kill never leaves half a file.
        write_coco(args.output, fused, inputs=[args.input], canonical=False)
    except (ValueError, OSError) as e:  # OSError: e.g. the output's folder is a file
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{args.input} -> {args.output} ({s["aggregator"]["type"]})')
    notes = []
    if s['images_skipped']:
        notes.append(f'{s["images_skipped"]} not read by the rater')
    if s['images_unlabelled']:
        notes.append(f'{s["images_unlabelled"]} unlabelled (nobody read them; raters_read [])')
    print(
        f'images: {s["images_in"]} in, {s["images_out"]} out'
        + (f' ({"; ".join(notes)})' if notes else '')
    )
    print(f'boxes: {s["boxes_in"]} rater boxes -> {s["boxes_out"]} fused')
    for t, n in s['by_agreement'].items():
        share = 100.0 * n / max(s['boxes_out'], 1)
        print(f'  T={t}: {n} ({share:.1f} %)')
    if s['repairs']:
        print(f'input repairs: {s["repairs"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
