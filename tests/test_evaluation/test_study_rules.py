"""The v3 study's rules applied to runs (earl_core.study.rules): every branch
of docs/study_v3_design.md sections 1, 2 and 4 on synthetic runs whose differences are
known, each expectation checked against an oracle written here with scipy (not with
earl_mmdet.evaluation.sequential), and the lever check on the committed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm, t

from earl_core.study import benchmark as study
from earl_core.study import rules as sr
from earl_mmdet.evaluation.sequential import Design

ROOT = Path(__file__).resolve().parents[2]
DESIGN = Design()
K = 9


def _z(n: int, seed: int) -> np.ndarray:
    """Fixed noise: mean 0 and SD 1 over the first 5 replicates and over all n."""
    z = np.random.default_rng(seed).standard_normal(n)
    for part in (slice(0, min(n, 5)), slice(5, n)):
        if z[part].size > 1:
            z[part] = (z[part] - z[part].mean()) / z[part].std(ddof=1)
    return z


def make_runs(offsets: dict, n: int, sd: dict | None = None, noise: dict | None = None) -> list:
    """Runs of each method on replicates 0 .. n - 1: score = 0.45 + a replicate effect shared
    by all methods + the method's offset + its own noise (``sd`` times fixed noise, SD
    0.002 unless given; or ``noise``, one value per replicate)."""
    shared = 0.03 * np.sin(np.arange(n) * 1.7)
    runs = []
    for j, (method, offset) in enumerate(offsets.items()):
        own = (noise or {}).get(method)
        own = (sd or {}).get(method, 0.002) * _z(n, j) if own is None else own
        for s in range(n):
            x = 0.45 + shared[s] + offset + own[s]
            runs.append(dict(method=method, seed=s, metrics=dict(mAP=x, mAP_40=x + 0.2)))
    return runs


def everything(offsets: dict | None = None) -> dict:
    """Every method of (a), (c) and section 4 at offset 0 unless given."""
    out = dict.fromkeys(('wbf-earl', *sr.CHALLENGERS_A, *sr.ABLATIONS), 0.0)
    return out | (offsets or {})


def diffs(runs: list, method: str, reference: str, n: int, metric: str = 'mAP') -> np.ndarray:
    by = {(r['method'], r['seed']): r['metrics'][metric] for r in runs}
    return np.array([by[method, s] - by[reference, s] for s in range(n)])


def ub(d: np.ndarray, level: float = 0.9) -> float:
    return d.mean() + t.ppf(level, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)


def p_greater(d: np.ndarray) -> float:
    return t.sf(d.mean() / (d.std(ddof=1) / math.sqrt(d.size)), d.size - 1)


def oracle_n(s: float, alpha: float, power: float) -> int:
    for n in range(10, 31):
        if norm.cdf(0.02 * math.sqrt(n) / s - t.ppf(1 - alpha, n - 1)) >= power:
            return n
    return 30


def interval(d: np.ndarray, alpha: float) -> tuple[float, float]:
    half = t.ppf(1 - alpha / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return d.mean() - half, d.mean() + half


def test_the_method_names_are_the_study_tools():
    for m in (*sr.CHALLENGERS_A, *sr.CHALLENGERS_C, *sr.ABLATIONS, *sr.VERSUS):
        assert m in study.METHODS
    assert sr.ABLATIONS == study.ABLATION_METHODS
    assert len(sr.CHALLENGERS_A) == len(sr.CHALLENGERS_C) == K  # the design's K after the note


# ----------------------------------------------------------------------------- section 1


def lever_runs(mode: str, sd: dict, rise: dict | None = None, n: int = 5, epochs=(20, 24)):
    """Lever-check runs: NA at 0.5, WBF + EARL at 0.49, each with its own seed noise; the
    validation curve (mAP) ends at the test score and is ``rise`` below it one validation
    earlier; its mAP@0.4 is flat."""
    runs = []
    for j, (method, level) in enumerate((('na', 0.5), ('wbf-earl', 0.49))):
        noise = sd[method] * _z(n, j)
        for s in range(n):
            x = level + noise[s]
            r = (rise or {}).get(method, 0.0)
            # the last epoch at x, the one before at x - r, earlier ones 0.05 lower each
            low = [x - r - 0.05 * (len(epochs) - 2 - k) for k in range(len(epochs) - 1)]
            curve = [dict(epoch=e, mAP=v, mAP_40=x) for e, v in zip(epochs, [*low, x])]
            runs.append(
                dict(
                    method=method, seed=s, metrics=dict(mAP=x, mAP_40=x + 0.2),
                    train_s=500.0 + s, test_s=10.0, ema=dict(mode=mode), val_curve=curve,
                )
            )  # fmt: skip
    return runs


def with_bootstrap(runs: list, diff_se: float) -> list:
    """A bootstrap on replicate 0 (what the rule reads) and a misleading one on replicate 1."""
    for r in runs:
        if r['method'] == 'wbf-earl' and r['seed'] in (0, 1):
            se = diff_se if r['seed'] == 0 else 10 * diff_se + 0.01
            r['bootstrap'] = {m: dict(se=0.01, num=100, diff_se=se) for m in sr.METRICS}
    return runs


@pytest.mark.parametrize(
    'config_sd, swa_sd, ema',
    [
        # config: smaller difference SD and smaller WBF + EARL SD -> config
        (dict(na=0.004, **{'wbf-earl': 0.002}), dict(na=0.02, **{'wbf-earl': 0.01}), 'config'),
        # config: smaller difference SD only (its WBF + EARL SD is larger) -> swa
        (dict(na=0.002, **{'wbf-earl': 0.006}), dict(na=0.03, **{'wbf-earl': 0.004}), 'swa'),
        # config: smaller WBF + EARL SD only -> swa
        (dict(na=0.03, **{'wbf-earl': 0.002}), dict(na=0.004, **{'wbf-earl': 0.003}), 'swa'),
        # both larger -> swa
        (dict(na=0.03, **{'wbf-earl': 0.02}), dict(na=0.004, **{'wbf-earl': 0.003}), 'swa'),
    ],
)
def test_rule_1_picks_config_only_when_both_sds_are_smaller(config_sd, swa_sd, ema):
    c, s = lever_runs('config', config_sd), lever_runs('swa', swa_sd)
    r = sr.lever_decision(with_bootstrap(c, 0.001), with_bootstrap(s, 0.001))
    sd_d = {k: diffs(x, 'wbf-earl', 'na', 5).std(ddof=1) for k, x in (('config', c), ('swa', s))}
    sd_e = {
        k: np.std([q['metrics']['mAP'] for q in x if q['method'] == 'wbf-earl'], ddof=1)
        for k, x in (('config', c), ('swa', s))
    }
    oracle = 'config' if sd_d['config'] < sd_d['swa'] and sd_e['config'] < sd_e['swa'] else 'swa'
    assert r['ema'] == oracle == ema
    assert r['complete'] and r['num_test'] == 1000 and r['epochs'] == 24


@pytest.mark.parametrize(
    'diff_se, num_test',
    [
        (0.004, 1000),  # 0.004 < half of the difference SD (about 0.0112 / 2)
        (0.007, 3000),  # above half of it
    ],
)
def test_rule_2_test_set_size(diff_se, num_test):
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    swa = with_bootstrap(lever_runs('swa', sd), diff_se)
    half = diffs(swa, 'wbf-earl', 'na', 5).std(ddof=1) / 2
    assert (diff_se > half) == (num_test == 3000)
    config = with_bootstrap(lever_runs('config', dict(na=0.02, **{'wbf-earl': 0.02})), 0.5)
    r = sr.lever_decision(config, swa)  # swa chosen; config's huge bootstrap SE is not read
    assert r['ema'] == 'swa' and r['num_test'] == num_test


def test_rule_2_reads_the_summary_row_of_a_results_file():
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    rows = [dict(method='wbf-earl', **{f'{m}_bootstrap': dict(diff_se=0.009) for m in sr.METRICS})]
    results = dict(meta={}, summary=dict(rows=rows), runs=lever_runs('swa', sd))
    r = sr.lever_decision(lever_runs('config', dict(na=0.03, **{'wbf-earl': 0.03})), results)
    assert r['modes']['swa']['diff_se']['mAP'] == 0.009 and r['num_test'] == 3000
    assert r['modes']['config']['diff_se']['mAP'] is None


@pytest.mark.parametrize(
    'swa_rise, config_rise, epochs',
    [
        ({'na': 0.015}, {}, 30),  # NA still rises under the chosen averaging
        ({'wbf-earl': 0.011}, {}, 30),  # WBF + EARL does
        ({'na': 0.009, 'wbf-earl': -0.02}, {}, 24),  # neither rises by more than 0.01
        ({}, {'na': 0.05}, 24),  # a rise under the averaging not chosen does not count
    ],
)
def test_rule_3_epochs_from_the_chosen_curves(swa_rise, config_rise, epochs):
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    swa = lever_runs('swa', sd, swa_rise)
    config = lever_runs('config', dict(na=0.03, **{'wbf-earl': 0.03}), config_rise)
    r = sr.lever_decision(config, swa)
    assert r['ema'] == 'swa' and r['epochs'] == epochs
    for method, rise in swa_rise.items():
        assert r['modes']['swa']['rise'][method]['mAP'] == pytest.approx(rise)
        assert r['modes']['swa']['rise'][method]['mAP_40'] == pytest.approx(0.0, abs=1e-12)


def test_rule_3_uses_the_last_two_epochs_of_another_schedule_and_says_so():
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    swa = lever_runs('swa', sd, {'na': 0.005}, epochs=(4, 8, 12, 16, 20, 24, 28))
    r = sr.lever_decision(lever_runs('config', dict(na=0.03, **{'wbf-earl': 0.03})), swa)
    rise = r['modes']['swa']['rise']
    assert rise['na']['epochs'] == [24, 28] and rise['na']['mAP'] == pytest.approx(0.005)
    assert r['epochs'] == 24  # from 20 to 24 it rose by 0.05, but 24 is not the end
    assert any('last two validated epochs' in note for note in r['notes'])


def test_fewer_than_five_replicates_are_provisional():
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    r = sr.lever_decision(lever_runs('config', sd, n=3), lever_runs('swa', sd, n=3))
    assert not r['complete'] and 'provisional' in r['notes'][-1]


def test_a_lever_file_of_the_other_averaging_is_refused():
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    with pytest.raises(ValueError, match=r"--ema config: runs averaged with \['swa'\]"):
        sr.lever_decision(lever_runs('swa', sd), lever_runs('swa', sd))


def test_the_committed_lever_check_sds_are_numpys():
    files = {
        m: json.loads((ROOT / f'docs/study_v3/lever_{m}.json').read_text())
        for m in ('config', 'swa')
    }
    r = sr.lever_decision(files['config'], files['swa'])
    for mode, data in files.items():
        runs = data['runs']
        got = r['modes'][mode]
        for metric in sr.METRICS:
            by = {(q['method'], q['seed']): q['metrics'][metric] for q in runs}
            seeds = sorted(s for m, s in by if m == 'na' and ('wbf-earl', s) in by)
            for method in ('na', 'wbf-earl'):
                x = [by[m, s] for m, s in by if m == method]
                assert got['sd'][method][metric] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
            d = [by['wbf-earl', s] - by['na', s] for s in seeds]
            assert got['sd']['difference'][metric] == pytest.approx(np.std(d, ddof=1), rel=1e-12)
            assert got['replicates'] == len(seeds)
        assert got['cost']['train_s'] == pytest.approx(np.mean([q['train_s'] for q in runs]))
    sd = {m: r['modes'][m]['sd'] for m in files}
    both = all(sd['config'][k]['mAP'] < sd['swa'][k]['mAP'] for k in ('difference', 'wbf-earl'))
    assert r['ema'] == ('config' if both else 'swa')


# ----------------------------------------------------------------------------- section 2


def test_stage_1_incomplete_gives_provisional_intervals_only():
    runs = make_runs(everything({'mv': 0.03}), 3)
    r = sr.answer_questions(runs)
    for q in (r['a'], r['c']):
        assert q['stage'] == 'stage 1 incomplete (3 of 5 replicates)'
        assert 'stage1' not in q and 'answer' not in q and 'survivors' not in q
    mv = next(x for x in r['a']['provisional'] if x['method'] == 'mv')
    d = diffs(runs, 'mv', 'wbf-earl', 3)
    assert mv['n'] == 3 and mv['mAP']['mean'] == pytest.approx(d.mean())
    assert (mv['mAP']['lo'], mv['mAP']['hi']) == pytest.approx(interval(d, 0.05))
    assert mv['mAP_40']['mean'] == pytest.approx(diffs(runs, 'mv', 'wbf-earl', 3, 'mAP_40').mean())
    assert r['b']['vindr-like']['stage'] == 'stage 1 incomplete (3 of 5 replicates)'
    assert r['b']['vindr-like']['answer'] is None
    assert len(r['next']) == 1 and r['next'][0]['seeds'] == 5
    assert sorted(r['next'][0]['methods']) == sorted(everything())
    assert 'no paper-raters runs' in r['notes'][-1]


def test_a_missing_challenger_keeps_stage_1_open_and_is_named():
    offsets = everything()
    del offsets['bayes-loop-soft']
    r = sr.answer_questions(make_runs(offsets, 5))
    assert r['a']['stage'] == 'stage 1 incomplete (0 of 5 replicates)'
    assert r['a']['K'] == K and r['a']['missing'] == ['bayes-loop-soft']
    assert any('bayes-loop-soft' in note and 'K = 9' in note for note in r['notes'])
    assert r['next'] == [dict(preset='vindr-like', methods=['bayes-loop-soft'], seeds=5)]


def stage1_case(n: int, mv: float = 0.03, mv_sd: float = 0.002, others: float = -0.01):
    """MV ahead of WBF + EARL by ``mv``; the other fusion methods ``others``; NA level."""
    offsets = everything(dict.fromkeys(sr.CHALLENGERS_A[1:], others) | {'mv': mv})
    return make_runs(offsets, n, sd={'mv': mv_sd})


def test_stage_1_drops_and_sizes_stage_2():
    runs = stage1_case(5, mv_sd=0.01)
    r = sr.answer_questions(runs)
    q = r['a']
    for row in q['stage1']:
        d = diffs(runs, row['method'], 'wbf-earl', 5)
        assert row['dropped'] == (ub(d) < 0.02), row['method']
        assert row['mAP']['ub'] == pytest.approx(ub(d))
    assert q['survivors'] == ['mv']  # +0.03: survives; NA at 0 and the others at -0.01 drop
    s = diffs(runs, 'mv', 'wbf-earl', 5).std(ddof=1)
    assert q['n'] == oracle_n(s, 0.025 / K, 0.8)
    assert q['stage'].startswith('stage 2 (5 of ') and 'answer' not in q
    n2 = r['n_stage2']
    assert n2 == max(q['n'], r['c']['n'], r['b']['vindr-like']['n'])
    step = next(x for x in r['next'] if x['seeds'] == n2)
    assert {'mv', 'wbf-earl'} <= set(step['methods'])


def test_holm_yes_names_the_better_method():
    runs = stage1_case(30)
    r = sr.answer_questions(runs)
    q = r['a']
    n = r['n_stage2']
    assert q['stage'] == f'answered at n = {n}' and q['answer'] == 'yes' and q['yes'] == ['mv']
    d = diffs(runs, 'mv', 'wbf-earl', n)
    row = q['final'][0]
    assert row['p'] == pytest.approx(p_greater(d)) and p_greater(d) <= 0.025 / K
    lo, hi = interval(d, 2 * 0.025 / K)
    assert row['bonferroni']['mAP'] == pytest.approx([lo, hi])
    assert row['bonferroni']['mAP_40'] == pytest.approx([lo, hi])  # mAP@0.4 = mAP + 0.2 here


def test_nothing_survives_no():
    runs = make_runs(everything(dict.fromkeys(sr.CHALLENGERS_A, -0.02)), 5)
    q = sr.answer_questions(runs)['a']
    assert q['survivors'] == [] and q['answer'] == 'no' and q['n_final'] == 5
    assert all(ub(diffs(runs, c, 'wbf-earl', 5)) < 0.02 for c in sr.CHALLENGERS_A)


@pytest.mark.parametrize(
    'late_sd, answer',
    [
        (0.004, 'no'),  # the survivor's final upper bound falls below +0.02
        (0.08, 'not shown'),  # it stays above: "not shown", never "no"
    ],
)
def test_not_shown_is_not_no(late_sd, answer):
    # MV +0.006 with SD 0.025 on replicates 0-4 (its 90 % bound reaches +0.02: it
    # survives), then ``late_sd``; everything else -0.02 (dropped)
    offsets = everything(dict.fromkeys(sr.CHALLENGERS_A, -0.02) | {'mv': 0.006})
    z = _z(30, 99)
    runs = make_runs(offsets, 30, noise={'mv': np.r_[0.025 * z[:5], late_sd * z[5:]]})
    res = sr.answer_questions(runs)
    q, n = res['a'], res['n_stage2']
    assert q['survivors'] == ['mv']
    d = diffs(runs, 'mv', 'wbf-earl', n)
    assert p_greater(d) > 0.025 / K  # Holm cannot reject
    assert (ub(d) < 0.02) == (answer == 'no')
    assert q['answer'] == answer
    assert (q['open'] == ['mv']) == (answer == 'not shown')


def test_question_c_has_na_as_reference():
    # NA 0.03 below WBF + EARL: WBF + EARL (+0.03 over NA) survives (c) and wins; the
    # others (+0.01 over NA) are dropped
    offsets = everything({'na': -0.03} | dict.fromkeys(sr.CHALLENGERS_C[1:], -0.02))
    runs = make_runs(offsets, 30)
    q = sr.answer_questions(runs)['c']
    assert q['reference'] == 'na' and q['challengers'][0] == 'wbf-earl'
    assert q['answer'] == 'yes' and 'wbf-earl' in q['yes']
    for row in q['stage1']:
        assert row['dropped'] == (ub(diffs(runs, row['method'], 'na', 5)) < 0.02)


def versus_runs(mean: float, sd: float, n: int = 30, late_sd: float | None = None) -> list:
    """NA and WBF + EARL, WBF + EARL - NA = mean + sd * noise (late_sd from replicate 5)."""
    z = _z(n, 7)
    if late_sd is not None:
        z[5:] *= late_sd / sd
    runs = []
    for s in range(n):
        x = 0.45 + 0.02 * math.sin(s)
        runs.append(dict(method='na', seed=s, metrics=dict(mAP=x, mAP_40=x + 0.2)))
        y = x + mean + sd * z[s]
        runs.append(dict(method='wbf-earl', seed=s, metrics=dict(mAP=y, mAP_40=y + 0.2)))
    return runs


@pytest.mark.parametrize(
    'mean, sd, late_sd, look, answer',
    [
        (-0.05, 0.005, None, 'interim', 'worse'),  # far below 0 at half the replicates
        (0.05, 0.005, None, 'interim', 'better'),
        (0.0, 0.004, None, 'interim', 'equivalent'),  # narrow and inside +-0.02 already
        (0.012, 0.02, 0.005, 'final', 'better'),  # the interim interval covers 0, the final not
        (0.0, 0.02, 0.01, 'final', 'equivalent'),
        (0.01, 0.04, 0.05, 'final', 'not shown'),  # covers 0 and +0.02 at the cap
    ],
)
def test_question_b_at_the_interim_and_final_looks(mean, sd, late_sd, look, answer):
    runs = versus_runs(mean, sd, late_sd=late_sd)
    b = sr.answer_questions([], runs)['b']['paper']
    d = diffs(runs, 'wbf-earl', 'na', 30)
    n = b['n']
    # the oracle: n from the stage-1 SD, the interim at max(5, ceil(n / 2))
    s1 = d[:5].std(ddof=1)
    assert n == max(oracle_n(s1, 0.0225, 0.8), oracle_n(s1, 0.0225, 0.9))
    assert b['n_interim'] == max(5, math.ceil(n / 2))

    def decide(x: np.ndarray, alpha: float) -> str:
        lo, hi = interval(x, alpha)
        if lo > 0 or hi < 0:
            return 'better' if lo > 0 else 'worse'
        return 'equivalent' if -0.02 < lo and hi < 0.02 else ''

    interim = decide(d[: b['n_interim']], 0.005)
    oracle = interim or decide(d[:n], 0.045) or 'not shown'
    assert (look == 'interim') == bool(interim)
    assert b['answer'] == oracle == answer
    assert b['looks'][-1]['look'] == look and len(b['looks']) == (1 if look == 'interim' else 2)
    assert b['looks'][-1]['decision']['mAP_40'] == b['looks'][-1]['decision']['mAP']


@pytest.mark.parametrize(
    'n, pending, looks',
    [
        (6, 'interim', 0),  # stage 1 done (n = 13, interim at 7), the interim look not yet
        (7, 'final', 1),  # the interim look undecided: on to the final look at 13
    ],
)
def test_question_b_waits_for_its_looks(n, pending, looks):
    runs = versus_runs(0.0, 0.02, n=n)
    res = sr.answer_questions([], runs)
    b = res['b']['paper']
    s1 = diffs(runs, 'wbf-earl', 'na', 5).std(ddof=1)
    assert b['n'] == max(oracle_n(s1, 0.0225, 0.8), oracle_n(s1, 0.0225, 0.9)) == 13
    assert b['n_interim'] == 7
    size = b['n_interim'] if pending == 'interim' else b['n']
    assert (
        b['answer'] is None
        and b['stage'] == f'{pending} look at {size} pending ({n} of {size} replicates)'
    )
    assert len(b['looks']) == looks
    assert res['next'][-1] == dict(preset='paper', methods=['wbf-earl', 'na'], seeds=size)


# ----------------------------------------------------------------------------- section 4


def test_mechanism_verdicts():
    # gap NA - WBF + EARL = +0.03; the ablations: closes it / half / nothing / noisy
    offsets = everything(
        {'na': 0.03, 'wbf-earl-wsum': 0.03, 'wbf-earl-obj': 0.012, 'wbf-earl-na-like': -0.01,
         'presence-em': 0.01}
    )  # fmt: skip
    runs = make_runs(offsets, 10, sd={'na': 0.006, 'presence-em': 0.03})
    m = sr.answer_questions(runs)['mechanism']
    assert m['stage'] == 'answered at n = 10'
    gap = diffs(runs, 'na', 'wbf-earl', 10).mean()
    p = {a: p_greater(diffs(runs, a, 'wbf-earl', 10)) for a in sr.ABLATIONS}
    order = sorted(p, key=p.get)
    rejected = set()
    for i, a in enumerate(order):  # Holm over the four at 0.025
        if p[a] > 0.025 / (4 - i):
            break
        rejected.add(a)
    got = {r['method']: r['verdict'] for r in m['rows']}
    for a in sr.ABLATIONS:
        lo, hi = interval(diffs(runs, a, 'na', 10), 0.05)
        if a in rejected:
            oracle = 'accounts' if -0.02 < lo and hi < 0.02 else 'partly'
        else:
            oracle = 'not' if ub(diffs(runs, a, 'wbf-earl', 10)) < gap / 2 else 'not shown'
        assert got[a] == oracle, a
    assert got == {
        'wbf-earl-wsum': 'accounts', 'wbf-earl-obj': 'partly', 'wbf-earl-na-like': 'not',
        'presence-em': 'not shown',
    }  # fmt: skip


def test_mechanism_before_ten_replicates_is_provisional():
    m = sr.answer_questions(make_runs(everything(), 5))['mechanism']
    assert m['stage'].startswith('incomplete (5 of 10') and all(
        'verdict' not in r for r in m['rows']
    )


def test_the_lever_rules_use_replicates_0_to_4_and_check_the_data_seeds():
    sd = dict(na=0.01, **{'wbf-earl': 0.005})
    swa = lever_runs('swa', sd, n=6)
    for r in swa:
        r['data_seed'] = 2000 + r['seed']
    config = lever_runs('config', dict(na=0.03, **{'wbf-earl': 0.03}))
    for r in config:
        r['data_seed'] = 0  # e.g. the pilot's runs
    r = sr.lever_decision(config, swa)
    assert r['modes']['swa']['replicates'] == 5
    x = [q['metrics']['mAP'] for q in swa if q['method'] == 'wbf-earl' and q['seed'] < 5]
    assert r['modes']['swa']['sd']['wbf-earl']['mAP'] == pytest.approx(np.std(x, ddof=1))
    notes = ' | '.join(r['notes'])
    assert '--ema swa: 2 run(s) of replicates >= 5 left out' in notes
    assert '--ema config: 10 run(s) not on data seed 2000 + replicate' in notes
    assert '--ema swa: ' not in notes.replace('--ema swa: 2 run(s)', '')


def test_answer_notes_runs_of_another_study():
    runs = make_runs(everything(), 5)
    for r in runs:
        r['data_seed'] = 1000 + r['seed'] + (r['method'] == 'mv')
    notes = sr.answer_questions(runs)['notes']
    assert notes[0] == (
        'vindr-like: 5 run(s) not on data seed 1000 + replicate '
        '(mv replicate 0: 1001, mv replicate 1: 1002, mv replicate 2: 1003)'
    )


def test_every_method_summary_is_scipys_t_interval_on_its_replicates():
    offsets = {'na': 0.01, 'wbf-earl': 0.0, 'mv': -0.02}
    runs = make_runs(offsets, 8, sd={'na': 0.01, 'mv': 0.005})
    runs = [r for r in runs if not (r['method'] == 'mv' and r['seed'] >= 5)]  # mv stopped at 5
    for r in runs:
        r.update(train_s=600.0, test_s=15.0)
    runs.append(dict(method='wbf', seed=0, metrics=dict(mAP=0.9, mAP_40=0.95)))  # untimed
    result = sr.answer_questions(runs)
    by = {(r['method'], r['seed']): r['metrics'] for r in runs}
    for key, n in (('stage1', 5), ('all', None)):
        rows = result['methods']['vindr-like'][key]
        means = [row['mAP']['mean'] for row in rows]
        assert means == sorted(means, reverse=True)
        for row in rows:
            seeds = [s for s in range(8) if (row['method'], s) in by and (n is None or s < n)]
            assert row['seeds'] == seeds and row['n'] == len(seeds)
            for metric in sr.METRICS:
                x = np.array([by[row['method'], s][metric] for s in seeds])
                if x.size < 2:
                    assert row[metric]['lo'] is None and row[metric]['mean'] == x[0]
                    continue
                lo, hi = t.interval(0.95, x.size - 1, x.mean(), x.std(ddof=1) / math.sqrt(x.size))
                assert row[metric]['mean'] == pytest.approx(x.mean())
                assert (row[metric]['lo'], row[metric]['hi']) == pytest.approx((lo, hi))
            assert sorted(row['versus']) == sorted({'na', 'wbf-earl'} - {row['method']})
            if row['method'] == 'na':
                d = diffs(runs, 'na', 'wbf-earl', len(seeds))
                assert row['versus']['wbf-earl']['mAP']['mean'] == pytest.approx(d.mean())
                assert (
                    row['versus']['wbf-earl']['mAP']['lo'],
                    row['versus']['wbf-earl']['mAP']['hi'],
                ) == pytest.approx(interval(d, 0.05))
    cost = result['cost']['vindr-like']
    assert cost == dict(runs=22, hours=pytest.approx(21 * 615 / 3600), untimed=1)
