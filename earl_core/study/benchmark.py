"""Statistics and report of a paired-seed study (``tools/benchmark_medmnist.py``).

A study trains every method with the same seeds; one *result* is a dict with ``method``,
``seed``, ``proficiency``, ``epochs`` and ``metrics`` (the unprefixed scalars of
:class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric`; :data:`METRICS` are
summarised), optionally ``bootstrap`` (:func:`earl_mmdet.evaluation.predictions.bootstrap_scores`).
:func:`summarize` gives the mean and 95 % t-interval per method and the paired (same seed)
differences to the baseline and of :data:`EXTRA_PAIRS`; :func:`markdown` and :func:`plots`
present them. Everything here is computation on those dicts (plus the plots' files);
running the study is the tool's.

This module gathers three: :mod:`earl_core.study.methods` (the methods' names, order and
the plan of runs), :mod:`earl_core.study.summary` (the statistics) and
:mod:`earl_core.study.report` (Markdown and plots). Their names are importable from here.
"""

from __future__ import annotations

from earl_core.study.methods import (
    ABLATION_METHODS,
    CHALLENGER_METHODS,
    EXTRA_PAIRS,
    LABELS,
    METHODS,
    METRICS,
    REFERENCE,
    STUDY_METHODS,
    Run,
    method_family,
    method_order,
    method_rater,
    plan,
    rater_method,
)
from earl_core.study.report import markdown, plots
from earl_core.study.summary import (
    MARGIN,
    TARGET_HALF_WIDTH,
    answer,
    curve_table,
    paired_diff,
    power_rows,
    sd_upper_bound,
    seeds_for_half_width,
    summarize,
    sweep_table,
    t_interval,
    val_curve_from_log,
    verdict,
    versus_reference,
)

__all__ = [
    'ABLATION_METHODS',
    'CHALLENGER_METHODS',
    'EXTRA_PAIRS',
    'LABELS',
    'MARGIN',
    'METHODS',
    'METRICS',
    'REFERENCE',
    'STUDY_METHODS',
    'TARGET_HALF_WIDTH',
    'Run',
    'answer',
    'curve_table',
    'markdown',
    'method_family',
    'method_order',
    'method_rater',
    'paired_diff',
    'plan',
    'plots',
    'power_rows',
    'rater_method',
    'sd_upper_bound',
    'seeds_for_half_width',
    'summarize',
    'sweep_table',
    't_interval',
    'val_curve_from_log',
    'verdict',
    'versus_reference',
]
