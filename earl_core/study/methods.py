"""The methods of a paired-seed study, their names and order, and the plan of its runs.

A *method* is one way of training on the raters' boxes (``na``, ``wbf-earl``, ...);
``rater-<id>`` is one model per rater. :data:`METHODS` is the report order, :data:`LABELS`
the report's names, :data:`EXTRA_PAIRS` and :data:`REFERENCE` the paired comparisons the
report makes, :data:`METRICS` the scores it summarises. :func:`plan` lists the runs
(:class:`Run`) of a study. Used by :mod:`earl_core.study.benchmark` (the statistics and
report of ``tools/benchmark_medmnist.py``) and :mod:`earl_core.study.regime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    'ABLATION_METHODS',
    'CHALLENGER_METHODS',
    'EXTRA_PAIRS',
    'LABELS',
    'METHODS',
    'METRICS',
    'REFERENCE',
    'STUDY_METHODS',
    'Run',
    'method_family',
    'method_order',
    'method_rater',
    'plan',
    'rater_method',
]

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


def method_order(method: str) -> tuple[int, str]:
    """Sort key: report order of :data:`METHODS` (``rater-<id>`` as ``rater``), unknown last."""
    base = method_family(method)
    return (METHODS.index(base) if base in METHODS else len(METHODS), method)
