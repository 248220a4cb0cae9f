"""Rater-quality and agreement report of a multi-rater COCO file.

Example::

    .venv/bin/python tools/analyze_raters.py train_multi.json --out work_dirs/raters

Writes ``DIR/report.json`` (:func:`earl_core.metrics.rater_report.rater_report`),
``DIR/pairwise_f1.png`` (rater x rater IoU-F1 heat map), ``DIR/confusion.png`` (EM
confusion matrix per rater) and ``DIR/summary.md``, and prints the Markdown summary.

The figures and the per-pair table of the summary show at most 30 raters, those who read
the most images (their titles say so when raters are left out); ``report.json`` holds
every rater and every pair of raters who read a common image.

The summary includes the partner statistics (partner rate, same label among partners,
same-label partner rate, partner IoU quantiles; overall and per ordered rater pair) and
the WBF agreement T shares, the figures docs/medmnist.md compares with VinDr-CXR's
radiologists.
"""

from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import sys
from collections.abc import Sequence
from typing import Any

from _common import (
    check_output_folder,
    filter_third_party_warnings,
    rater_file_options,
    rater_file_parser,
)

from earl_core.io import safe_output

#: The files written under --out.
OUTPUTS = ('report.json', 'summary.md', 'pairwise_f1.png', 'confusion.png')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = rater_file_parser(
        'Per-rater statistics, pairwise IoU-F1, EM confusion matrices and '
        "Krippendorff's alpha of a multi-rater COCO file."
    )
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument(
        '--iou-thr',
        type=float,
        default=0.5,
        help='matching threshold (IoU > thr, same label) and alpha unit threshold',
    )
    p.add_argument(
        '--consensus',
        default='mv',
        help='aggregator for the leave-one-out consensus of the other raters',
    )
    p.add_argument(
        '--include-empty-images',
        action='store_true',
        help="count images nobody drew on as agreeing units in Krippendorff's alpha",
    )
    p.add_argument(
        '--partner-iou-thr',
        type=float,
        default=0.4,
        help='partner statistics and WBF agreement shares: a partner has IoU > thr',
    )
    p.add_argument('--no-plots', action='store_true', help='skip the PNG figures')
    args = p.parse_args(argv)
    check_output_folder(p, '--out', args.out, OUTPUTS, inputs=[args.annotations])
    return args


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return '-'
    if isinstance(x, float):
        return f'{x:.{digits}f}'
    return str(x)


def markdown_summary(rep: dict, source: str) -> str:
    """Short Markdown summary of a :func:`rater_report` dict."""
    em = rep.get('em') or {}
    lines = [
        f'# Rater report: {source}',
        '',
        f'{rep["num_images"]} images, {rep["num_boxes"]} rater boxes, '
        f'{len(rep["raters"])} raters; matching IoU > {rep["iou_thr"]}, same label; '
        f'precision/recall against the leave-one-out consensus '
        f'({rep["consensus"]["aggregator"]}) of the other raters.',
        '',
        '| rater | images read | boxes | boxes/image | precision | recall | F1 | '
        'EM proficiency | EM precision | box sigma |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rep['raters']:
        s = rep['per_rater'][r]
        lines.append(
            f'| {r} | {s["images_read"]} | {s["boxes"]} | {_fmt(s["boxes_per_image"], 2)} | '
            f'{_fmt(s["precision"])} | {_fmt(s["recall"])} | {_fmt(s["f1"])} | '
            f'{_fmt((em.get("proficiency") or {}).get(r))} | '
            f'{_fmt((em.get("precision") or {}).get(r))} | '
            f'{_fmt((em.get("box_sigma") or {}).get(r))} |'
        )
    ka = rep['krippendorff_alpha']
    pw = rep['pairwise_f1']
    off = [p['f1'] for p in pw['pairs'] if p['f1'] is not None]
    lines += [
        '',
        f"Krippendorff's alpha (boxes, 1 - IoU distance): {_fmt(ka['alpha'])}; "
        f'nominal: {_fmt(ka["alpha_nominal"])} ({ka["units"]} units).',
        f'Mean pairwise IoU-F1: {_fmt(sum(off) / len(off)) if off else "-"} '
        f'({len(pw["pairs"])} pairs of raters who read a common image); the pairwise '
        f'matrix and figure show {pw["shown"]}.',
    ]
    lines += partner_lines(rep)
    return '\n'.join(lines) + '\n'


def partner_lines(rep: dict) -> list[str]:
    """Markdown table of :func:`~earl_core.metrics.rater_report.partner_statistics`."""
    ps = rep.get('partner_statistics')
    if not ps:
        return []
    thr = ps['iou_thr']
    # Per pair: those among the raters the pairwise matrix shows (all of them, up to 30).
    shown = set(rep['pairwise_f1']['raters'])
    pairs = [p for p in ps['pairs'] if p['rater'] in shown and p['other'] in shown]
    left = len(ps['pairs']) - len(pairs)
    lines = [
        '',
        f'Partners (ordered pairs of raters who both drew on an image; a box has a partner '
        f"when the other rater's best box, any label, has IoU > {thr:g}):",
        '',
        '| rater -> other | boxes | partner rate | same label among partners | '
        'same-label partner rate | IoU p10 | p25 | p50 | p75 | p90 |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name, s in [('all', ps['overall'])] + [(f'{p["rater"]} -> {p["other"]}', p) for p in pairs]:
        lines.append(
            f'| {name} | {s["boxes"]} | {_fmt(s["partner_rate"])} | '
            f'{_fmt(s["same_label_among_partners"])} | {_fmt(s["same_label_partner_rate"])} | '
            + ' | '.join(_fmt(s[f'iou_p{q}'], 2) for q in (10, 25, 50, 75, 90))
            + ' |'
        )
    if left:
        lines += [
            '',
            f'Per pair: the pairs among {rep["pairwise_f1"]["shown"]}; the other {left} '
            'ordered pairs are in report.json.',
        ]
    wbf = rep.get('wbf_agreement')
    if wbf and wbf['fused_boxes']:
        shares = ', '.join(f'T={t}: {100 * v:.1f} %' for t, v in wbf['shares'].items())
        lines += [
            '',
            f'WBF (IoU {wbf["iou_thr"]:g}, per label, T = distinct raters): '
            f'{wbf["fused_boxes"]} fused boxes; {shares}.',
        ]
    return lines


def plot_pairwise(rep: dict, path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    raters = rep['pairwise_f1']['raters']
    m = np.array(
        [[np.nan if v is None else v for v in row] for row in rep['pairwise_f1']['matrix']],
        dtype=float,
    ).reshape(len(raters), len(raters))
    n = len(raters)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.55 * n), max(4.0, 1.2 + 0.5 * n)))
    im = ax.imshow(np.ma.masked_invalid(m), vmin=0, vmax=1, cmap='viridis')
    ax.set_xticks(range(n), raters, rotation=90)
    ax.set_yticks(range(n), raters)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]):
                    ax.text(
                        j,
                        i,
                        f'{m[i, j]:.2f}',
                        ha='center',
                        va='center',
                        fontsize=7,
                        color='white' if m[i, j] < 0.6 else 'black',
                    )
    title = f'pairwise IoU-F1 (IoU > {rep["iou_thr"]}, same label)'
    if len(raters) < len(rep['raters']):
        title += f'\n{rep["pairwise_f1"]["shown"]}'
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with safe_output.atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=120)
    plt.close(fig)


def plot_confusion(rep: dict, path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    em = rep['em']
    # The raters of the pairwise figure (at most 30: those who read the most images).
    shown = set(rep['pairwise_f1']['raters'])
    raters = [r for r in em['raters'] if r in shown]
    classes = em['classes']
    cols = min(4, len(raters))
    rows = int(math.ceil(len(raters) / cols))
    size = 1.2 + 0.22 * len(classes)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    for ax, r in zip(axes.ravel(), raters):
        ax.axis('on')
        ax.imshow(np.array(em['confusion'][r]), vmin=0, vmax=1, cmap='Blues')
        prof = em['proficiency'][r]
        ax.set_title(f'{r}  p={_fmt(prof, 2)}', fontsize=9)
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes if len(classes) <= 16 else [], rotation=90, fontsize=6)
        ax.set_yticks(ticks, classes if len(classes) <= 16 else [], fontsize=6)
        ax.set_xlabel('said', fontsize=7)
        ax.set_ylabel('true (EM)', fontsize=7)
    if len(raters) < len(em['raters']):
        fig.suptitle(f'EM confusion: {rep["pairwise_f1"]["shown"]}', fontsize=10)
    fig.tight_layout()
    with safe_output.atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    filter_third_party_warnings()
    args = parse_args(argv)
    from earl_core.io.coco import load_multirater_coco
    from earl_core.metrics.rater_report import rater_report

    try:
        coco = load_multirater_coco(args.annotations, **rater_file_options(args))
        rep = rater_report(
            coco.images,
            aggregator=args.consensus,
            iou_thr=args.iou_thr,
            class_names=list(coco.classes),
            include_empty_images=args.include_empty_images,
            partner_iou_thr=args.partner_iou_thr,
        )
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    rep['source'] = os.fspath(args.annotations)
    rep['repairs'] = dict(coco.repairs)
    safe_output.write_json(osp.join(args.out, 'report.json'), rep, indent=1, allow_nan=False)
    summary = markdown_summary(rep, args.annotations)
    safe_output.atomic_write(osp.join(args.out, 'summary.md'), summary)
    if not args.no_plots:
        plot_pairwise(rep, osp.join(args.out, 'pairwise_f1.png'))
        if rep['em'] is not None:
            plot_confusion(rep, osp.join(args.out, 'confusion.png'))
    print(summary)
    print(f'written: {args.out}/report.json, summary.md' + ('' if args.no_plots else ', PNGs'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
