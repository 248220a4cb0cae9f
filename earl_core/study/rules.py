"""The v3 study's rules applied to its runs (docs/study_v3_design.md, sections 1, 2 and 4).

:mod:`.sequential` states the rules as functions and measures them by simulation; this
module applies the same functions to the committed runs (the ``results.json`` files of
``tools/benchmark_medmnist.py``), so that every v3 decision and answer rebuilds from the
committed files: :func:`lever_decision` (section 1: the averaging, the test-set size, the
epochs) and :func:`answer_questions` (section 2's questions (a), (b), (c) at whatever stage
the runs have reached, what must run next, and section 4's mechanism rule).

A run is a dict with ``method``, ``seed`` (the replicate k) and ``metrics`` (``mAP``,
``mAP_40``); the lever check also reads ``train_s``, ``test_s``, ``ema`` and ``val_curve``.
Methods are paired by replicate: a comparison uses only the replicates both methods have,
and a look at ``n`` replicates uses replicates 0 .. n - 1 only (the first n of the
design), whatever else exists. The decisions use mAP@[.5:.95] (:data:`DECIDES`); every
number is also given for mAP@0.4, which decides nothing. numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .sequential import (
    Design,
    _stage1,
    holm_reject,
    look_decision,
    moments,
    paired_sd,
    seed_sd,
    superiority_outcome,
    upper_bound,
    versus_n,
)

# _stage1 and superiority_outcome are the simulation's own rules: what is applied here is
# what docs/study_v3_design.md section 3 simulated.
from .summary import t_interval

#: The metrics reported, the deciding one first.
METRICS = ('mAP', 'mAP_40')
DECIDES = 'mAP'
#: Question (a): does any challenger beat WBF + EARL? (K = 9 with the two Bayesian methods,
#: note of 2026-12-07 in docs/study_v3_design.md, section 6.)
REFERENCE_A = 'wbf-earl'
CHALLENGERS_A = (
    'na', 'wbf', 'mv', 'em-earl', 'presence-em-earl', 'wbf-soft', 'wbf-ignore', 'bayes-soft',
    'bayes-loop-soft',
)  # fmt: skip
#: Question (c): does any agreement-aware method beat NA?
REFERENCE_C = 'na'
CHALLENGERS_C = ('wbf-earl', *CHALLENGERS_A[1:])
#: Question (b): this method against this reference, on each preset.
VERSUS = ('wbf-earl', 'na')
#: Section 4: the four new ablations (each compared with WBF + EARL, Holm over the four),
#: their replicates, and the supporting comparisons (plain 95 % intervals).
ABLATIONS = ('wbf-earl-wsum', 'wbf-earl-obj', 'wbf-earl-na-like', 'presence-em')
MECHANISM_N = 10
SUPPORTING = (
    ('wbf', 'wbf-earl'), ('wbf-ignore', 'wbf-earl'), ('mv', 'wbf'), ('wbf', 'na'),
    ('na', 'wbf-earl-na-like'), ('presence-em', 'presence-em-earl'), ('presence-em', 'wbf'),
)  # fmt: skip
#: Section 1: replicates of the lever check, the curve's epochs and its rise threshold.
LEVER_REPLICATES = 5
LEVER_EPOCHS = (20, 24)
LEVER_RISE = 0.01
#: Replicate k is trained and tested on data seed base + k: the lever check, the study.
LEVER_DATA_SEED = 2000
STUDY_DATA_SEED = 1000
#: The design's constants (``sequential.Design()``).
DESIGN = Design()

Scores = dict[str, dict[int, dict[str, float]]]  # method -> replicate -> metric -> value


def runs_of(results: Mapping | Sequence[Mapping]) -> list[Mapping]:
    """The runs of a ``results.json`` dict (its ``runs``), or ``results`` if it is a list."""
    if isinstance(results, Mapping):
        if 'runs' not in results:
            raise ValueError(f'not a results.json of the study tool: keys {sorted(results)}')
        return list(results['runs'])
    return list(results)


def scores_of(results: Mapping | Sequence[Mapping]) -> Scores:
    """``{method: {replicate: {metric: value}}}`` of :data:`METRICS`.

    Raises:
        ValueError: two runs of one method and replicate (two settings in one file).
    """
    out: Scores = {}
    for r in runs_of(results):
        seeds = out.setdefault(r['method'], {})
        if r['seed'] in seeds:
            raise ValueError(f'two runs of {r["method"]!r} replicate {r["seed"]}')
        seeds[int(r['seed'])] = {m: float(r['metrics'][m]) for m in METRICS}
    return out


def data_seed_notes(results: Mapping | Sequence[Mapping], base: int, what: str) -> list[str]:
    """A note when runs record a data seed other than ``base`` + replicate (runs of another
    study, such as the pilot, would otherwise be answered as this one's)."""
    odd = sorted(
        {(r['method'], r['seed'], r['data_seed']) for r in runs_of(results)
         if 'data_seed' in r and r['data_seed'] != base + r['seed']}
    )  # fmt: skip
    if not odd:
        return []
    shown = ', '.join(f'{m} replicate {s}: {d}' for m, s, d in odd[:3])
    return [f'{what}: {len(odd)} run(s) not on data seed {base} + replicate ({shown})']


def count(scores: Scores, method: str, reference: str, n: int) -> int:
    """Replicates among 0 .. n - 1 that both methods have."""
    a, b = scores.get(method, {}), scores.get(reference, {})
    return sum(1 for s in range(n) if s in a and s in b)


def compare(
    scores: Scores,
    method: str,
    reference: str,
    n: int | None = None,
    level: float = 0.95,
    upper: float = 0.9,
) -> dict:
    """Paired differences ``method - reference`` on the replicates both have (those below
    ``n`` if given): per metric the mean, SD, two-sided ``level`` t-interval (lo, hi) and
    one-sided ``upper`` t upper bound (ub); None for a metric with fewer than 2 pairs.

    Examples:
        >>> s = {'a': {0: {'mAP': 0.5, 'mAP_40': 0.7}, 1: {'mAP': 0.6, 'mAP_40': 0.7}},
        ...      'b': {0: {'mAP': 0.4, 'mAP_40': 0.7}, 1: {'mAP': 0.4, 'mAP_40': 0.7}}}
        >>> c = compare(s, 'a', 'b')
        >>> c['n'], round(c['mAP']['mean'], 4), round(c['mAP']['sd'], 4)
        (2, 0.15, 0.0707)
    """
    a, b = scores.get(method, {}), scores.get(reference, {})
    seeds = sorted(s for s in set(a) & set(b) if n is None or s < n)
    out: dict = dict(method=method, reference=reference, seeds=seeds, n=len(seeds))
    for metric in METRICS:
        if len(seeds) < 2:
            out[metric] = None
            continue
        d = np.array([[a[s][metric] - b[s][metric] for s in seeds]])
        mean, sd = (float(x[0]) for x in moments(d, len(seeds)))
        half = float(upper_bound(0.0, sd, len(seeds), 1 - (1 - level) / 2))
        ub = float(upper_bound(mean, sd, len(seeds), upper))
        out[metric] = dict(mean=mean, sd=sd, lo=mean - half, hi=mean + half, ub=ub)
    return out


# ----------------------------------------------------------------------------- section 1


def _rise(runs: Sequence[Mapping], method: str) -> dict | None:
    """Mean validation curve's rise of ``method`` between the epochs of :data:`LEVER_EPOCHS`
    (the last two validated epochs where the schedule differs)."""
    curves = [
        {p['epoch']: p for p in r.get('val_curve') or []} for r in runs if r['method'] == method
    ]
    if not curves:
        return None
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if len(common) < 2:
        return None
    e0, e1 = LEVER_EPOCHS
    stated = e0 in common and common[-1] == e1
    if not stated:
        e0, e1 = common[-2], common[-1]
    out: dict = dict(epochs=[e0, e1], stated=stated, seeds=len(curves))
    for metric in METRICS:
        out[metric] = float(np.mean([c[e1][metric] for c in curves])) - float(
            np.mean([c[e0][metric] for c in curves])
        )
    return out


def _diff_se(results: Mapping | Sequence[Mapping], metric: str) -> float | None:
    """Bootstrap SE of the paired difference WBF + EARL - NA on replicate 0's test set: the
    run's own ``bootstrap`` or the summary row's ``<metric>_bootstrap``."""
    for r in runs_of(results):
        if r['method'] == VERSUS[0] and r['seed'] == 0 and 'bootstrap' in r:
            return float(r['bootstrap'][metric]['diff_se'])
    if isinstance(results, Mapping):
        for row in results.get('summary', {}).get('rows', []):
            if row['method'] == VERSUS[0] and 'diff_se' in row.get(f'{metric}_bootstrap', {}):
                return float(row[f'{metric}_bootstrap']['diff_se'])
    return None


def lever_mode(results: Mapping | Sequence[Mapping], mode: str) -> dict:
    """One averaging mode of the lever check: replicates, seed SDs of WBF + EARL, of NA and
    of their paired difference, mean cost per run, the bootstrap SE of the difference and
    each method's curve rise, per metric.

    Raises:
        ValueError: a run averaged otherwise than ``mode`` (``ema.mode``), or too few runs.
    """
    every = runs_of(results)
    other = sorted({r['ema']['mode'] for r in every if 'ema' in r} - {mode})
    if other:
        raise ValueError(f'--ema {mode}: runs averaged with {other} among them')
    runs = [r for r in every if r['seed'] < LEVER_REPLICATES]  # the check's replicates
    method, reference = VERSUS
    pairs = compare(scores_of(runs), method, reference)
    out: dict = dict(mode=mode, replicates=pairs['n'], seeds=pairs['seeds'], sd={}, diff_se={})
    out['notes'] = data_seed_notes(runs, LEVER_DATA_SEED, f'--ema {mode}')
    if len(runs) < len(every):
        out['notes'].append(
            f'--ema {mode}: {len(every) - len(runs)} run(s) of replicates >= '
            f'{LEVER_REPLICATES} left out (the rules are stated on replicates '
            f'0-{LEVER_REPLICATES - 1})'
        )
    for metric in METRICS:
        out['sd'].setdefault(method, {})[metric] = seed_sd(runs, method, metric)[0]
        out['sd'].setdefault(reference, {})[metric] = seed_sd(runs, reference, metric)[0]
        out['sd'].setdefault('difference', {})[metric] = paired_sd(runs, method, reference, metric)[
            0
        ]
        out['diff_se'][metric] = _diff_se(results, metric)
    out['cost'] = {k: float(np.mean([r[k] for r in runs])) for k in ('train_s', 'test_s')}
    out['rise'] = {m: _rise(runs, m) for m in VERSUS}
    return out


def lever_decision(
    config_runs: Mapping | Sequence[Mapping], swa_runs: Mapping | Sequence[Mapping]
) -> dict:
    """Section 1's three rules on the lever check (``--ema config`` and ``--ema swa``).

    1. ``ema``: 'swa' unless 'config' has the smaller SD of the paired difference *and*
       the smaller seed SD of WBF + EARL.
    2. ``num_test``: 3000 if the bootstrap SE of the paired difference (replicate 0, the
       chosen mode) exceeds half the replicate SD of that difference, else 1000 (None
       without a bootstrap).
    3. ``epochs``: 30 if either method's mean curve (chosen mode) rises by more than
       :data:`LEVER_RISE` between the epochs of :data:`LEVER_EPOCHS`, else 24.

    Returns:
        dict: ``modes`` (:func:`lever_mode` of each), ``ema``, ``num_test``, ``epochs``,
        ``rules`` (one line of reasons each, mAP@0.4 beside), ``complete`` (each mode has
        :data:`LEVER_REPLICATES` replicates; the rules are stated on that many) and
        ``notes``.
    """
    modes = {'config': lever_mode(config_runs, 'config'), 'swa': lever_mode(swa_runs, 'swa')}
    c, s = modes['config'], modes['swa']
    d, m = DECIDES, VERSUS[0]
    config_wins = (
        c['sd']['difference'][d] < s['sd']['difference'][d] and c['sd'][m][d] < s['sd'][m][d]
    )
    ema = 'config' if config_wins else 'swa'
    pick = modes[ema]

    def both(x: Mapping) -> str:
        return f'{x["mAP"]:.4f} (mAP@0.4 {x["mAP_40"]:.4f})'

    rules = [
        f'--ema {ema}: SD of WBF + EARL − NA, config {both(c["sd"]["difference"])} vs swa '
        f'{both(s["sd"]["difference"])}; seed SD of WBF + EARL, config {both(c["sd"][m])} vs '
        f'swa {both(s["sd"][m])}; config is chosen only when both of its mAP SDs are smaller'
    ]
    se, sd = pick['diff_se'][d], pick['sd']['difference'][d]
    if se is None:
        num_test = None
        rules.append(f'test set: undecided, no bootstrap in the --ema {ema} runs')
    else:
        num_test = 3000 if se > sd / 2 else 1000
        rules.append(
            f'test set {num_test} images: bootstrap SE of the difference (replicate 0) '
            f'{both(pick["diff_se"])} against half the replicate SD '
            f'{sd / 2:.4f} (mAP@0.4 {pick["sd"]["difference"]["mAP_40"] / 2:.4f})'
        )
    rises = {k: v for k, v in pick['rise'].items() if v is not None}
    notes = []
    if len(rises) < len(VERSUS):
        epochs = None
        rules.append(f'epochs: undecided, a method without a validation curve in --ema {ema}')
    else:
        epochs = 30 if any(v[d] > LEVER_RISE for v in rises.values()) else 24
        rules.append(
            f'{epochs} epochs: mean curve rise '
            + ', '.join(
                f'{k} {v[d]:+.4f} (mAP@0.4 {v["mAP_40"]:+.4f}) from epoch {v["epochs"][0]} to '
                f'{v["epochs"][1]}'
                for k, v in rises.items()
            )
            + f'; 30 epochs if either exceeds +{LEVER_RISE}'
            + (' (then a dated note in the design before stage 1)' if epochs == 30 else '')
        )
        if not all(v['stated'] for v in rises.values()):
            notes.append(
                f'the validated epochs differ from the design ({LEVER_EPOCHS[0]} and '
                f'{LEVER_EPOCHS[1]} of 24): the last two validated epochs are used'
            )
    notes += [note for x in modes.values() for note in x['notes']]
    complete = all(x['replicates'] >= LEVER_REPLICATES for x in modes.values())
    if not complete:
        notes.append(
            'provisional: '
            + ', '.join(f'{k} has {x["replicates"]}' for k, x in modes.items())
            + f' of the {LEVER_REPLICATES} replicates the rules are stated on'
        )
    return dict(
        modes=modes, ema=ema, num_test=num_test, epochs=epochs, rules=rules,
        complete=complete, notes=notes,
    )  # fmt: skip


# ----------------------------------------------------------------------------- section 2


def _p_greater(row: Mapping) -> float:
    """One-sided paired t-test of "difference <= 0": the p-value."""
    from scipy.stats import t

    x, n = row[DECIDES], row['n']
    if x['sd'] == 0:
        return 0.0 if x['mean'] > 0 else 1.0
    return float(t.sf(x['mean'] / (x['sd'] / math.sqrt(n)), n - 1))


def superiority_stage1(
    scores: Scores, reference: str, challengers: Sequence[str], design: Design
) -> dict:
    """Stage 1 of question (a) or (c): provisional intervals while replicates 0 .. n1 - 1
    are incomplete; then the drop decisions and the ``n`` the survivors demand
    (:func:`.sequential._stage1`: the largest stage-1 SD among them, level alpha / K)."""
    k = len(challengers)
    missing = [c for c in (reference, *challengers) if c not in scores]
    done = min(count(scores, c, reference, design.n1) for c in challengers)
    out: dict = dict(reference=reference, challengers=list(challengers), K=k, missing=missing)
    out['replicates'] = done
    if done < design.n1:
        out['stage'] = f'stage 1 incomplete ({done} of {design.n1} replicates)'
        out['provisional'] = [
            compare(scores, c, reference, upper=design.drop_level or design.no_level)
            for c in challengers
            if c in scores and reference in scores
        ]
        return out
    rows = [compare(scores, c, reference, design.n1, upper=design.no_level) for c in challengers]
    d1 = np.array([[[scores[c][s][DECIDES] - scores[reference][s][DECIDES]
                     for s in range(design.n1)] for c in challengers]])  # fmt: skip
    survive, n = _stage1(d1, design)
    for row, alive in zip(rows, survive[0]):
        row['dropped'] = not bool(alive)
    out.update(
        stage1=rows,
        survivors=[c for c, alive in zip(challengers, survive[0]) if alive],
        n=int(n[0]),
        stage=f'stage 1 complete ({design.n1} replicates)',
    )
    return out


def superiority_final(q: dict, scores: Scores, n: int, design: Design) -> dict:
    """Question (a) or (c) after stage 1 (``q`` from :func:`superiority_stage1`, updated):
    the survivors at ``n`` (the stage-2 n of the preset), one-sided paired t-tests, Holm
    over all K (dropped ones not rejected) and the answer
    (:func:`.sequential.superiority_outcome`); "stage 2" while replicates are missing."""
    ref, challengers, survivors = q['reference'], q['challengers'], q['survivors']
    n = n if survivors else design.n1  # nothing to run: answered at stage 1
    q['n_final'] = n
    have = min((count(scores, c, ref, n) for c in survivors), default=n)
    if have < n:
        q['stage'] = f'stage 2 ({have} of {n} replicates of the survivors)'
        return q
    k = len(challengers)
    d = np.full((1, k, n), np.nan)
    for j, c in enumerate(challengers):
        for s in range(n):
            if s in scores[c] and s in scores[ref]:
                d[0, j, s] = scores[c][s][DECIDES] - scores[ref][s][DECIDES]
    survive = np.array([[c in survivors for c in challengers]])
    outcome, rejected = superiority_outcome(d, survive, np.array([n]), design)
    level = 1 - 2 * design.alpha / k  # two-sided, its lower end the one-sided alpha / K test
    final = []
    for j, c in enumerate(challengers):
        if c not in survivors:
            continue
        row = compare(scores, c, ref, n, upper=design.no_level)
        bonf = compare(scores, c, ref, n, level=level)
        row['bonferroni'] = {m: [bonf[m]['lo'], bonf[m]['hi']] for m in METRICS}
        row['p'] = _p_greater(row)
        row['rejected'] = bool(rejected[0, j])
        final.append(row)
    q.update(final=final, answer=str(outcome[0]), stage=f'answered at n = {n}')
    q['yes'] = [c for j, c in enumerate(challengers) if rejected[0, j]]
    ubs = {r['method']: r[DECIDES]['ub'] for r in q['stage1'] if r['dropped']}
    ubs.update({r['method']: r[DECIDES]['ub'] for r in final})
    q['open'] = [c for c, ub in ubs.items() if not ub < design.margin]
    return q


def versus_question(scores: Scores, design: Design) -> dict:
    """Question (b) on one preset: the stage-1 SD gives the final ``n``
    (:func:`.sequential.versus_n`), the interim look is at ``max(n1, ceil(n / 2))``; at each
    look :func:`.sequential.look_decision`; a decision at the interim stands; undecided at
    the final look: 'not shown'. The looks use (b)'s own n, as section 2 (b) states
    (``sequential.simulate`` looks at the preset's largest n)."""
    method, ref = VERSUS
    out: dict = dict(method=method, reference=ref, looks=[], answer=None, next_n=None)
    s1 = compare(scores, method, ref, design.n1)
    out['replicates'] = s1['n']
    if s1['n'] < design.n1:
        out['next_n'] = design.n1
        out['stage'] = f'stage 1 incomplete ({s1["n"]} of {design.n1} replicates)'
        out['provisional'] = compare(scores, method, ref)
        return out
    out['stage1'] = s1
    n = int(versus_n(np.array([s1[DECIDES]['sd']]), design)[0])
    n_interim = max(design.n1, math.ceil(n / 2))
    out.update(n=n, n_interim=n_interim)
    plan = [('interim', n_interim, design.alpha_interim)] if n_interim < n else []
    for name, size, alpha in [*plan, ('final', n, design.alpha_final)]:
        have = count(scores, method, ref, size)
        if have < size:
            out['stage'] = f'{name} look at {size} pending ({have} of {size} replicates)'
            out['next_n'] = size
            return out
        row = compare(scores, method, ref, size, level=1 - alpha)
        decision = {
            m: str(look_decision(row[m]['mean'], row[m]['sd'], size, alpha, design.margin))
            for m in METRICS
        }
        out['looks'].append(dict(look=name, n=size, level=1 - alpha, row=row, decision=decision))
        if decision[DECIDES] or name == 'final':
            out['answer'] = decision[DECIDES] or 'not shown'
            out['stage'] = f'answered at the {name} look ({size} replicates)'
            return out
    raise AssertionError('unreachable: the final look always answers')


def mechanism(scores: Scores, design: Design) -> dict:
    """Section 4: each new ablation against WBF + EARL and NA on replicates 0 .. 9.

    ``accounts`` for the gap (NA - WBF + EARL): Holm over the four ablations (one-sided,
    family ``design.alpha``) rejects "ablation - WBF + EARL <= 0" and the 95 % interval of
    its difference to NA lies inside +-margin; ``partly``: only the first; ``not``: the
    one-sided ``no_level`` upper bound of its difference to WBF + EARL lies below half
    the gap; otherwise ``not shown``. The supporting comparisons use every replicate both
    methods have, with plain 95 % intervals."""
    n, ref = MECHANISM_N, REFERENCE_A
    have = min(
        min(count(scores, a, ref, n), count(scores, a, 'na', n), count(scores, 'na', ref, n))
        for a in ABLATIONS
    )
    out: dict = dict(n=n, replicates=have)
    out['supporting'] = [compare(scores, a, b) for a, b in SUPPORTING]
    out['gap'] = compare(scores, 'na', ref, n if have >= n else None)
    rows = []
    for a in ABLATIONS:
        cut = n if have >= n else None
        rows.append(
            dict(
                method=a,
                vs_reference=compare(scores, a, ref, cut, upper=design.no_level),
                vs_na=compare(scores, a, 'na', cut),
            )
        )
    out['rows'] = rows
    if have < n:
        out['stage'] = f'incomplete ({have} of {n} replicates): provisional intervals only'
        return out
    p = np.array([_p_greater(r['vs_reference']) for r in rows])
    rejected = holm_reject(p, design.alpha)
    half_gap = out['gap'][DECIDES]['mean'] / 2
    for r, pr, rej in zip(rows, p, rejected):
        vs_na = r['vs_na'][DECIDES]
        inside = -design.margin < vs_na['lo'] and vs_na['hi'] < design.margin
        if rej:
            verdict = 'accounts' if inside else 'partly'
        elif r['vs_reference'][DECIDES]['ub'] < half_gap:
            verdict = 'not'
        else:
            verdict = 'not shown'
        r.update(p=float(pr), rejected=bool(rej), na_inside=inside, verdict=verdict)
    out['stage'] = f'answered at n = {n}'
    return out


def method_summary(
    scores: Scores, n: int | None = None, references: Sequence[str] = (REFERENCE_C, REFERENCE_A)
) -> list[dict]:
    """Every method on its replicates below ``n`` (all if None), best mean mAP@[.5:.95] first:
    per metric the mean, SD and two-sided 95 % t-interval (lo, hi; SD and interval None with
    one replicate), and ``versus``: :func:`compare` with each of ``references`` it is not.

    Examples:
        >>> s = {'a': {0: {'mAP': 0.5, 'mAP_40': 0.7}, 1: {'mAP': 0.7, 'mAP_40': 0.7}},
        ...      'na': {0: {'mAP': 0.4, 'mAP_40': 0.7}, 1: {'mAP': 0.4, 'mAP_40': 0.7}}}
        >>> rows = method_summary(s)
        >>> [(r['method'], round(r['mAP']['mean'], 2), list(r['versus'])) for r in rows]
        [('a', 0.6, ['na']), ('na', 0.4, [])]
    """
    rows = []
    for method, reps in scores.items():
        seeds = sorted(s for s in reps if n is None or s < n)
        if not seeds:
            continue
        row: dict = dict(method=method, n=len(seeds), seeds=seeds)
        for metric in METRICS:
            x = [reps[s][metric] for s in seeds]
            mean, lo, hi = t_interval(x)
            one = len(x) < 2  # t_interval's nan bounds are None here, as in compare
            row[metric] = dict(mean=mean, sd=None if one else float(np.std(x, ddof=1)),
                               lo=None if one else lo, hi=None if one else hi)  # fmt: skip
        row['versus'] = {r: compare(scores, method, r, n) for r in references if r in scores}
        row['versus'].pop(method, None)
        rows.append(row)
    return sorted(rows, key=lambda r: (-r[DECIDES]['mean'], r['method']))


def run_hours(results: Mapping | Sequence[Mapping]) -> dict:
    """``runs``, ``hours`` (their recorded training + test seconds) and ``untimed``."""
    runs = runs_of(results)
    timed = [r for r in runs if 'train_s' in r]
    seconds = sum(float(r['train_s']) + float(r.get('test_s', 0.0)) for r in timed)
    return dict(runs=len(runs), hours=seconds / 3600, untimed=len(runs) - len(timed))


def _next(scores: Scores, targets: Mapping[str, int], preset: str) -> list[dict]:
    """The runs still missing for ``targets`` (method -> replicates), one step per n."""
    steps: dict[int, list[str]] = {}
    for m, n in targets.items():
        if sum(1 for s in range(n) if s in scores.get(m, {})) < n:
            steps.setdefault(n, []).append(m)
    return [dict(preset=preset, methods=ms, seeds=n) for n, ms in sorted(steps.items())]


def answer_questions(
    vindr_runs: Mapping | Sequence[Mapping],
    paper_runs: Mapping | Sequence[Mapping] | None = None,
    design: Design = DESIGN,
) -> dict:
    """Section 2's questions and section 4's rule on whatever replicates exist.

    Args:
        vindr_runs: the vindr-like preset's runs (questions (a), (b), (c), mechanism).
        paper_runs: the paper raters' runs (question (b)); None: (b) on vindr-like only.
        design (Design): the rules' constants. Defaults to ``Design()``.

    Returns:
        dict: ``a``, ``c`` (:func:`superiority_stage1` / :func:`superiority_final`),
        ``b`` (preset -> :func:`versus_question`), ``mechanism``, ``n_stage2`` (the
        vindr-like stage-2 n once stage 1 is complete: the largest (a), (b), (c) demand),
        ``next`` (methods and ``--seeds n`` still to run), ``methods`` (preset -> ``all``
        and, on vindr-like, ``stage1`` (replicates below ``design.n1``):
        :func:`method_summary`), ``cost`` (preset -> :func:`run_hours`) and ``notes``.
    """
    v = scores_of(vindr_runs)
    out: dict = dict(notes=data_seed_notes(vindr_runs, STUDY_DATA_SEED, 'vindr-like'), next=[])
    out['a'] = superiority_stage1(v, REFERENCE_A, CHALLENGERS_A, design)
    out['c'] = superiority_stage1(v, REFERENCE_C, CHALLENGERS_C, design)
    out['b'] = {'vindr-like': versus_question(v, design)}
    out['mechanism'] = mechanism(v, design)
    questions = (out['a'], out['c'])
    for name, q in zip('ac', questions):
        if q['missing']:
            out['notes'].append(
                f'({name}): no runs of {", ".join(q["missing"])}; K = {q["K"]} as designed'
            )
    targets: dict[str, int] = {}

    def need(methods: Sequence[str], n: int) -> None:
        for m in methods:
            targets[m] = max(targets.get(m, 0), n)

    b = out['b']['vindr-like']
    if all('n' in q for q in questions):
        n2 = out['n_stage2'] = max(out['a']['n'], out['c']['n'], b.get('n', 0))
        for q in questions:
            superiority_final(q, v, n2, design)
            if q['survivors']:
                need([*q['survivors'], q['reference']], n2)
        need([*ABLATIONS, *VERSUS], MECHANISM_N)
    else:
        need([REFERENCE_A, *CHALLENGERS_A, *ABLATIONS], design.n1)
    if b['next_n']:
        need(VERSUS, b['next_n'])
    out['next'] = _next(v, targets, 'vindr-like')
    out['methods'] = {
        'vindr-like': dict(stage1=method_summary(v, design.n1), all=method_summary(v))
    }
    out['cost'] = {'vindr-like': run_hours(vindr_runs)}
    if paper_runs is None:
        out['notes'].append('no paper-raters runs: question (b) on vindr-like raters only')
    else:
        p = scores_of(paper_runs)
        out['notes'] += data_seed_notes(paper_runs, STUDY_DATA_SEED, 'paper raters')
        b = out['b']['paper'] = versus_question(p, design)
        out['methods']['paper'] = dict(all=method_summary(p))
        out['cost']['paper'] = run_hours(paper_runs)
        if b['next_n']:
            out['next'] += _next(p, dict.fromkeys(VERSUS, b['next_n']), 'paper')
    return out
