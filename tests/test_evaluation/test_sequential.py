"""The v3 study's sequential design (earl_core.study.sequential): its rules on
hand-computed cases, and its simulation against exact power and its stated error rates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from earl_core.study import sequential as sq

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('n', [2, 3, 5, 7])
def test_moments_are_those_of_the_first_n_columns(n):
    rng = np.random.default_rng(n)
    d = rng.normal(size=(4, 7))
    mean, sd = sq.moments(d, n)
    assert mean == pytest.approx(d[:, :n].mean(axis=1))
    assert sd == pytest.approx(d[:, :n].std(axis=1, ddof=1))


def test_moments_take_one_n_per_row():
    d = np.array([[1.0, 3.0, 5.0], [2.0, 2.0, 8.0]])
    mean, sd = sq.moments(d, np.array([2, 3]))
    assert mean.tolist() == [2.0, 4.0]
    assert sd == pytest.approx([math.sqrt(2), math.sqrt(12)])


@pytest.mark.parametrize('n', [1, 4])
def test_moments_refuse_counts_outside_the_columns(n):
    with pytest.raises(ValueError, match=r'need 2 <= n <= 3'):
        sq.moments(np.zeros((2, 3)), n)


@pytest.mark.parametrize(
    'p, rejected',
    [
        # the smallest passes alpha/3, the next 0.03 > 0.05/2 stops the steps
        ([0.01, 0.04, 0.03], [True, False, False]),
        # every step passes: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05
        ([0.01, 0.02, 0.04], [True, True, True]),
        # the first step fails: nothing, even 0.04 <= 0.05 later
        ([0.02, 0.04, 0.04], [False, False, False]),
        # a dropped challenger (NaN) is a member of the family: 0.03 > 0.05/2 at step 2 ...
        ([0.03, math.nan, 0.001], [False, False, True]),
        # ... where without it 0.03 <= 0.05/1 would pass
        ([0.03, 0.001], [True, True]),
        # ties keep their order
        ([0.01, 0.01], [True, True]),
    ],
)
def test_holm_reject(p, rejected):
    assert sq.holm_reject(np.array(p), 0.05).tolist() == rejected


def test_holm_reject_works_row_by_row():
    p = np.array([[0.01, 0.04, 0.03], [0.01, 0.02, 0.04]])
    assert sq.holm_reject(p, 0.05).tolist() == [[True, False, False], [True, True, True]]


@pytest.mark.parametrize(
    'mean, sd, level, dropped',
    [
        # upper bound 0.0 + 1.533 * 0.01 / sqrt(5) = 0.0069 < 0.02: cannot reach +0.02
        (0.0, 0.01, 0.9, True),
        # 0.014 + 0.0069 = 0.0209: can still reach it
        (0.014, 0.01, 0.9, False),
        # noisy: 0.0 + 1.533 * 0.04 / sqrt(5) = 0.0274: kept
        (0.0, 0.04, 0.9, False),
        # no drop rule
        (-0.5, 0.01, None, False),
    ],
)
def test_drop_rule(mean, sd, level, dropped):
    assert bool(sq.drop_mask(np.array(mean), np.array(sd), 5, 0.02, level)) is dropped


@pytest.mark.parametrize(
    'values, k, kept',
    [
        ([0.01, 0.03, 0.02], 2, [False, True, True]),
        # a dropped challenger (-inf) is never kept, even with room left
        ([0.01, -np.inf, 0.02], 3, [True, False, True]),
        # ties: the earlier one
        ([0.02, 0.02, 0.02], 1, [True, False, False]),
    ],
)
def test_top_k_mask(values, k, kept):
    assert sq.top_k_mask(np.array([values]), k).tolist() == [kept]


def test_max_survivors_caps_stage_2():
    """With every challenger's stage-1 difference high, at most max_survivors go on."""
    q = sq.Superiority('c', 'ref', tuple(f'm{i}' for i in range(6)))
    sds = dict.fromkeys(('ref', *q.challengers), 0.01)
    means = dict.fromkeys(q.challengers, 0.05)
    capped = sq.simulate(sq.Scenario('s', sds, means), [q], [], sq.Design(max_survivors=2), 500)
    every = sq.simulate(sq.Scenario('s', sds, means), [q], [], sq.Design(), 500)
    assert capped['questions']['c']['survivors'] == 2.0
    assert every['questions']['c']['survivors'] == 6.0


@pytest.mark.parametrize('sd', [0.005, 0.0145, 0.025, 0.04])
@pytest.mark.parametrize('alpha', [0.025, 0.025 / 8])
def test_required_n_is_the_smallest_n_reaching_the_power(sd, alpha):
    n = int(sq.required_n(np.array([sd]), 0.02, alpha, 0.8, 2, 200)[0])
    power = [float(sq.approx_power(0.02, sd, k, alpha)) for k in range(2, n + 1)]
    assert power[-1] >= 0.8
    assert n == 2 or power[-2] < 0.8


def test_required_n_bounds():
    # SD 0: any n works, the floor; an SD too large for the cap: the cap
    assert sq.required_n(np.array([0.0, 1.0]), 0.02, 0.025, 0.8, 10, 30).tolist() == [10, 30]


@pytest.mark.parametrize(
    'sd, n, alpha',
    [
        (0.0145, 10, 0.025 / 8),  # fusion - fusion, Bonferroni over 8
        (0.025, 15, 0.025),  # NA comparisons, one test
        (0.025, 22, 0.025 / 8),
        (0.04, 30, 0.025),  # a pessimistic SD at the cap
    ],
)
def test_sizing_power_is_close_to_the_exact_one_where_sizing_lands(sd, n, alpha):
    """Where the sized n lands (power 0.6-0.95), the closed form used for sizing is within
    0.035 of the noncentral t (measured: 0.01-0.03)."""
    exact = sq.t_power(0.02, sd, n, alpha)
    assert 0.6 <= exact <= 0.95
    assert float(sq.approx_power(0.02, sd, n, alpha)) == pytest.approx(exact, abs=0.035)


@pytest.mark.parametrize(
    'mean, sd, n, alpha, decision',
    [
        # 95 % interval 0.03 +- 2.093 * 0.01 / sqrt(20) = [0.0253, 0.0347]
        (0.03, 0.01, 20, 0.05, 'better'),
        (-0.03, 0.01, 20, 0.05, 'worse'),
        # [-0.0047, 0.0047] inside +-0.02
        (0.0, 0.01, 20, 0.05, 'equivalent'),
        # [0.0053, 0.0147]: better, and inside +-0.02 -- better wins
        (0.01, 0.01, 20, 0.05, 'better'),
        # [-0.0152, 0.0352]: neither
        (0.01, 0.02, 5, 0.2, ''),
        # at the interim level 0.005 the same data as the third case are still equivalent
        (0.0, 0.01, 20, 0.005, 'equivalent'),
        # 0.012 +- 3.174 * 0.02 / sqrt(20) = [-0.0022, 0.0262]: nothing at 0.005
        (0.012, 0.02, 20, 0.005, ''),
    ],
)
def test_look_decision(mean, sd, n, alpha, decision):
    got = sq.look_decision(np.array([mean]), np.array([sd]), n, alpha, 0.02)
    assert got.tolist() == [decision]


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(n1=1), 'need 2 <= n1 <= n_min <= n_cap'),
        (dict(n1=6, n_min=5), 'need 2 <= n1 <= n_min <= n_cap'),
        (dict(n_min=40), 'need 2 <= n1 <= n_min <= n_cap'),
        (dict(alpha=0.0), r'Design.alpha must lie in \(0, 1\), got 0.0'),
        (dict(power=1.0), r'Design.power must lie in \(0, 1\), got 1.0'),
        (dict(drop_level=1.5), r'Design.drop_level must lie in \(0, 1\) or be None, got 1.5'),
        (dict(margin=-0.02), r'Design.margin must be > 0, got -0.02'),
        (dict(max_survivors=0), r'Design.max_survivors must be >= 1 or None, got 0'),
    ],
)
def test_design_refuses_impossible_rules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sq.Design(**kwargs)


def test_simulate_refuses_a_method_without_sd():
    q = sq.Versus('b', 'wbf-earl', 'na')
    with pytest.raises(ValueError, match=r"scenario 'x' has no SD for \['wbf-earl'\]"):
        sq.simulate(sq.Scenario('x', {'na': 0.02}), [], [q], sims=10)


CHALLENGERS = ('na', 'wbf', 'mv', 'em-earl', 'presence-em-earl', 'wbf-soft', 'wbf-ignore', 'new')
QA = sq.Superiority('a', 'wbf-earl', CHALLENGERS)
QB = sq.Versus('b', 'wbf-earl', 'na')
SDS = dict.fromkeys(('wbf-earl', *CHALLENGERS), 0.0103) | {'na': 0.0232}


def test_simulation_is_deterministic_for_a_seed():
    s = sq.Scenario('mv +0.02', SDS, {'mv': 0.02})
    a = sq.simulate(s, [QA], [QB], sims=2000, seed=3)
    b = sq.simulate(s, [QA], [QB], sims=2000, seed=3)
    c = sq.simulate(s, [QA], [QB], sims=2000, seed=4)
    assert json.dumps(a) == json.dumps(b) and json.dumps(a) != json.dumps(c)


@pytest.mark.parametrize('delta', [0.0, 0.01, 0.02])
def test_fixed_n_simulation_matches_the_noncentral_t(delta):
    """One challenger, no drop, n1 = n_cap = 10: the rule is a one-sided t-test, so the
    simulated share of 'yes' must be its exact power (within 4 Monte-Carlo SEs)."""
    design = sq.Design(n1=10, n_min=10, n_cap=10, drop_level=None)
    q = sq.Superiority('one', 'ref', ('m',))
    sims = 20_000
    r = sq.simulate(sq.Scenario('s', {'ref': 0.01, 'm': 0.01}, {'m': delta}), [q], [], design, sims)
    sd_diff = math.sqrt(2) * 0.01
    exact = sq.t_power(delta, sd_diff, 10, 0.025) if delta else 0.025
    se = math.sqrt(exact * (1 - exact) / sims)
    assert r['questions']['one']['yes'] == pytest.approx(exact, abs=4 * se)
    assert r['runs']['mean'] == 20  # two methods x 10, nothing else


def test_question_a_says_yes_rarely_when_nothing_is_better():
    """Eight correlated challengers, all equal to the reference: Holm keeps the false-yes
    rate at or below alpha = 0.025 (drops and re-sizing only lower it here)."""
    r = sq.simulate(sq.Scenario('null', SDS), [QA], [], sims=20_000, seed=1)
    a = r['questions']['a']
    assert a['yes'] <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / 20_000)
    assert a['no'] > 0.9  # and it usually says no, not "not shown"


def test_question_a_finds_a_fusion_method_at_plus_margin():
    r = sq.simulate(sq.Scenario('mv', SDS, {'mv': 0.02}), [QA], [], sims=5000, seed=2)
    a = r['questions']['a']
    assert a['yes'] > 0.8 and a['right_given_yes'] > 0.95


@pytest.mark.parametrize(
    'delta, outcome, low, high',
    [
        # false 'better' at 0: 0.025 nominal; stage-1 sizing adds a little (measured 0.028)
        (0.0, 'better', 0.0, 0.033),
        (0.0, 'worse', 0.0, 0.033),
        # false 'equivalent' at the margin
        (0.02, 'equivalent', 0.0, 0.035),
        (-0.02, 'equivalent', 0.0, 0.035),
        # power at the margin
        (0.02, 'better', 0.8, 1.0),
        (-0.02, 'worse', 0.8, 1.0),
    ],
)
def test_question_b_error_rates(delta, outcome, low, high):
    s = sq.Scenario('paper', {'na': 0.0241, 'wbf-earl': 0.005}, {'wbf-earl': delta})
    r = sq.simulate(s, [], [QB], sims=10_000, seed=5)
    assert low <= r['questions']['b'][outcome] <= high


def test_question_b_stops_early_only_on_clear_cases():
    clear = sq.simulate(
        sq.Scenario('big', {'na': 0.0241, 'wbf-earl': 0.005}, {'wbf-earl': 0.05}), [], [QB],
        sims=2000,
    )  # fmt: skip
    null = sq.simulate(sq.Scenario('0', {'na': 0.0241, 'wbf-earl': 0.005}), [], [QB], sims=2000)
    assert clear['questions']['b']['interim_stop'] > 0.5 > null['questions']['b']['interim_stop']
    assert clear['runs']['mean'] < null['runs']['mean']


def _committed(name: str) -> list:
    return json.loads((ROOT / 'docs' / name).read_text())['runs']


@pytest.mark.parametrize(
    'file, method, reference, sd, n',
    [
        # the pilot's paired SDs quoted in docs/results.md and issue 26
        ('results_study_paper.json', 'wbf-earl', 'na', 0.0246, 6),
        ('results_study_vindr.json', 'wbf-earl', 'na', 0.0253, 5),
    ],
)
def test_planning_sds_recomputed_from_the_committed_runs(file, method, reference, sd, n):
    got, count = sq.paired_sd(_committed(file), method, reference)
    assert (round(got, 4), count) == (sd, n)


def test_wbf_earl_seed_sd_on_paper_raters_is_the_quoted_one():
    assert sq.seed_sd(_committed('results_study_paper.json'), 'wbf-earl') == (
        pytest.approx(0.0050, abs=5e-5),
        6,
    )


@pytest.mark.parametrize(
    'runs, message',
    [
        # one common seed only
        (
            [dict(method=m, seed=0, metrics=dict(mAP=0.5)) for m in ('a', 'b')],
            r'a - b: 1 common seed\(s\), need 2',
        ),
        # two settings mixed: the same method and seed twice
        (
            [dict(method='a', seed=0, metrics=dict(mAP=0.5))] * 2,
            r"two runs of 'a' seed 0",
        ),
    ],
)  # fmt: skip
def test_paired_sd_refuses_what_it_cannot_pair(runs, message):
    with pytest.raises(ValueError, match=message):
        sq.paired_sd(runs, 'a', 'b')
