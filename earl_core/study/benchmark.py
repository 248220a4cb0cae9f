"""Statistics and report of a paired-seed study (``tools/benchmark_medmnist.py``).

A study trains every method with the same seeds; one *result* is a dict with ``method``,
``seed``, ``proficiency``, ``epochs`` and ``metrics`` (the unprefixed scalars of
:class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric`; :data:`METRICS` are
summarised), optionally ``bootstrap`` (:func:`bootstrap_scores`). :func:`summarize` gives
the mean and 95 % t-interval per method and the paired (same seed) differences to the
baseline and of :data:`EXTRA_PAIRS`; :func:`markdown` and :func:`plots` present them.
Everything here is computation on those dicts (plus the plots' files); running the study
is the tool's.
"""

from __future__ import annotations

import json
import math
import os.path as osp
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from earl_core.io.safe_output import atomic_open

#: The study's methods in report order (the tool's default ``--methods``); ``rater-<id>``
#: (one model per rater) sorts as ``rater``.
STUDY_METHODS = (
    'na',
    'rater',
    'ensemble',
    'mv',
    'wbf',
    'wbf-earl',
    'em-earl',
    'wbf-soft',
    'wbf-ignore',
    'presence-em-earl',
)
#: Ablations of how c enters the loss (docs/study_v3_design.md), run only when named.
ABLATION_METHODS = ('wbf-earl-wsum', 'wbf-earl-obj', 'wbf-earl-na-like', 'presence-em')
#: Challengers that landed after the pilot (issue 27): the Bayesian rater model with soft
#: targets, fitted once or with the detector in the loop. Run only when named.
CHALLENGER_METHODS = ('bayes-soft', 'bayes-loop-soft')
#: Every method, in report order.
METHODS = STUDY_METHODS + ABLATION_METHODS + CHALLENGER_METHODS
LABELS = {
    'na': 'NA (all raters’ boxes)',
    'ensemble': 'WBF ensemble of per-rater models',
    'mv': 'Majority vote',
    'wbf': 'WBF (no EARL)',
    'wbf-earl': 'WBF + EARL (paper)',
    'em-earl': 'EM-weighted WBF + EARL',
    'wbf-soft': 'WBF + soft targets (q = c)',
    'wbf-ignore': 'WBF + ignore regions (T/R < 0.5)',
    'presence-em-earl': 'Presence-aware EM + EARL (c = presence)',
    'wbf-earl-wsum': 'WBF + EARL, weight-sum normaliser',
    'wbf-earl-obj': 'WBF + EARL, objectness weighted too',
    'wbf-earl-na-like': 'WBF + EARL weighted like NA (w = T on cls, box, obj; weight sum)',
    'presence-em': 'Presence-aware EM boxes, stock head',
    'bayes-soft': 'Bayesian rater model + soft targets',
    'bayes-loop-soft': 'Bayesian rater model, detector in the loop + soft targets',
}
#: Extra paired comparisons reported beside "vs NA": (method, reference).
EXTRA_PAIRS = (
    ('wbf-earl', 'wbf'),
    ('em-earl', 'wbf-earl'),
    ('mv', 'wbf'),
    ('wbf-earl', 'ensemble'),
    ('wbf-soft', 'wbf-earl'),
    ('wbf-ignore', 'wbf-earl'),
    ('presence-em-earl', 'em-earl'),
    ('presence-em-earl', 'presence-em'),
)
#: Every other method is also compared with this one (the paper's method): the study's
#: question is whether anything beats it.
REFERENCE = 'wbf-earl'
METRICS = ('mAP_40', 'mAP')  # DetectionMAPMetric keys (unprefixed)


def rater_method(rater: str) -> str:
    """The method name of one rater's model: ``rater-<id>``."""
    return f'rater-{rater}'


def method_rater(method: str) -> str | None:
    """The rater id of a ``rater-<id>`` method (None for any other method).

    Examples:
        >>> method_rater('rater-R2'), method_rater('wbf-earl')
        ('R2', None)
    """
    return method[len('rater-') :] if method.startswith('rater-') else None


def method_family(method: str) -> str:
    """``rater`` for every ``rater-<id>`` method, the method itself otherwise (the key of
    the method's config and of its place in the report)."""
    return 'rater' if method_rater(method) is not None else method


@dataclass(frozen=True)
class Run:
    """One training run (or the ensemble, which trains nothing)."""

    method: str  # 'na', 'rater-R2', 'ensemble', ...
    seed: int
    proficiency: float
    epochs: int

    @property
    def key(self) -> str:
        return f'p{self.proficiency:g}_e{self.epochs}/{self.method}/seed{self.seed}'


def plan(
    methods: Sequence[str],
    seeds: int,
    rater_seeds: int,
    proficiencies: Sequence[float],
    epochs: int,
    raters_by_p: dict[float, list[str]],
) -> list[Run]:
    """The runs, seed-major for the single-model methods first (so a study cut short has
    whole seeds of them), then the per-rater models and their ensembles."""
    runs = []
    for p in proficiencies:
        for s in range(seeds):
            runs += [Run(m, s, p, epochs) for m in methods if m not in ('rater', 'ensemble')]
        for s in range(min(seeds, rater_seeds)):
            if 'rater' in methods:
                runs += [Run(rater_method(r), s, p, epochs) for r in raters_by_p[p]]
            if 'ensemble' in methods:
                runs.append(Run('ensemble', s, p, epochs))
    return runs


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


#: The half-width of a paired difference's 95 % interval a study should reach (mAP units).
TARGET_HALF_WIDTH = 0.01


def seeds_for_half_width(
    sd: float, half_width: float = TARGET_HALF_WIDTH, level: float = 0.95, max_seeds: int = 10_000
) -> int | None:
    """Paired seeds needed for a t-interval of the mean difference no wider than asked.

    The smallest n >= 2 with ``t_{n-1} * sd / sqrt(n) <= half_width``, where ``sd`` is the
    seed-to-seed standard deviation of the paired difference (measured in a pilot) and
    ``t_{n-1}`` the two-sided ``level`` quantile of Student's t with n - 1 degrees of
    freedom. The answer is a plan, not a guarantee: the interval of the new study uses its
    own SD, which scatters around the pilot's.

    Args:
        sd (float): standard deviation of the paired differences (>= 0, finite).
        half_width (float): target half-width (> 0). Defaults to 0.01.
        level (float): confidence level in (0, 1). Defaults to 0.95.
        max_seeds (int): give up above this many. Defaults to 10,000.

    Returns:
        int | None: the number of seeds, or None if more than ``max_seeds`` (or sd is NaN).

    Examples:
        >>> seeds_for_half_width(0.0)
        2
        >>> seeds_for_half_width(0.01)  # t_{n-1} / sqrt(n) <= 1 first holds at n = 7
        7
    """
    if math.isnan(sd):
        return None
    if sd < 0 or not math.isfinite(sd) or not half_width > 0 or not 0 < level < 1:
        raise ValueError(
            f'need sd >= 0, half_width > 0, 0 < level < 1; got {sd}, {half_width}, {level}'
        )
    from scipy.stats import t

    q = 0.5 + level / 2
    # the normal approximation is a lower bound of n; step up from it
    n = max(2, int((1.959963984540054 * sd / half_width) ** 2))
    while n <= max_seeds:
        if t.ppf(q, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
        n += 1
    return None


def sd_upper_bound(sd: float, n: int, level: float = 0.8) -> float:
    """One-sided ``level`` upper confidence bound of a normal SD estimated from ``n`` values.

    ``sd * sqrt((n - 1) / chi2_{1-level}(n - 1))``: a pilot's SD scatters, and a study sized
    at the pilot's SD itself misses its target half-width about half the time; sized at
    this bound, it misses it in about ``1 - level`` of pilots. NaN for n < 2 or a NaN sd.

    Examples:
        >>> round(sd_upper_bound(0.01, 8), 4)
        0.0135
    """
    if n < 2 or math.isnan(sd):
        return math.nan
    from scipy.stats import chi2

    return float(sd * math.sqrt((n - 1) / chi2.ppf(1 - level, n - 1)))


def verdict(lo: float, hi: float) -> str:
    """Words for a difference's interval (method minus baseline)."""
    if math.isnan(lo) or math.isnan(hi):
        return 'one seed: no interval'
    if lo <= 0.0 <= hi:
        return 'no detectable difference'
    return 'better' if lo > 0 else 'worse'


def paired_diff(a: dict[int, dict], b: dict[int, dict], metric: str) -> dict | None:
    """Mean and t-interval of a - b over the seeds both have (None without a common seed)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s]['metrics'][metric] - b[s]['metrics'][metric] for s in seeds]
    m, lo, hi = t_interval(diffs)
    sd = _sd(diffs)
    return dict(
        mean=m,
        lo=lo,
        hi=hi,
        n=len(diffs),
        verdict=verdict(lo, hi),
        sd=sd,
        seeds_needed=seeds_for_half_width(sd),
        sd_upper=(upper := sd_upper_bound(sd, len(diffs))),
        seeds_needed_upper=seeds_for_half_width(upper),
    )


def _pairs(methods: Sequence[str], baseline: str) -> list[tuple[str, str]]:
    """:data:`EXTRA_PAIRS`, then every other method minus :data:`REFERENCE` (a comparison
    already listed either way round is not repeated)."""
    pairs = list(EXTRA_PAIRS)
    for m in sorted(methods, key=method_order):
        if m in (REFERENCE, baseline) or (m, REFERENCE) in pairs or (REFERENCE, m) in pairs:
            continue
        pairs.append((m, REFERENCE))
    return pairs


def summarize(results: Sequence[dict], baseline: str = 'na') -> dict:
    """Per (proficiency, epochs, method): mean/CI per metric and paired diffs to baseline."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in results:
        grp = groups.setdefault((r['proficiency'], r['epochs']), {})
        grp.setdefault(r['method'], {})[r['seed']] = r
    out, pairs = [], []
    for (p, e), methods in sorted(groups.items()):
        base = methods.get(baseline, {})
        for method in sorted(methods, key=method_order):
            runs = methods[method]
            row: dict[str, Any] = dict(
                proficiency=p, epochs=e, method=method, seeds=sorted(runs), n=len(runs)
            )
            for m in METRICS:
                vals = [runs[s]['metrics'][m] for s in sorted(runs)]
                mean, lo, hi = t_interval(vals)
                row[m] = dict(mean=mean, lo=lo, hi=hi, sd=_sd(vals), values=vals)
                if method != baseline and (d := paired_diff(runs, base, m)):
                    row[f'{m}_vs_{baseline}'] = d
                boot = [runs[s].get('bootstrap', {}).get(m) for s in sorted(runs)]
                boot = [b for b in boot if b]
                if boot:
                    row[f'{m}_bootstrap'] = boot[0]
            out.append(row)
        for a, b in _pairs(methods, baseline):
            if a in methods and b in methods and b != baseline:
                row = dict(proficiency=p, epochs=e, method=a, reference=b)
                for m in METRICS:
                    row[m] = paired_diff(methods[a], methods[b], m)
                if all(row[m] for m in METRICS):
                    pairs.append(row)
    summary = dict(baseline=baseline, rows=out, pairs=pairs)
    summary['sweep'] = sweep_table(summary, baseline)
    curves = curve_table(results)
    if curves:  # runs without validation curves (the pilot's) keep their summary as it was
        summary['curves'] = curves
    return summary


def val_curve_from_log(lines: Iterable[str], prefix: str = 'coco') -> list[dict]:
    """The validation curve in mmengine's scalar log (``<timestamp>/vis_data/<timestamp>.json``:
    one JSON object per line; a validation line has ``<prefix>/mAP`` and ``step`` = epoch).

    Returns:
        list[dict]: ``epoch``, ``mAP`` (mAP@[.5:.95]) and ``mAP_40`` per validation, by
        epoch (a repeated epoch keeps its last line).

    Raises:
        ValueError: a line that is not JSON, or a validation line without ``step`` or
            ``<prefix>/mAP_40`` (named by its line number).

    Examples:
        >>> val_curve_from_log(['{"loss": 1.2, "step": 50}',
        ...                     '{"coco/mAP_40": 0.8, "coco/mAP": 0.5, "step": 4}'])
        [{'epoch': 4, 'mAP': 0.5, 'mAP_40': 0.8}]
    """
    points: dict[int, dict] = {}
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise ValueError(f'scalar log line {i}: not JSON ({e})') from e
        if not isinstance(rec, dict) or f'{prefix}/mAP' not in rec:
            continue
        missing = [k for k in ('step', f'{prefix}/mAP_40') if k not in rec]
        if missing:
            raise ValueError(f'scalar log line {i}: validation line without {missing}: {rec}')
        epoch = int(rec['step'])
        points[epoch] = dict(
            epoch=epoch, mAP=float(rec[f'{prefix}/mAP']), mAP_40=float(rec[f'{prefix}/mAP_40'])
        )
    return [points[e] for e in sorted(points)]


def curve_table(results: Sequence[dict]) -> list[dict]:
    """Validation curves per (proficiency, epochs, method) over the runs that have one
    (``val_curve`` in result.json): per validated epoch, each metric's mean, min and max
    over the seeds validated there.

    Returns:
        list[dict]: ``proficiency``, ``epochs``, ``method``, ``seeds`` and ``points``
        (``epoch``, ``n``, and per :data:`METRICS` key ``mean`` / ``min`` / ``max`` /
        ``values``), in report order; empty when no run has a curve.
    """
    groups: dict[tuple, dict[int, list]] = {}
    for r in results:
        if r.get('val_curve'):
            key = (r['proficiency'], r['epochs'], r['method'])
            groups.setdefault(key, {})[r['seed']] = r['val_curve']
    out = []
    for (p, e, method), by_seed in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], method_order(kv[0][2]))
    ):
        epochs = sorted({pt['epoch'] for curve in by_seed.values() for pt in curve})
        points = []
        for ep in epochs:
            at = [pt for s in sorted(by_seed) for pt in by_seed[s] if pt['epoch'] == ep]
            point: dict[str, Any] = dict(epoch=ep, n=len(at))
            for m in METRICS:
                vals = [pt[m] for pt in at]
                point[m] = dict(
                    mean=float(np.mean(vals)), min=min(vals), max=max(vals), values=vals
                )
            points.append(point)
        out.append(
            dict(proficiency=p, epochs=e, method=method, seeds=sorted(by_seed), points=points)
        )
    return out


def sweep_table(summary: dict, baseline: str = 'na') -> list[dict]:
    """The proficiency sweep: per epochs with two or more proficiencies, per method, the
    mean and the paired difference to ``baseline`` at each p over the same seeds at every p
    (the seeds that method and the baseline both have at all of them), so that the columns
    differ only in p. Seed 0's bootstrap SE of the difference (test-set noise only) is kept
    for one-seed columns."""
    rows = summary['rows']
    out = []
    for e in sorted({r['epochs'] for r in rows}):
        grp = {(r['proficiency'], r['method']): r for r in rows if r['epochs'] == e}
        ps = sorted({p for p, _ in grp})
        if len(ps) < 2:
            continue
        for method in sorted({m for _, m in grp}, key=method_order):
            if not all((p, method) in grp and (p, baseline) in grp for p in ps):
                continue
            seeds = set.intersection(
                *(set(grp[p, method]['seeds']) & set(grp[p, baseline]['seeds']) for p in ps)
            )
            if not seeds:
                continue
            entry: dict[str, Any] = dict(epochs=e, method=method, seeds=sorted(seeds), cells={})
            for p in ps:
                cell = {}
                for m in METRICS:
                    r, b = grp[p, method], grp[p, baseline]
                    vals = [v for s, v in zip(r['seeds'], r[m]['values']) if s in seeds]
                    base = [v for s, v in zip(b['seeds'], b[m]['values']) if s in seeds]
                    mean = t_interval(vals)[0]
                    cell[m] = dict(mean=mean)
                    if method != baseline:
                        d, lo, hi = t_interval(np.subtract(vals, base))
                        cell[m]['diff'] = dict(mean=d, lo=lo, hi=hi, verdict=verdict(lo, hi))
                        boot = r.get(f'{m}_bootstrap') or {}
                        if seeds == {0} and 'diff_se' in boot:  # bootstraps are seed 0's
                            cell[m]['diff']['boot_se'] = boot['diff_se']
                entry['cells'][p] = cell
            out.append(entry)
    return out


def _sd(vals: Sequence[float]) -> float:
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan


def method_order(method: str) -> tuple[int, str]:
    """Sort key: report order of :data:`METHODS` (``rater-<id>`` as ``rater``), unknown last."""
    base = method_family(method)
    return (METHODS.index(base) if base in METHODS else len(METHODS), method)


def _fmt(x: float) -> str:
    return '–' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.4f}'


def _ci(entry: dict) -> str:
    if math.isnan(entry['lo']):
        return f'{_fmt(entry["mean"])}'
    return f'{_fmt(entry["mean"])} [{_fmt(entry["lo"])}, {_fmt(entry["hi"])}]'


def _diff(entry: dict | None) -> str:
    if not entry:
        return ''
    m, lo, hi = entry['mean'], entry['lo'], entry['hi']
    if math.isnan(lo):
        return f'{m:+.4f} ({entry["verdict"]})'
    return f'{m:+.4f} [{lo:+.4f}, {hi:+.4f}] ({entry["verdict"]})'


def markdown(summary: dict, meta: dict) -> str:
    """The report: ``meta`` gives ``command``, ``date``, ``device`` and ``machine``."""
    lines = [
        '# MED-MNIST benchmark (generated by tools/benchmark_medmnist.py)',
        '',
        f'- command: `{meta["command"]}`',
        f'- finished: {meta["date"]}; device: {meta["device"]}; machine: {meta["machine"]}',
        *_data_line(meta.get('study')),
        '- mean over seeds with its 95 % t-interval; "vs NA" = the paired difference '
        '(same seed), mean and 95 % t-interval; "no detectable difference" where it covers 0.',
        '',
    ]
    rows = summary['rows']
    for p, e in sorted({(r['proficiency'], r['epochs']) for r in rows}):
        lines += [
            f'## p = {p:g}, {e} epochs',
            '',
            '| method | seeds | mAP@0.4 | mAP@[.5:.95] | mAP@0.4 vs NA | mAP@[.5:.95] vs NA |',
            '|---|---|---|---|---|---|',
        ]
        for r in rows:
            if (r['proficiency'], r['epochs']) != (p, e):
                continue
            name = LABELS.get(r['method'], r['method'])
            lines.append(
                f'| {name} | {r["n"]} | {_ci(r["mAP_40"])} | {_ci(r["mAP"])} | '
                f'{_diff(r.get("mAP_40_vs_na"))} | {_diff(r.get("mAP_vs_na"))} |'
            )
        pairs = [r for r in summary.get('pairs', []) if (r['proficiency'], r['epochs']) == (p, e)]
        if pairs:
            lines += [
                '',
                'Other paired differences (same seeds):',
                '',
                '| difference | seeds | mAP@0.4 | mAP@[.5:.95] |',
                '|---|---|---|---|',
            ]
            for r in pairs:
                name = f'{LABELS.get(r["method"], r["method"])} − {LABELS.get(r["reference"])}'
                lines.append(
                    f'| {name} | {r["mAP_40"]["n"]} | {_diff(r["mAP_40"])} | {_diff(r["mAP"])} |'
                )
        lines += _answer_markdown(summary, p, e)
        lines += _power_markdown(summary, p, e)
        boots = [r for r in rows if (r['proficiency'], r['epochs']) == (p, e)]
        boots = [r for r in boots if r.get('mAP_bootstrap')]
        if boots:
            lines += [
                '',
                'Test-set sampling noise (seed 0, bootstrap over the gold test images): '
                'SE of the score / SE of the paired difference to NA.',
                '',
                '| method | resamples | mAP@0.4 SE | mAP@0.4 diff SE | mAP SE | mAP diff SE |',
                '|---|---|---|---|---|---|',
            ]
            for r in boots:
                b40, b = r['mAP_40_bootstrap'], r['mAP_bootstrap']
                lines.append(
                    f'| {LABELS.get(r["method"], r["method"])} | {b["num"]} | {b40["se"]:.4f} '
                    f'| {_fmt(b40.get("diff_se", math.nan))} | {b["se"]:.4f} '
                    f'| {_fmt(b.get("diff_se", math.nan))} |'
                )
        lines += _curves_markdown(summary.get('curves', []), p, e)
        lines.append('')
    lines += _sweep_markdown(summary.get('sweep', []))
    return '\n'.join(lines)


def _curves_markdown(curves: Sequence[dict], p: float, e: int) -> list[str]:
    rows = [c for c in curves if (c['proficiency'], c['epochs']) == (p, e)]
    if not rows:
        return []
    epochs = sorted({pt['epoch'] for c in rows for pt in c['points']})
    lines = [
        '',
        'Validation curves (the gold validation set, the averaged weights that are tested): '
        'per validated epoch, mAP@[.5:.95] mean [min, max] over the seeds / mAP@0.4 mean.',
        '',
        '| method | seeds | ' + ' | '.join(f'epoch {ep}' for ep in epochs) + ' |',
        '|---|---|' + '---|' * len(epochs),
    ]
    for c in rows:
        at = {pt['epoch']: pt for pt in c['points']}
        cells = []
        for ep in epochs:
            pt = at.get(ep)
            if pt is None:
                cells.append('')
                continue
            a, b = pt['mAP'], pt['mAP_40']
            cells.append(f'{a["mean"]:.3f} [{a["min"]:.3f}, {a["max"]:.3f}] / {b["mean"]:.3f}')
        seeds = ','.join(str(s) for s in c['seeds'])
        name = LABELS.get(c['method'], c['method'])
        lines.append(f'| {name} | {seeds} | ' + ' | '.join(cells) + ' |')
    return lines


def _data_line(study: dict | None) -> list[str]:
    """The report's line naming the data (``OUT/study.json``), if recorded."""
    if not study:
        return []
    flags = ' '.join(study.get('data_args') or []) or 'none'
    line = (
        f'- data: `tools/make_medmnist.py --preset {study["preset"]}`, data seed '
        f'{study["data_seed"]}, extra flags: {flags}'
    )
    if 'vindr-like' in study['preset'] or 'realistic' in (study.get('data_args') or []):
        line += ' (realistic raters: the p in the headings is not used)'
    if study.get('data_seed_follows_seed'):
        line += (
            f'; **each replicate its own data**: seed k trains and is tested on data seed '
            f'{study["data_seed"]} + k'
        )
    out = [line]
    if study.get('ema'):
        ema = study['ema']
        out.append(
            f'- averaged weights tested: --ema {ema["mode"]} over the last '
            f"{ema['window']:g} of the iterations (not the configs' ExpMomentumEMA)"
        )
    return out


def power_rows(summary: dict, proficiency: float, epochs: int) -> list[dict]:
    """Every paired mAP@[.5:.95] difference of one setting with its SD and seeds needed.

    Returns:
        list[dict]: ``name`` (method − reference), ``n``, ``sd``, ``half_width`` (of the
        interval now) and ``seeds_needed`` for a half-width of :data:`TARGET_HALF_WIDTH`;
        ``sd_40`` and ``seeds_needed_40``: the same for the mAP@0.4 difference.
    """
    baseline = summary['baseline']
    base = LABELS.get(baseline, 'NA')
    out = []
    entries = [
        (
            f'{LABELS.get(r["method"], r["method"])} − {base}',
            r.get('mAP_vs_' + baseline),
            r.get('mAP_40_vs_' + baseline),
        )
        for r in summary['rows']
        if (r['proficiency'], r['epochs']) == (proficiency, epochs)
    ]
    entries += [
        (
            f'{LABELS.get(r["method"], r["method"])} − {LABELS.get(r["reference"])}',
            r['mAP'],
            r.get('mAP_40'),
        )
        for r in summary.get('pairs', [])
        if (r['proficiency'], r['epochs']) == (proficiency, epochs)
    ]
    for name, d, d40 in entries:
        if not d or d['n'] < 2 or 'sd' not in d:
            continue
        half = (d['hi'] - d['lo']) / 2
        out.append(
            dict(
                name=name,
                n=d['n'],
                sd=d['sd'],
                half_width=half,
                seeds_needed=d['seeds_needed'],
                seeds_needed_upper=d.get('seeds_needed_upper'),
                sd_40=(d40 or {}).get('sd', math.nan),
                seeds_needed_40=(d40 or {}).get('seeds_needed'),
            )
        )
    return out


def _power_markdown(summary: dict, p: float, e: int) -> list[str]:
    rows = power_rows(summary, p, e)
    if not rows:
        return []
    lines = [
        '',
        f'Power (mAP@[.5:.95]): seed SD of each paired difference, the half-width of its '
        f'95 % interval now, and the paired seeds a study needs for a half-width of '
        f'{TARGET_HALF_WIDTH:g} at that SD and at its 80 % upper confidence bound (the SD of '
        'a few seeds is itself uncertain).',
        '',
        '| difference | seeds | SD of the difference | half-width now | seeds for ±'
        f"{TARGET_HALF_WIDTH:g} | at the SD's upper bound | mAP@0.4: SD | mAP@0.4: seeds "
        f'for ±{TARGET_HALF_WIDTH:g} |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        need, upper = (_seeds(r['seeds_needed']), _seeds(r.get('seeds_needed_upper')))
        need_40 = '–' if math.isnan(r['sd_40']) else _seeds(r['seeds_needed_40'])
        lines.append(
            f'| {r["name"]} | {r["n"]} | {r["sd"]:.4f} | {r["half_width"]:.4f} | {need} | {upper} '
            f'| {_fmt(r["sd_40"])} | {need_40} |'
        )
    return lines


#: The question the study answers for a user: does any method beat the paper's by at least
#: this much mAP@[.5:.95], with its interval above zero?
MARGIN = 0.02


def versus_reference(
    summary: dict, proficiency: float, epochs: int, metric: str = 'mAP'
) -> list[dict]:
    """Every method minus :data:`REFERENCE` in ``metric`` (:data:`METRICS`; default
    mAP@[.5:.95]) for one setting, with the 95 %
    t-interval and the Bonferroni-adjusted one (level 1 - 0.05 / k over the k methods so
    compared: the best of k is picked after looking, so its plain interval is too kind).

    A comparison stored the other way round (``reference − NA``, ``reference − WBF``) is
    negated (same seeds, same interval mirrored).

    Returns:
        list[dict]: ``method``, ``n``, ``mean``, ``lo``, ``hi``, ``adj_lo``, ``adj_hi``,
        ``sd``, best first (largest mean).
    """
    from scipy.stats import t

    setting = (proficiency, epochs)
    base = summary.get('baseline', 'na')
    stored = [
        (r['method'], r['reference'], r[metric])
        for r in summary.get('pairs', [])
        if (r['proficiency'], r['epochs']) == setting
    ]
    stored += [
        (r['method'], base, r[f'{metric}_vs_{base}'])
        for r in summary['rows']
        if (r['proficiency'], r['epochs']) == setting and r.get(f'{metric}_vs_{base}')
    ]
    found = [(a, d) for a, b, d in stored if b == REFERENCE]
    found += [
        (b, dict(d, mean=-d['mean'], lo=-d['hi'], hi=-d['lo']))
        for a, b, d in stored
        if a == REFERENCE
    ]
    found = [(m, d) for m, d in found if d['n'] >= 2]
    out = []
    for method, d in found:
        half = t.ppf(1 - 0.025 / len(found), d['n'] - 1) * d['sd'] / math.sqrt(d['n'])
        out.append(
            dict(
                method=method,
                n=d['n'],
                mean=d['mean'],
                lo=d['lo'],
                hi=d['hi'],
                adj_lo=d['mean'] - half,
                adj_hi=d['mean'] + half,
                sd=d['sd'],
            )
        )
    return sorted(out, key=lambda r: -r['mean'])


def answer(summary: dict, proficiency: float, epochs: int, margin: float = MARGIN) -> dict | None:
    """The plain answer for one setting: does the best method beat :data:`REFERENCE` by at
    least ``margin`` mAP@[.5:.95] with its (Bonferroni-adjusted) interval above zero?

    Returns:
        dict | None: ``answer`` ('yes' / 'no'), ``best`` (its :func:`versus_reference` row),
        ``k`` (methods compared), ``plain_yes`` (the answer without the adjustment); None
        when no method has two paired seeds with the reference.
    """
    rows = versus_reference(summary, proficiency, epochs)
    if not rows:
        return None
    best = rows[0]
    big = best['mean'] >= margin
    return dict(
        answer='yes' if big and best['adj_lo'] > 0 else 'no',
        plain_yes=big and best['lo'] > 0,
        best=best,
        k=len(rows),
        margin=margin,
    )


def _answer_markdown(summary: dict, p: float, e: int) -> list[str]:
    a = answer(summary, p, e)
    if a is None:
        return []
    b, ref = a['best'], LABELS.get(REFERENCE, REFERENCE)
    name = LABELS.get(b['method'], b['method'])
    lines = [
        '',
        f'Does any method beat {ref} by ≥ {a["margin"]:g} mAP@[.5:.95] with its interval above '
        f'zero? **{a["answer"]}** (best of {a["k"]} compared: {name}, '
        f'{b["mean"]:+.4f} [{b["lo"]:+.4f}, {b["hi"]:+.4f}] over {b["n"]} seeds; '
        f'Bonferroni-adjusted for picking the best of {a["k"]}: '
        f'[{b["adj_lo"]:+.4f}, {b["adj_hi"]:+.4f}]).',
    ]
    same = [r for r in versus_reference(summary, p, e, 'mAP_40') if r['method'] == b['method']]
    if same:  # the same method's mAP@0.4 difference, beside the deciding metric
        r = same[0]
        lines[-1] += (
            f' Its mAP@0.4 difference: {r["mean"]:+.4f} [{r["lo"]:+.4f}, {r["hi"]:+.4f}] '
            f'(adjusted [{r["adj_lo"]:+.4f}, {r["adj_hi"]:+.4f}]).'
        )
    if a['plain_yes'] and a['answer'] == 'no':
        lines[-1] += ' Without the adjustment the answer would be yes.'
    return lines


def _seeds(n: int | None) -> str:
    return '> 10,000' if n is None else str(n)


def _sweep_cell(cell: dict) -> str:
    text = f'{cell["mean"]:.4f}'
    d = cell.get('diff')
    if d is None:
        return text
    if not math.isnan(d['lo']):
        return text + f' ({d["mean"]:+.4f} [{d["lo"]:+.4f}, {d["hi"]:+.4f}])'
    if 'boot_se' in d:
        return text + f' ({d["mean"]:+.4f} ± {d["boot_se"]:.4f} test-set SE)'
    return text + f' ({d["mean"]:+.4f})'


def _sweep_markdown(sweep: Sequence[dict]) -> list[str]:
    lines: list[str] = []
    for e in sorted({r['epochs'] for r in sweep}):
        rows = [r for r in sweep if r['epochs'] == e]
        ps = sorted(rows[0]['cells'])
        lines += [
            f'## Proficiency sweep, {e} epochs',
            '',
            'Each cell: the mean over the seeds listed (the same seeds at every p, so the '
            'columns differ only in p) and, in brackets, the paired difference to NA with '
            'its 95 % t-interval; with one seed, the bootstrap SE of that difference over '
            'the test images (test-set noise only, not training noise).',
            '',
        ]
        for m, title in zip(METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            lines += [
                f'{title}:',
                '',
                '| method | seeds | ' + ' | '.join(f'p = {p:g}' for p in ps) + ' |',
                '|---|---|' + '---|' * len(ps),
            ]
            for r in rows:
                seeds = ','.join(str(s) for s in r['seeds'])
                cells = ' | '.join(_sweep_cell(r['cells'][p][m]) for p in ps)
                lines.append(f'| {LABELS.get(r["method"], r["method"])} | {seeds} | {cells} |')
            lines.append('')
    return lines


def _interval(diff: dict) -> tuple[float, float]:
    """A difference's t-interval, else mean +- 1.96 bootstrap SE (nan without either)."""
    if not math.isnan(diff['lo']):
        return diff['lo'], diff['hi']
    half = 1.96 * diff.get('boot_se', math.nan)
    return diff['mean'] - half, diff['mean'] + half


def _save(fig: Any, title: str, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)
    return path


def plots(summary: dict, out: str) -> list[str]:
    """Per (p, epochs) the methods' means, intervals and seeds; per epochs the sweep.

    Returns:
        list[str]: the PNG files written under ``out``.
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = summary['rows']
    written = []
    for p, e in sorted({(r['proficiency'], r['epochs']) for r in rows}):
        grp = [r for r in rows if (r['proficiency'], r['epochs']) == (p, e)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(grp) + 1.8))
        for ax, m, title in zip(axes, METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            for i, r in enumerate(grp):
                ent = r[m]
                ax.scatter(ent['values'], [i] * len(ent['values']), s=12, color='0.6', zorder=2)
                if not math.isnan(ent['lo']):
                    ax.errorbar(
                        ent['mean'],
                        i,
                        xerr=[[ent['mean'] - ent['lo']], [ent['hi'] - ent['mean']]],
                        fmt='o',
                        color='C0',
                        capsize=3,
                        zorder=3,
                    )
                else:
                    ax.plot(ent['mean'], i, 'o', color='C0', zorder=3)
            ax.set_yticks(range(len(grp)))
            ax.invert_yaxis()  # the table's order, top to bottom
            ax.set_yticklabels([LABELS.get(r['method'], r['method']) for r in grp])
            ax.set_title(f'{title} (mean, 95 % CI, seeds)')
            ax.grid(axis='x', alpha=0.3)
        title = f'MED-MNIST cpu preset, p = {p:g}, {e} epochs'
        written.append(_save(fig, title, osp.join(out, f'methods_p{p:g}_e{e}.png')))
    for p, e in sorted({(c['proficiency'], c['epochs']) for c in summary.get('curves', [])}):
        curves = [c for c in summary['curves'] if (c['proficiency'], c['epochs']) == (p, e)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, m, title in zip(axes, METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            for j, c in enumerate(curves):
                ep = [pt['epoch'] for pt in c['points']]
                mean, lo, hi = ([pt[m][k] for pt in c['points']] for k in ('mean', 'min', 'max'))
                label = LABELS.get(c['method'], c['method'])
                ax.plot(ep, mean, 'o-', color=f'C{j}', label=label)
                ax.fill_between(ep, lo, hi, color=f'C{j}', alpha=0.15)
            ax.set_xlabel('epoch')
            ax.set_title(f'{title} on the validation set (mean, seed range)')
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        title = f'Validation curves, p = {p:g}, {e} epochs'
        written.append(_save(fig, title, osp.join(out, f'curves_p{p:g}_e{e}.png')))
    for e in sorted({r['epochs'] for r in summary.get('sweep', [])}):
        sweep = [r for r in summary['sweep'] if r['epochs'] == e]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        for col, m, title in zip(range(2), METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            for j, r in enumerate(sweep):
                ps = sorted(r['cells'])
                label = LABELS.get(r['method'], r['method'])
                means = [r['cells'][p][m]['mean'] for p in ps]
                axes[0, col].plot(ps, means, 'o-', label=label, color=f'C{j}')
                diffs = [r['cells'][p][m].get('diff') for p in ps]
                if diffs[0] is None:
                    continue
                y = np.array([d['mean'] for d in diffs])
                lo = np.array([_interval(d)[0] for d in diffs])
                hi = np.array([_interval(d)[1] for d in diffs])
                x = np.array(ps) + 0.006 * (j - len(sweep) / 2)  # dodge the error bars
                axes[1, col].errorbar(
                    x, y, yerr=[y - lo, hi - y], fmt='o-', capsize=3, color=f'C{j}', label=label
                )
            axes[0, col].set_title(f'{title}, mean over seeds {sweep[0]["seeds"]}')
            axes[1, col].axhline(0.0, color='0.3', lw=0.8)
            axes[1, col].set_title(f'{title}: difference to NA (95 % interval)')
            axes[1, col].set_xlabel('rater proficiency p')
            for ax in axes[:, col]:
                ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        title = f'MED-MNIST cpu preset, proficiency sweep, {e} epochs'
        written.append(_save(fig, title, osp.join(out, f'sweep_e{e}.png')))
    return written
