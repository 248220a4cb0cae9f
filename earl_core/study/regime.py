"""The regime map of the MED-MNIST study: which method wins under which single kind of noise.

Every *cell* is one data setting of ``tools/make_medmnist.py`` at the powered study's scale
(``--preset study-vindr-like``: 96 px, realistic raters, the same images in every cell:
contrast 0.25-1 and 5-10 clutter items, which the gold files never label). Each cell starts
from :data:`BASE_FLAGS`, the realistic raters with every noise source off, and switches
on exactly one kind of noise (``clean`` switches on none, ``vindr-like`` is the preset
itself, every noise at once). The levels were chosen by measurement (each cell's 1,500
training images at data seed 0, ``tools/analyze_raters.py`` and the generator's realised
per-rater rates in ``meta.json``; 300 images gave the same rates and shares within 0.01) so that
each noise alone is at least as strong as in the ``vindr-like`` preset, or as the paper's
raters at p = 0.8:

``clean``
    no noise: every rater boxes every digit with its true label and a near-exact box
    (partner rate 1.00, same label among partners 1.00, partner IoU p50 0.95, agreement
    T = 3 on every fused box, 2.50 boxes per rater and image). The control.
``flips``
    ``--flip-rate 0.2``: each box has a wrong label with probability 0.2 (half of them the
    object's look-alike, shared by the raters); realised 19-20 % per rater. Same label
    among partners 0.66, as the paper's raters at p = 0.8 (0.650, docs/medmnist.md); mean
    T 1.95.
``misses``
    ``--miss-rate 0.1 --visibility-threshold 0.38 --visibility-width 0.04``: faint digits
    are missed by every rater together (the vindr-like threshold), and any digit by one
    rater alone with probability 0.1. Realised 26-27 % of the digits missed per rater;
    11 % boxed by nobody, 11 % by one rater only (vindr-like: 17-22 % per rater, 11 % and
    13 %); partner rate 0.87, 1.84 boxes per rater and image.
``clutter-fp``
    ``--fp-rate 0.2``: each clutter item is boxed by each rater with probability 0.2,
    labelled with the digit it resembles. 4.01 boxes per rater and image for 2.50 digits
    (38 % of the rater boxes on clutter; vindr-like: 35 % of the NA truth boxes are false
    positives, docs/medmnist.md); partner rate 0.70, mean T 1.94.
``jitter``
    ``--box-noise 0.05 --box-tail-df 1.5 --box-bias 0.1 0 -0.1``: heavy-tailed box noise
    (Student-t, 1.5 degrees of freedom) of scale 0.05 of the box size, and one loose, one
    exact, one tight rater (log size factor +-0.1). Median IoU with the true box 0.72-0.76
    (vindr-like's weak rater: 0.74), partner IoU p50 0.63, partner rate 0.78 (the tail
    splits some clusters).
``heterogeneous``
    ``--rater-mix 1 0 2``: one expert without noise and two weak raters with each of the
    four noises above at its cell's level (the weak raters' boxes loose by +0.1). Spread
    of the raters' F1 against the others' consensus 0.13; 19 % of the digits are boxed by
    one rater only (mostly the expert); partner rate 0.53, mean T 1.45.
``vindr-like``
    ``--preset study-vindr-like`` unchanged: misses, clutter, flips, hedging double
    boxes, heavy-tailed biased boxes, one expert, one normal and one weak rater (partner
    rate 0.59, same label among partners 0.79, partner IoU p50 0.70, as VinDr-CXR; mean
    T 1.55, F1 spread 0.10).

One training run per cell and method (``tools/benchmark_medmnist.py --seeds 1``) gives
*leads*, not verdicts: the study's seed SD of a paired difference is about 0.025
mAP@[.5:.95] (converged runs, docs/results.md).
Everything here is computation on dicts (plus the plot's file); running the cells is
``tools/regime_map.py``'s.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from earl_core.io.safe_output import atomic_open
from earl_core.study.benchmark import LABELS, METHODS, REFERENCE, method_order
from earl_core.study.summary import t_interval

#: make_medmnist.py preset every cell starts from (96 px, realistic raters, clutter).
PRESET = 'study-vindr-like'
#: The realistic raters with every noise source off: no misses (threshold 0 with a
#: sharp sigmoid: a digit of the faintest contrast, 0.25, is seen with probability
#: 1 - 1e-11), no false positives, no wrong labels, no double boxes, near-exact boxes
#: (scale 0.01 of the box size, near-normal tail), no size bias.
BASE_FLAGS: dict[str, tuple[float, ...]] = {
    'miss-rate': (0,),
    'visibility-threshold': (0,),
    'visibility-width': (0.01,),
    'fp-rate': (0,),
    'flip-rate': (0,),
    'double-rate': (0,),
    'box-noise': (0.01,),
    'box-tail-df': (30,),
    'box-bias': (0,),
    'box-bias-sd': (0,),
}
_MISSES = {'miss-rate': (0.1,), 'visibility-threshold': (0.38,), 'visibility-width': (0.04,)}
_JITTER = {'box-noise': (0.05,), 'box-tail-df': (1.5,), 'box-bias': (0.1, 0, -0.1)}


@dataclass(frozen=True)
class Cell:
    """One data setting of the regime map.

    Args:
        name (str): the cell's name (``--cells``; its folder ``OUT/cells/<name>``).
        noise (str): the kind of noise it switches on (``none``, ``all`` or one kind).
        description (str): one line for the report.
        flags (Mapping[str, tuple[float, ...]]): make_medmnist.py flags (without ``--``)
            that replace or add to :data:`BASE_FLAGS`.
        from_base (bool): start from :data:`BASE_FLAGS` (False: the preset alone).
            Defaults to True.
    """

    name: str
    noise: str
    description: str
    flags: Mapping[str, tuple[float, ...]]
    from_base: bool = True


CELLS: tuple[Cell, ...] = (
    Cell('clean', 'none', 'no noise: every digit boxed by every rater, true label', {}),
    Cell('flips', 'label flips', 'wrong labels (p = 0.2 per box)', {'flip-rate': (0.2,)}),
    Cell('misses', 'misses', 'faint digits missed by all, any digit by one (p = 0.1)', _MISSES),
    Cell(
        'clutter-fp',
        'false positives',
        'clutter boxed as digits (p = 0.2 per item)',
        {'fp-rate': (0.2,)},
    ),
    Cell('jitter', 'box jitter', 'heavy-tailed box noise (0.05), loose / tight raters', _JITTER),
    Cell(
        'heterogeneous',
        'heterogeneous raters',
        'one clean expert, two weak raters with all four noises',
        {
            'rater-mix': (1, 0, 2),
            'flip-rate': (0, 0.2, 0.2),
            'miss-rate': (0, 0.1, 0.1),
            'visibility-threshold': (0, 0.38, 0.38),
            'visibility-width': (0.04,),
            'fp-rate': (0, 0.2, 0.2),
            'box-noise': (0.01, 0.05, 0.05),
            'box-tail-df': (1.5,),
            'box-bias': (0, 0, 0.1),
        },
    ),
    Cell('vindr-like', 'all', 'the study-vindr-like preset itself (every noise)', {}, False),
)
CELL_NAMES = tuple(c.name for c in CELLS)
#: The methods a cell can train (one model each; per-rater models and their ensemble are
#: the study's, not the map's).
MAP_METHODS = tuple(m for m in METHODS if m not in ('rater', 'ensemble'))
DEFAULT_METHODS = (
    'na',
    'wbf',
    'wbf-earl',
    'mv',
    'em-earl',
    'wbf-soft',
    'wbf-ignore',
    'presence-em-earl',
)
#: The rater-report statistics of a cell (:func:`cell_statistics`), with short labels.
STATISTICS = {
    'partner_rate': 'partner rate',
    'same_label_among_partners': 'same label among partners',
    'partner_iou_p50': 'partner IoU p50',
    'boxes_per_rater_image': 'boxes / rater / image',
    'mean_agreement_t': 'mean T',
    't1_share': 'T = 1 share',
    'rater_f1_spread': 'rater F1 spread',
}
_SHORT = {
    'partner_rate': 'partner',
    'same_label_among_partners': 'same label',
    'partner_iou_p50': 'IoU p50',
    'boxes_per_rater_image': 'boxes',
    'mean_agreement_t': 'T',
    'rater_f1_spread': 'F1 spread',
}


def cell_by_name(name: str) -> Cell:
    """The cell called ``name`` (ValueError naming the known cells otherwise)."""
    for cell in CELLS:
        if cell.name == name:
            return cell
    raise ValueError(f'unknown regime cell {name!r}; known: {", ".join(CELL_NAMES)}')


def cell_flags(cell: Cell) -> list[str]:
    """The cell's make_medmnist.py flags as command-line words (base first, then its own).

    Examples:
        >>> cell_flags(cell_by_name('flips'))[-2:]
        ['--box-bias-sd', '0']
        >>> cell_flags(cell_by_name('vindr-like'))
        []
    """
    flags = dict(BASE_FLAGS) if cell.from_base else {}
    flags.update(cell.flags)
    words = []
    for key, values in flags.items():
        words += ['--' + key, *(f'{v:g}' for v in values)]
    return words


def cell_statistics(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The rater-report statistics a user compares with their own data (:data:`STATISTICS`).

    Args:
        report (Mapping): ``report.json`` of ``tools/analyze_raters.py``
            (:func:`~earl_core.metrics.rater_report.rater_report`).

    Returns:
        dict: partner rate, same label among partners and partner IoU median (overall, at
        the report's partner IoU threshold, 0.4 by default), boxes per rater per image read,
        the mean WBF agreement T and the share of fused boxes with T = 1, and the spread
        (max - min) of the raters' F1 against the others' consensus; None where undefined.
    """
    partners = report['partner_statistics']['overall']
    per_rater = report['per_rater'].values()
    read = sum(r['images_read'] for r in per_rater)
    wbf = report['wbf_agreement']
    fused = wbf['fused_boxes']
    f1 = [r['f1'] for r in per_rater if r['f1'] is not None]
    return {
        'partner_rate': partners['partner_rate'],
        'same_label_among_partners': partners['same_label_among_partners'],
        'partner_iou_p50': partners['iou_p50'],
        'boxes_per_rater_image': sum(r['boxes'] for r in per_rater) / read if read else None,
        'mean_agreement_t': (
            sum(int(t) * n for t, n in wbf['counts'].items()) / fused if fused else None
        ),
        't1_share': wbf['shares'].get('1', 0.0) if fused else None,
        'rater_f1_spread': max(f1) - min(f1) if len(f1) > 1 else None,
    }


def method_scores(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method of one cell: mAP@0.4 and mAP@[.5:.95] (mean over its runs' seeds) and the
    test-set bootstrap SE of seed 0, where the study computed one (``--bootstrap``).

    Args:
        results (Sequence[Mapping]): the cell's ``result.json`` dicts (``method``,
            ``seed``, ``metrics``, optionally ``bootstrap``).

    Returns:
        dict: method -> ``mAP_40``, ``mAP``, ``seeds``, ``by_seed`` (seed -> its scores) and,
        with a bootstrap, ``mAP_se``
        and ``mAP_diff_se`` (SE of the difference to NA), in :data:`METHODS` order.
    """
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_method.setdefault(r['method'], []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for method in sorted(by_method, key=method_order):
        runs = sorted(by_method[method], key=lambda r: r['seed'])
        entry: dict[str, Any] = {'seeds': [r['seed'] for r in runs]}
        entry['by_seed'] = {
            str(r['seed']): {k: r['metrics'][k] for k in ('mAP_40', 'mAP')} for r in runs
        }
        for key in ('mAP_40', 'mAP'):
            entry[key] = sum(r['metrics'][key] for r in runs) / len(runs)
        boot = (runs[0].get('bootstrap') or {}).get('mAP')
        if boot:
            entry['mAP_se'] = boot['se']
            if 'diff_se' in boot:
                entry['mAP_diff_se'] = boot['diff_se']
        out[method] = entry
    return out


def cell_outcome(
    scores: Mapping[str, Mapping[str, Any]], reference: str = REFERENCE, metric: str = 'mAP'
) -> dict[str, Any]:
    """The winner of one cell and every method's difference to ``reference``.

    Args:
        scores (Mapping): :func:`method_scores` of the cell.
        reference (str): the method the others are compared with. Defaults to
            :data:`~earl_core.study.benchmark.REFERENCE` (WBF + EARL).
        metric (str): ``'mAP'`` (mAP@[.5:.95]) or ``'mAP_40'``. Defaults to ``'mAP'``.

    Returns:
        dict: ``winner`` (highest ``metric``; a tie goes to the earlier method of
        :data:`METHODS`; None without scores), ``margin`` (winner minus ``reference``; None
        without the reference), ``lead`` (winner minus the runner-up; None with one
        method), ``diff`` (method -> method minus ``reference``) and ``interval`` (method ->
        the paired difference to ``reference`` over the seeds both have: ``n``, ``mean`` and
        its 95 % t-interval ``lo``, ``hi``; only where ``n`` >= 2).

    Examples:
        >>> s = {'na': {'mAP': 0.62}, 'wbf-earl': {'mAP': 0.60}, 'mv': {'mAP': 0.59}}
        >>> o = cell_outcome(s)
        >>> o['winner'], round(o['margin'], 3), round(o['lead'], 3)
        ('na', 0.02, 0.02)
    """
    ranked = sorted(scores, key=lambda m: (-scores[m][metric], method_order(m)))
    ref = scores.get(reference)
    out: dict[str, Any] = {
        'winner': ranked[0] if ranked else None,
        'margin': None,
        'lead': None,
        'diff': {},
        'interval': {},
    }
    if len(ranked) > 1:
        out['lead'] = scores[ranked[0]][metric] - scores[ranked[1]][metric]
    if ref is not None:
        out['diff'] = {m: s[metric] - ref[metric] for m, s in scores.items()}
        for m, s in scores.items():
            common = sorted(set(s.get('by_seed', {})) & set(ref.get('by_seed', {})))
            if m == reference or len(common) < 2:
                continue
            d = [s['by_seed'][k][metric] - ref['by_seed'][k][metric] for k in common]
            mean, lo, hi = t_interval(d)
            out['interval'][m] = dict(n=len(d), mean=mean, lo=lo, hi=hi)
        if ranked:
            out['margin'] = out['diff'][ranked[0]]
    return out


def regime_summary(
    cells: Sequence[Cell],
    stats: Mapping[str, Mapping[str, Any] | None],
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    methods: Sequence[str],
) -> list[dict[str, Any]]:
    """One entry per cell: its settings, rater statistics, scores and outcomes.

    Args:
        cells (Sequence[Cell]): the cells of the map, in row order.
        stats (Mapping): cell name -> :func:`cell_statistics` (None: no rater report yet).
        results (Mapping): cell name -> its ``result.json`` dicts (any may be empty).
        methods (Sequence[str]): the methods of the map (others in the results are left
            out).

    Returns:
        list[dict]: ``name``, ``noise``, ``description``, ``flags``, ``statistics``,
        ``scores`` (:func:`method_scores`), ``outcome`` (mAP@[.5:.95]) and ``outcome_40``
        (mAP@0.4) (:func:`cell_outcome`).
    """
    rows = []
    for cell in cells:
        kept = [r for r in results.get(cell.name, ()) if r['method'] in methods]
        scores = method_scores(kept)
        rows.append(
            {
                'name': cell.name,
                'noise': cell.noise,
                'description': cell.description,
                'flags': cell_flags(cell),
                'statistics': stats.get(cell.name),
                'scores': scores,
                'outcome': cell_outcome(scores),
                'outcome_40': cell_outcome(scores, metric='mAP_40'),
            }
        )
    return rows


def _num(x: float | None, fmt: str = '.3f') -> str:
    return '–' if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def stats_label(stats: Mapping[str, Any] | None) -> str:
    """The key statistics of a cell in one short line (the plot's row labels)."""
    if not stats:
        return 'no rater report yet'
    keys = ('partner_rate', 'same_label_among_partners', 'partner_iou_p50')
    first = ' · '.join(f'{_SHORT[k]} {_num(stats[k], ".2f")}' for k in keys)
    keys = ('mean_agreement_t', 'boxes_per_rater_image', 'rater_f1_spread')
    second = ' · '.join(f'{_SHORT[k]} {_num(stats[k], ".2f")}' for k in keys)
    return f'{first}\n{second}'


def markdown(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], meta: Mapping) -> str:
    """The regime map as a Markdown report.

    One table: a row per cell with its rater statistics, WBF + EARL's mAP@[.5:.95] and every
    other method's difference to it (the winner in bold with a star), then the winner and its
    margin; the bootstrap SE of the test set where the study computed one.

    Args:
        rows (Sequence[Mapping]): :func:`regime_summary`.
        methods (Sequence[str]): the methods of the map (columns, in this order).
        meta (Mapping): ``command``, ``date``, ``epochs``.
    """
    others = [m for m in methods if m != REFERENCE]
    stat_keys = [k for k in STATISTICS if k != 't1_share']
    head = ['cell', *(STATISTICS[k] for k in stat_keys), f'{REFERENCE} mAP@[.5:.95]']
    head += [f'{m} − {REFERENCE}' for m in others]
    head += [f'winner (margin over {REFERENCE})', 'winner at mAP@0.4']
    runs = sorted({len(s['seeds']) for row in rows for s in row['scores'].values()}) or [0]
    if runs[-1] <= 1:
        replicates = [
            f'- finished: {meta["date"]}; {meta["epochs"]} epochs; one run (seed 0) per cell '
            'and method.',
            '- **One run per cell: an exploratory map; these are leads, not verdicts.** The '
            'seed SD of a paired difference in the study is about 0.025 mAP@[.5:.95] '
            '(converged runs, docs/results.md); a margin below that may change sign with '
            'another seed.',
        ]
    else:
        replicates = [
            f'- finished: {meta["date"]}; {meta["epochs"]} epochs; {runs[0]}–{runs[-1]} '
            'replicates per cell and method.',
            '- Each difference is the mean over the replicates both methods have, with its '
            'paired 95 % t-interval; "no detectable difference" wherever the interval covers '
            "0. The winner is the highest mean, a lead, not a verdict, where its margin's "
            'interval covers 0.',
        ]
    lines = [
        '# Regime map (generated by tools/regime_map.py)',
        '',
        f'- command: `{meta["command"]}`',
        *replicates,
        '- Differences are mAP@[.5:.95] of the method minus WBF + EARL (the paper, '
        f"`{REFERENCE}`) on the cell's gold test set; the winner has the highest "
        'mAP@[.5:.95] (★). Methods: '
        + '; '.join(f'`{m}` {LABELS.get(m, m)}' for m in methods)
        + '.',
        "- The statistics are those of `tools/analyze_raters.py` on the cell's training "
        'raters (partner IoU > 0.4; T = distinct raters of a WBF fused box): compare them '
        'with the same report of your own data.',
        '',
        '| ' + ' | '.join(head) + ' |',
        '|' + '---|' * len(head),
    ]
    for row in rows:
        lines.append('| ' + ' | '.join(_table_row(row, stat_keys, others)) + ' |')
    lines += _bootstrap_lines(rows)
    lines += ['', 'Cells (make_medmnist.py flags on top of `--preset study-vindr-like`):', '']
    for row in rows:
        flags = f'`{" ".join(row["flags"])}`' if row['flags'] else 'none (the preset itself)'
        lines.append(f'- `{row["name"]}`: {row["description"]}; {flags}')
    return '\n'.join(lines) + '\n'


def _table_row(row: Mapping[str, Any], stat_keys: Sequence[str], others: Sequence[str]) -> list:
    stats = row['statistics'] or {}
    scores, outcome = row['scores'], row['outcome']
    winner = outcome['winner']
    cells = [row['name'], *(_num(stats.get(k), '.2f') for k in stat_keys)]
    ref = scores.get(REFERENCE)
    ref_text = _num(ref['mAP'], '.4f') if ref else '–'
    cells.append(f'**{ref_text}** ★' if winner == REFERENCE else ref_text)
    for m in others:
        d = outcome['diff'].get(m)
        ci = outcome.get('interval', {}).get(m)
        if ci is not None:
            text = f'{ci["mean"]:+.4f} [{ci["lo"]:+.4f}, {ci["hi"]:+.4f}]'
        elif d is not None:
            text = _num(d, '+.4f')
        else:  # no reference run: the method's own score, marked as such
            own = scores.get(m, {}).get('mAP')
            text = '–' if own is None else f'{own:.4f} (own)'
        cells.append(f'**{text}** ★' if m == winner else text)
    if winner is None:
        cells += ['not yet run', '–']
    else:
        cells.append(f'{winner} ({_num(outcome["margin"], "+.4f")})')
        cells.append(row['outcome_40']['winner'])
    return cells


def _bootstrap_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per cell with a bootstrap: the median test-set SE of a method's score and of a
    paired difference (to NA), over the cell's methods."""
    lines = []
    for row in rows:
        se = [s['mAP_se'] for s in row['scores'].values() if 'mAP_se' in s]
        dse = [s['mAP_diff_se'] for s in row['scores'].values() if 'mAP_diff_se' in s]
        if se:
            lines.append(
                f'| {row["name"]} | {len(se)} | {statistics.median(se):.4f} | '
                f'{_num(statistics.median(dse) if dse else None, ".4f")} |'
            )
    if not lines:
        return ['', 'Test-set bootstrap SE: not computed (`--bootstrap B` adds it).']
    return [
        '',
        'Test-set sampling noise (bootstrap over the gold test images, seed 0): median over '
        "the cell's methods of the SE of mAP@[.5:.95] and of a paired difference (to NA).",
        '',
        '| cell | methods | SE of a score | SE of a difference |',
        '|---|---|---|---|',
        *lines,
    ]


def plot(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], path: str) -> str:
    """The regime map as one heat map: cells x methods, method minus WBF + EARL.

    Rows are the cells (their rater statistics in the row labels), columns the methods;
    the colour is the mAP@[.5:.95] difference to WBF + EARL (blue better, red worse; the
    WBF + EARL column shows its own score), the winner of each row is outlined. Cells
    without a result are grey.

    Returns:
        str: ``path`` (PNG).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    diff = np.full((len(rows), len(methods)), np.nan)
    for i, row in enumerate(rows):
        for j, m in enumerate(methods):
            d = row['outcome']['diff'].get(m)
            diff[i, j] = np.nan if d is None else d
    finite = np.abs(diff[np.isfinite(diff)])
    vmax = max(0.01, float(finite.max())) if finite.size else 0.01
    fig, ax = plt.subplots(figsize=(2.6 + 1.15 * len(methods), 1.6 + 0.72 * len(rows)))
    cmap = plt.get_cmap('RdBu').with_extremes(bad='0.85')
    im = ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, vmin=-vmax, vmax=vmax, aspect='auto')
    for i, row in enumerate(rows):
        for j, m in enumerate(methods):
            if not np.isfinite(diff[i, j]):
                continue
            text = f'{diff[i, j]:+.3f}'
            if m == REFERENCE:  # its own score: the level the differences start from
                text = f'{row["scores"][m]["mAP"]:.3f}'
            dark = abs(diff[i, j]) > 0.6 * vmax
            ax.text(j, i, text, ha='center', va='center', fontsize=8, color='w' if dark else 'k')
        if row['outcome']['winner'] in methods:
            j = methods.index(row['outcome']['winner'])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec='black'))
    ax.set_xticks(range(len(methods)))
    names = [LABELS.get(m, m) + (' = its mAP' if m == REFERENCE else '') for m in methods]
    ax.set_xticklabels(names, rotation=35, ha='right', fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f'{r["name"]}\n{stats_label(r["statistics"])}' for r in rows], fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.04, label='mAP@[.5:.95] − WBF+EARL')
    ax.set_title(
        'Regime map: method − WBF+EARL, winner outlined\n(one run per cell: leads, not verdicts)',
        fontsize=10,
    )
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=110, bbox_inches='tight')  # the row labels are long
    plt.close(fig)
    return path
