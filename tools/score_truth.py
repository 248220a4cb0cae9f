"""Score aggregators' training truth against the real boxes (simulated data, e.g. MED-MNIST).

Example::

    .venv/bin/python tools/score_truth.py data/medmnist_cpu/train.json \\
        data/medmnist_cpu/train_gold.json --methods na mv wbf em presence_em --out truth.json

For each aggregator (built as the MED-MNIST configs build it: ``wbf`` with IoU 0.4 and c =
T/R, ``em`` with c = its posterior, ``presence_em`` with c = the presence posterior,
``mv`` with a strict majority and c = T), fuses every training image and prints a Markdown
table: training boxes, precision (boxes on a true object with its true label, IoU > 0.5),
recall (true objects covered), the share of the confidence c on correct boxes (what EARL's
weighting buys) and the precision of fused boxes by rater agreement T; then a second
table: the share of boxes that are false positives (they overlap no gold box, any label:
raters' boxes on clutter or background) overall and by T, and the share of gold objects
with no box (any label), overall and if only boxes with agreement >= T were kept.
``--out`` writes the same as JSON
(:func:`earl_core.metrics.rater_report.truth_quality`).
"""

from __future__ import annotations

import argparse
import os.path as osp
from collections.abc import Sequence

from _common import check_output_paths, filter_third_party_warnings, rater_file_parser

#: The aggregators scored when ``--methods`` is not given.
DEFAULT_METHODS = ('na', 'mv', 'wbf', 'em', 'presence_em')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = rater_file_parser(
        "Score aggregators' training truth against the real boxes.",
        help='multi-rater COCO JSON (the raters)',
        repairs=False,
    )
    p.add_argument('gold', help='plain COCO JSON of the same images (the truth)')
    p.add_argument(
        '--methods',
        nargs='+',
        default=list(DEFAULT_METHODS),
        help='aggregators: na | mv | wbf | em | presence_em (as in the configs) or rater:<id>',
    )
    p.add_argument('--iou-thr', type=float, default=0.5, help='a box is correct at IoU > thr')
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    check_output_paths(p, files=[('--out', args.out)], inputs=[args.annotations, args.gold])
    return args


def _pct(x: float | None) -> str:
    return '–' if x is None else f'{100 * x:.1f} %'


def markdown(results: dict[str, dict], source: str) -> str:
    ts = sorted({t for r in results.values() for t in r['by_agreement']})
    lines = [
        f'Training truth vs gold ({source}; correct = same label, IoU > '
        f'{next(iter(results.values()))["iou_thr"]:g})',
        '',
        '| method | boxes | precision | recall | c on correct boxes | mean IoU | '
        + ' | '.join(f'precision T={t}' for t in ts)
        + ' |',
        '|---|---|---|---|---|---|' + '---|' * len(ts),
    ]
    for name, r in results.items():
        by_t = r['by_agreement']
        cells = [
            f'{_pct(by_t[t]["precision"])} ({by_t[t]["boxes"]})' if t in by_t else '–' for t in ts
        ]
        mean_iou = '–' if r['mean_iou'] is None else f'{r["mean_iou"]:.3f}'
        lines.append(
            f'| {name} | {r["boxes"]} | {_pct(r["precision"])} | {_pct(r["recall"])} | '
            f'{_pct(r["weighted_precision"])} | {mean_iou} | ' + ' | '.join(cells) + ' |'
        )
    lines += [
        '',
        'False positives (boxes that overlap no gold box, any label: clutter or background) '
        'and missed gold objects (no box on them, any label)',
        '',
        '| method | false positives | missed | '
        + ' | '.join(f'FP share T={t}' for t in ts)
        + ' | '
        + ' | '.join(f'missed if T>={t}' for t in ts)
        + ' |',
        '|---|---|---|' + '---|' * (2 * len(ts)),
    ]
    for name, r in results.items():
        by_t = r['by_agreement']
        fp = [_pct(by_t[t]['fp_share']) if t in by_t else '–' for t in ts]
        miss = [_pct(by_t[t]['miss_share_t_at_least']) if t in by_t else '–' for t in ts]
        lines.append(
            f'| {name} | {_pct(r["fp_share"])} | {_pct(r["miss_share"])} | '
            + ' | '.join(fp + miss)
            + ' |'
        )
    return '\n'.join(lines)


def score(
    annotations: str, gold: str, methods: Sequence[str], iou_thr: float = 0.5
) -> dict[str, dict]:
    """Each aggregator's training truth from ``annotations`` scored against ``gold``.

    Images are matched by ``file_name`` and categories by name; a raters' image missing
    from ``gold`` is a ``ValueError`` naming both files. Returns ``{method: truth_quality}``
    (:func:`earl_core.metrics.rater_report.truth_quality`).
    """
    from earl_core.fusion import aggregators
    from earl_core.io.coco import load_multirater_coco
    from earl_core.metrics.rater_report import truth_quality

    raters = load_multirater_coco(annotations)
    gold_set = load_multirater_coco(gold, classes=raters.classes)
    by_name = {im['file_name']: k for k, im in enumerate(gold_set.image_infos)}
    order = []
    for info in raters.image_infos:
        if info['file_name'] not in by_name:
            raise ValueError(
                f'{gold}: no image with file_name {info["file_name"]!r} (from {annotations})'
            )
        order.append(by_name[info['file_name']])
    gold_images = [gold_set.images[k] for k in order]
    results = {}
    for name in methods:
        agg = aggregators.build_aggregator(aggregators.CONFIG_AGGREGATORS.get(name, name))
        results[name] = truth_quality(agg.fuse_all(raters.images), gold_images, iou_thr)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    filter_third_party_warnings()
    args = parse_args(argv)
    try:
        results = score(args.annotations, args.gold, args.methods, args.iou_thr)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    print(markdown(results, osp.basename(args.annotations)))
    if args.out:
        from earl_core.io import safe_output

        safe_output.write_json(args.out, results, inputs=[args.annotations, args.gold], indent=1)
    return results


if __name__ == '__main__':
    main()
