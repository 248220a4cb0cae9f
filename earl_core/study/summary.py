"""The statistics of a paired-seed study: means, t-intervals, paired differences, power.

One *result* is a dict with ``method``, ``seed``, ``proficiency``, ``epochs`` and
``metrics`` (the unprefixed scalars of
:class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric`; :data:`METRICS` are
summarised), optionally ``bootstrap`` (the test-set bootstrap of
:func:`earl_mmdet.evaluation.predictions.bootstrap_scores`) and ``val_curve``
(:func:`val_curve_from_log`). :func:`summarize` gives the mean and 95 % t-interval per
method and the paired (same seed) differences to the baseline, of :data:`EXTRA_PAIRS` and
to :data:`REFERENCE`, with the proficiency sweep and the validation curves;
:func:`power_rows`, :func:`versus_reference` and :func:`answer` read the summary. The
report (:mod:`earl_core.study.report`) presents it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from earl_core.study.methods import EXTRA_PAIRS, LABELS, METRICS, REFERENCE, method_order

__all__ = [
    'MARGIN',
    'TARGET_HALF_WIDTH',
    'answer',
    'curve_table',
    'paired_diff',
    'power_rows',
    'sd_upper_bound',
    'seeds_for_half_width',
    'summarize',
    'sweep_table',
    't_interval',
    'val_curve_from_log',
    'verdict',
    'versus_reference',
]


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
        dict | None: ``answer``: 'yes' (the best mean is at least ``margin`` and its
        adjusted interval is above zero), 'no' (every method's adjusted upper bound is below
        ``margin``: none can be ``margin`` better) or 'not shown' (the data cannot decide);
        ``best`` (its :func:`versus_reference` row),
        ``k`` (methods compared), ``plain_yes`` (the answer without the adjustment); None
        when no method has two paired seeds with the reference.
    """
    rows = versus_reference(summary, proficiency, epochs)
    if not rows:
        return None
    best = rows[0]
    big = best['mean'] >= margin
    if big and best['adj_lo'] > 0:
        verdict = 'yes'
    elif all(r['adj_hi'] < margin for r in rows):
        verdict = 'no'
    else:
        verdict = 'not shown'
    return dict(
        answer=verdict,
        plain_yes=big and best['lo'] > 0,
        best=best,
        k=len(rows),
        margin=margin,
    )
