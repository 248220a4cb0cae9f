"""The sequential design of the v3 study (docs/study_v3_design.md) and its error rates.

A study trains methods on replicates (replicate i: data, raters and initialisation drawn
with seed i) and compares them by *paired differences* of mAP@[.5:.95], method minus
reference on the same replicate. This module states the design's decision rules as
functions and measures what they do by simulation: how often each rule says "yes" when
nothing is better (the false-yes rate), how often it finds a true advantage of
:data:`MARGIN` (the power), and how many runs that costs.

Three kinds of question (docs/study_v3_design.md):

* :class:`Superiority` (questions (a) and (c)): does any of K challengers beat the
  reference? Stage 1: every challenger on ``n1`` replicates; a challenger whose one-sided
  ``drop_level`` upper bound on its difference is below :data:`MARGIN` is dropped
  (:func:`drop_mask`). Stage 2: the survivors and the reference to the ``n`` the largest
  stage-1 SD among the survivors demands (:func:`required_n`, Bonferroni level
  ``alpha / K``, power ``power`` at :data:`MARGIN`), at least ``n_min``, at most
  ``n_cap``. Then one-sided paired t-tests, Holm over all K (:func:`holm_reject`; a
  dropped challenger counts as not rejected). **yes**: Holm rejects "difference <= 0" for
  some challenger; **no**: not yes, and every challenger's one-sided ``no_level`` upper
  bound (at stage 1 for the dropped, at the end for the rest) is below :data:`MARGIN`;
  otherwise **not shown** (:func:`superiority_outcome`).
* :class:`Versus` (question (b)): method vs reference, two looks: the final at the ``n``
  that gives the stated power for 'better' / 'worse' at a true difference of +-MARGIN
  and for 'equivalent' at 0, from the stage-1 SD (at least ``n_min``, at most ``n_cap``:
  :func:`versus_n`), the interim at half of it. At look j the two-sided ``1 - alpha_j``
  t-interval decides (:func:`look_decision`): **better** if above 0, **worse** if below
  0, **equivalent** if inside (-MARGIN, +MARGIN); the interim level is small (an
  O'Brien-Fleming-like split of 0.05 into 0.005 + 0.045), so stopping early costs almost
  nothing at the final look.

Scores are simulated per method and replicate as independent normal draws around each
method's true mean with each method's own seed SD (a replicate effect shared by all
methods cancels in paired differences and is left out), so the differences of several
challengers to one reference are correlated as in the study. Everything is numpy and
``scipy.stats`` quantiles; a table of 20,000 simulated studies takes seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The advantage the study is sized to find, mAP@[.5:.95] (issue 26).
MARGIN = 0.02

#: Outcomes of a :class:`Superiority` question and of a :class:`Versus` question.
SUPERIORITY_OUTCOMES = ('yes', 'no', 'not shown')
VERSUS_OUTCOMES = ('better', 'worse', 'equivalent', 'not shown')


@dataclass(frozen=True)
class Design:
    """The stated rules' constants.

    Args:
        n1 (int): replicates of stage 1 (every method). Defaults to 5.
        n_min (int): the fewest replicates of a method that goes on to stage 2, so that
            stage 1's data, whose SD set the n, do not dominate the final test (with 5,
            a false 'better' in question (b) comes 0.034 of the time, not 0.025; with 10,
            0.028). Defaults to 10.
        n_cap (int): the most replicates any method gets. Defaults to 30.
        margin (float): the difference the study is sized for. Defaults to :data:`MARGIN`.
        alpha (float): one-sided family-wise error of a superiority question's "yes".
            Defaults to 0.025.
        power (float): the power the stage-2 ``n`` is sized for. Defaults to 0.8.
        drop_level (float | None): one-sided level of the stage-1 upper bound of the drop
            rule; None drops nothing. Defaults to 0.9.
        max_survivors (int | None): keep at most this many of the challengers that pass
            the drop rule, those of the largest stage-1 means; None keeps all. (Keeping 3
            cuts the cost when NA's stage-1 draw is low and every difference to it looks
            large, but then question (c) says "not shown" instead of "no" 0.4 of the time
            when nothing is better: docs/study_v3_design.md.) Defaults to None.
        no_level (float): one-sided level of the upper bounds behind a "no". Defaults to
            0.9.
        alpha_interim (float): question (b): two-sided level of the interim look's
            interval. Defaults to 0.005.
        alpha_final (float): question (b): the final look's. Defaults to 0.045.
    """

    n1: int = 5
    n_min: int = 10
    n_cap: int = 30
    margin: float = MARGIN
    alpha: float = 0.025
    power: float = 0.8
    drop_level: float | None = 0.9
    max_survivors: int | None = None
    no_level: float = 0.9
    alpha_interim: float = 0.005
    alpha_final: float = 0.045

    def __post_init__(self) -> None:
        if not 2 <= self.n1 <= self.n_min <= self.n_cap:
            raise ValueError(
                f'need 2 <= n1 <= n_min <= n_cap, got n1={self.n1}, n_min={self.n_min}, '
                f'n_cap={self.n_cap}'
            )
        for name in ('alpha', 'power', 'no_level', 'alpha_interim', 'alpha_final'):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f'Design.{name} must lie in (0, 1), got {value!r}')
        if self.max_survivors is not None and self.max_survivors < 1:
            raise ValueError(
                f'Design.max_survivors must be >= 1 or None, got {self.max_survivors!r}'
            )
        if self.drop_level is not None and not 0 < self.drop_level < 1:
            raise ValueError(
                f'Design.drop_level must lie in (0, 1) or be None, got {self.drop_level!r}'
            )
        if not self.margin > 0:
            raise ValueError(f'Design.margin must be > 0, got {self.margin!r}')


@dataclass(frozen=True)
class Superiority:
    """Does any of ``challengers`` beat ``reference``? (questions (a) and (c))"""

    name: str
    reference: str
    challengers: tuple[str, ...]


@dataclass(frozen=True)
class Versus:
    """``method`` against ``reference``: better / worse / equivalent (question (b))."""

    name: str
    method: str
    reference: str


@dataclass(frozen=True)
class Scenario:
    """True means and seed SDs of the methods of one preset (mAP@[.5:.95]).

    Args:
        name (str): shown in the tables.
        sds (Mapping[str, float]): each method's own seed-to-seed SD (> 0).
        means (Mapping[str, float]): each method's true mean; methods not listed are 0.
    """

    name: str
    sds: Mapping[str, float]
    means: Mapping[str, float] = field(default_factory=dict)

    def mean(self, method: str) -> float:
        return float(self.means.get(method, 0.0))


# ----------------------------------------------------------------------------- rules


def _t_ppf(q: float, df: np.ndarray | int) -> np.ndarray:
    from scipy.stats import t

    return t.ppf(q, df)


def moments(d: np.ndarray, n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD (ddof 1) of the first ``n`` columns of each row of ``d``.

    Args:
        d (np.ndarray): (S, N) paired differences, one simulated study per row.
        n (np.ndarray | int): (S,) or one count per row, 2 <= n <= N.

    Returns:
        tuple[np.ndarray, np.ndarray]: (S,) means and SDs.

    Examples:
        >>> m, s = moments(np.array([[1.0, 3.0, 100.0]]), 2)
        >>> float(m[0]), round(float(s[0]), 4)
        (2.0, 1.4142)
    """
    d = np.asarray(d, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n), d.shape[:1]).astype(np.int64)
    if n.min() < 2 or n.max() > d.shape[1]:
        raise ValueError(f'need 2 <= n <= {d.shape[1]}, got n in [{n.min()}, {n.max()}]')
    c1 = np.take_along_axis(np.cumsum(d, axis=1), n[:, None] - 1, axis=1)[:, 0]
    c2 = np.take_along_axis(np.cumsum(d * d, axis=1), n[:, None] - 1, axis=1)[:, 0]
    mean = c1 / n
    var = np.maximum(c2 - n * mean * mean, 0.0) / (n - 1)
    return mean, np.sqrt(var)


def upper_bound(mean: np.ndarray, sd: np.ndarray, n: np.ndarray | int, level: float) -> np.ndarray:
    """One-sided ``level`` t upper confidence bound of a mean difference.

    Examples:
        >>> round(float(upper_bound(0.0, 0.01, 5, 0.9)), 5)  # t_{0.9, 4} = 1.5332
        0.00686
    """
    n = np.asarray(n)
    return np.asarray(mean) + _t_ppf(level, n - 1) * np.asarray(sd) / np.sqrt(n)


def drop_mask(
    mean: np.ndarray, sd: np.ndarray, n: int, margin: float, level: float | None
) -> np.ndarray:
    """The drop rule: True where a challenger cannot reach ``margin``, i.e. its one-sided
    ``level`` upper bound after stage 1 lies below ``margin`` (None: drop nothing)."""
    if level is None:
        return np.zeros(np.shape(mean), dtype=bool)
    return upper_bound(mean, sd, n, level) < margin


def top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """True for the ``k`` largest entries of each row (ties by position; -inf never).

    Examples:
        >>> top_k_mask(np.array([[0.01, 0.03, -np.inf, 0.02]]), 2).tolist()
        [[False, True, False, True]]
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-values, axis=-1, kind='stable')
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(values.shape[-1]), axis=-1)
    return (rank < k) & np.isfinite(values)


def holm_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down test over the last axis: which hypotheses are rejected.

    NaN p-values (dropped challengers) count as 1: never rejected, but still members of
    the family of K.

    Args:
        p (np.ndarray): (..., K) p-values.
        alpha (float): family-wise level.

    Returns:
        np.ndarray: bool, the shape of ``p``.

    Examples:
        >>> holm_reject(np.array([0.01, 0.04, 0.03]), 0.05).tolist()  # 0.01 <= 0.05/3 only
        [True, False, False]
        >>> holm_reject(np.array([0.01, 0.02, 0.04]), 0.05).tolist()  # 0.02 <= 0.05/2, 0.04 <= 0.05
        [True, True, True]
    """
    p = np.where(np.isnan(p), 1.0, np.asarray(p, dtype=np.float64))
    k = p.shape[-1]
    order = np.argsort(p, axis=-1, kind='stable')
    sorted_p = np.take_along_axis(p, order, axis=-1)
    thresholds = alpha / (k - np.arange(k))
    passed = np.logical_and.accumulate(sorted_p <= thresholds, axis=-1)
    out = np.empty_like(passed)
    np.put_along_axis(out, order, passed, axis=-1)
    return out


def approx_power(delta: float, sd: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """Power of a one-sided paired t-test at level ``alpha`` with ``n`` pairs when the true
    mean difference is ``delta`` and its SD ``sd``: ``Phi(delta sqrt(n) / sd - t_{1-alpha,
    n-1})``, the usual closed form (a little optimistic at small n; :func:`t_power` is
    exact). Used to size stage 2; the simulation measures what the sizing achieves.
    """
    from scipy.stats import norm

    n = np.asarray(n, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    with np.errstate(divide='ignore'):
        z = np.where(sd > 0, delta * np.sqrt(n) / np.where(sd > 0, sd, 1.0), np.inf)
    return norm.cdf(z - _t_ppf(1 - alpha, n - 1))


def t_power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Exact power of a one-sided paired t-test (noncentral t).

    Examples:
        >>> round(t_power(0.02, 0.025, 15, 0.025), 3)
        0.821
    """
    from scipy.stats import nct

    if n < 2 or not sd > 0:
        raise ValueError(f'need n >= 2 and sd > 0, got n={n}, sd={sd}')
    return float(nct.sf(_t_ppf(1 - alpha, n - 1), n - 1, delta * math.sqrt(n) / sd))


def required_n(
    sd: np.ndarray, delta: float, alpha: float, power: float, n_min: int, n_cap: int
) -> np.ndarray:
    """The smallest ``n`` in ``[n_min, n_cap]`` whose :func:`approx_power` reaches
    ``power``; ``n_cap`` where none does.

    Examples:
        >>> required_n(np.array([0.0, 0.015, 0.025, 0.5]), 0.02, 0.025, 0.8, 5, 30).tolist()
        [5, 7, 15, 30]
    """
    sd = np.atleast_1d(np.asarray(sd, dtype=np.float64))
    if not 2 <= n_min <= n_cap:
        raise ValueError(f'need 2 <= n_min <= n_cap, got {n_min}, {n_cap}')
    ns = np.arange(n_min, n_cap + 1)
    ok = approx_power(delta, sd[:, None], ns[None, :], alpha) >= power
    return np.where(ok.any(axis=1), ns[np.argmax(ok, axis=1)], n_cap)


def look_decision(
    mean: np.ndarray, sd: np.ndarray, n: np.ndarray | int, alpha: float, margin: float
) -> np.ndarray:
    """Question (b) at one look: the two-sided ``1 - alpha`` t-interval of the mean
    difference gives 'better' (above 0), 'worse' (below 0), 'equivalent' (inside
    (-margin, margin) and covering 0) or '' (no decision yet).

    Examples:
        >>> mean = np.array([0.03, -0.03, 0.0, 0.01])  # the last: above 0 and inside +-0.02
        >>> look_decision(mean, np.full(4, 0.01), 20, 0.05, 0.02).tolist()
        ['better', 'worse', 'equivalent', 'better']
        >>> look_decision(np.array([0.0]), np.array([0.05]), 5, 0.05, 0.02).tolist()
        ['']
    """
    n = np.asarray(n)
    half = _t_ppf(1 - alpha / 2, n - 1) * np.asarray(sd) / np.sqrt(n)
    lo, hi = np.asarray(mean) - half, np.asarray(mean) + half
    out = np.full(np.shape(lo), '', dtype=object)
    out[(lo > -margin) & (hi < margin)] = 'equivalent'
    out[lo > 0] = 'better'
    out[hi < 0] = 'worse'
    return out


def versus_n(sd: np.ndarray, design: Design) -> np.ndarray:
    """Question (b)'s final ``n`` from the stage-1 SD: the larger of the ``n`` for 'better'
    / 'worse' at a true |difference| of ``margin`` and the ``n`` for 'equivalent' at a true
    difference of 0 (each interval side one-sided ``alpha_final / 2``; equivalence power
    from the bound ``P(both sides) >= 2 P(one side) - 1``)."""
    a = design.alpha_final / 2
    sup = required_n(sd, design.margin, a, design.power, design.n_min, design.n_cap)
    eq = required_n(sd, design.margin, a, (1 + design.power) / 2, design.n_min, design.n_cap)
    return np.maximum(sup, eq)


# ----------------------------------------------------------------------------- simulation


def _differences(q: Superiority, scores: dict[str, np.ndarray]) -> np.ndarray:
    """(S, K, N): each challenger minus the reference, per simulated study and replicate."""
    return np.stack([scores[c] - scores[q.reference] for c in q.challengers], axis=1)


def _column_moments(d: np.ndarray, n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`moments` of every challenger of (S, K, N) differences: (S, K) means and SDs."""
    pairs = [moments(d[:, j], n) for j in range(d.shape[1])]
    return np.stack([m for m, _ in pairs], axis=1), np.stack([s for _, s in pairs], axis=1)


def _stage1(d: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 of a superiority question with K challengers: the (S, K) survivors and the
    (S,) stage-2 n, sized at the largest stage-1 SD among the survivors with the
    Bonferroni level ``alpha / K`` (``n1`` where nothing survives)."""
    k = d.shape[1]
    mean1, sd1 = _column_moments(d, design.n1)
    survive = ~drop_mask(mean1, sd1, design.n1, design.margin, design.drop_level)
    if design.max_survivors is not None and design.max_survivors < k:
        survive &= top_k_mask(np.where(survive, mean1, -np.inf), design.max_survivors)
    sd = np.where(survive, sd1, 0.0).max(axis=1)
    n = required_n(sd, design.margin, design.alpha / k, design.power, design.n_min, design.n_cap)
    return survive, np.where(survive.any(axis=1), n, design.n1)


def superiority_outcome(
    d: np.ndarray, survive: np.ndarray, n: np.ndarray, design: Design
) -> tuple[np.ndarray, np.ndarray]:
    """The answer of a superiority question at its final ``n``.

    Args:
        d (np.ndarray): (S, K, N) differences challenger minus reference.
        survive (np.ndarray): (S, K) bool, the challengers that passed stage 1.
        n (np.ndarray): (S,) final replicates.
        design (Design): the rules.

    Returns:
        tuple[np.ndarray, np.ndarray]: (S,) outcome ('yes' / 'no' / 'not shown') and the
        (S, K) challengers Holm rejects ("difference <= 0") at family level ``alpha``.
    """
    from scipy.stats import t

    mean1, sd1 = _column_moments(d, design.n1)
    mean, sd = _column_moments(d, n)
    nn = np.asarray(n)[:, None]
    with np.errstate(divide='ignore', invalid='ignore'):
        stat = mean / (sd / np.sqrt(nn))
    p = np.where(survive, t.sf(stat, nn - 1), np.nan)
    rejected = holm_reject(p, design.alpha)
    yes = rejected.any(axis=1)
    ub = np.where(
        survive,
        upper_bound(mean, sd, nn, design.no_level),
        upper_bound(mean1, sd1, design.n1, design.no_level),
    )
    no = ~yes & (ub < design.margin).all(axis=1)
    return np.where(yes, 'yes', np.where(no, 'no', 'not shown')), rejected


def simulate(
    scenario: Scenario,
    superiority: Sequence[Superiority],
    versus: Sequence[Versus],
    design: Design = Design(),
    sims: int = 20_000,
    seed: int = 0,
) -> dict:
    """Simulate ``sims`` studies of one preset under ``scenario`` and the design's rules.

    Stage 1 runs every method of the questions on ``design.n1`` replicates. The stage-2
    ``n`` is the largest any question demands (:func:`required_n` for each superiority
    question's survivors, :func:`versus_n` for each versus question); every survivor and
    reference runs to it, except that a versus question's two methods stop at its interim
    look (at ``max(n1, ceil(n / 2))``) when it decided there and no other question needs
    them. A versus question's decision at the interim stands.

    Returns:
        dict: ``questions`` (name -> outcome -> probability; superiority questions also
        ``right``: the probability that a "yes" names only challengers whose true mean
        exceeds the reference's), ``runs`` (mean, p10, p50, p90 of the runs of one
        study), ``n`` (mean and p90 of the stage-2 n), ``capped`` (share of studies whose
        n hit ``n_cap``), ``sims``.
    """
    methods = sorted(
        {m for q in superiority for m in (q.reference, *q.challengers)}
        | {m for q in versus for m in (q.method, q.reference)}
    )
    missing = [m for m in methods if m not in scenario.sds]
    if missing:
        raise ValueError(f'scenario {scenario.name!r} has no SD for {missing}')
    rng = np.random.default_rng(seed)
    cap = design.n_cap
    scores = {
        m: scenario.mean(m) + scenario.sds[m] * rng.standard_normal((sims, cap)) for m in methods
    }
    n_needed = np.full(sims, design.n1)
    stage1 = {}
    for q in superiority:
        d = _differences(q, scores)
        survive, n = _stage1(d, design)
        stage1[q.name] = (d, survive)
        n_needed = np.maximum(n_needed, n)
    for q in versus:
        _, sd1 = moments(scores[q.method] - scores[q.reference], design.n1)
        n_needed = np.maximum(n_needed, versus_n(sd1, design))
    n_final = n_needed
    runs_of = {m: np.full(sims, design.n1) for m in methods}
    out: dict = dict(questions={}, sims=sims)
    for q in superiority:
        d, survive = stage1[q.name]
        outcome, rejected = superiority_outcome(d, survive, n_final, design)
        alive = survive.any(axis=1)
        for j, c in enumerate(q.challengers):
            runs_of[c] = np.maximum(runs_of[c], np.where(survive[:, j], n_final, design.n1))
        runs_of[q.reference] = np.maximum(runs_of[q.reference], np.where(alive, n_final, design.n1))
        good = np.array([scenario.mean(c) > scenario.mean(q.reference) for c in q.challengers])
        right = rejected.any(axis=1) & ~(rejected & ~good).any(axis=1)
        yes = outcome == 'yes'
        out['questions'][q.name] = dict(
            {o: float(np.mean(outcome == o)) for o in SUPERIORITY_OUTCOMES},
            right=float(right.mean()),
            right_given_yes=float(right[yes].mean()) if yes.any() else math.nan,
            survivors=float(survive.sum(axis=1).mean()),
        )
    for q in versus:
        d = scores[q.method] - scores[q.reference]
        n_interim = np.maximum(design.n1, np.ceil(n_final / 2).astype(np.int64))
        has_interim = n_interim < n_final
        m_i, s_i = moments(d, np.minimum(n_interim, n_final))
        interim = np.where(
            has_interim,
            look_decision(m_i, s_i, n_interim, design.alpha_interim, design.margin),
            '',
        )
        m_f, s_f = moments(d, n_final)
        final = look_decision(m_f, s_f, n_final, design.alpha_final, design.margin)
        decision = np.where(interim != '', interim, final)
        decision = np.where(decision == '', 'not shown', decision)
        stop = np.where(interim != '', n_interim, n_final)
        for m in (q.method, q.reference):
            runs_of[m] = np.maximum(runs_of[m], stop)
        out['questions'][q.name] = dict(
            {o: float(np.mean(decision == o)) for o in VERSUS_OUTCOMES},
            interim_stop=float(np.mean(interim != '')),
        )
    runs = sum(runs_of.values())
    out['runs'] = dict(
        mean=float(runs.mean()),
        p10=float(np.percentile(runs, 10)),
        p50=float(np.percentile(runs, 50)),
        p90=float(np.percentile(runs, 90)),
    )
    out['n'] = dict(mean=float(n_final.mean()), p90=float(np.percentile(n_final, 90)))
    out['capped'] = float(np.mean(n_final >= cap))
    return out


# ----------------------------------------------------------------------------- planning inputs


def paired_sd(
    runs: Sequence[Mapping], method: str, reference: str, metric: str = 'mAP'
) -> tuple[float, int]:
    """Seed SD of ``method - reference`` over the seeds both have in ``runs`` (result dicts
    of ``tools/benchmark_medmnist.py``: ``method``, ``seed``, ``metrics``), and that count.

    Raises:
        ValueError: fewer than 2 common seeds, or two runs of one method and seed.
    """
    by: dict[str, dict[int, float]] = {}
    for r in runs:
        seeds = by.setdefault(r['method'], {})
        if r['seed'] in seeds:
            raise ValueError(
                f'two runs of {r["method"]!r} seed {r["seed"]} (filter one setting first)'
            )
        seeds[r['seed']] = float(r['metrics'][metric])
    a, b = by.get(method, {}), by.get(reference, {})
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise ValueError(
            f'{method} - {reference}: {len(common)} common seed(s), need 2 '
            f'(seeds {sorted(a)} and {sorted(b)})'
        )
    d = np.array([a[s] - b[s] for s in common])
    return float(d.std(ddof=1)), len(common)


def seed_sd(runs: Sequence[Mapping], method: str, metric: str = 'mAP') -> tuple[float, int]:
    """Seed SD of one method's ``metric`` in ``runs``, and its number of seeds."""
    x = np.array([float(r['metrics'][metric]) for r in runs if r['method'] == method])
    if x.size < 2:
        raise ValueError(f'{method}: {x.size} run(s), need 2')
    return float(x.std(ddof=1)), int(x.size)
