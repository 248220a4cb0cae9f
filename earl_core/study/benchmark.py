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

# The three modules' names, importable from here as before the split.
from earl_core.study import methods as _methods
from earl_core.study import report as _report
from earl_core.study import summary as _summary
from earl_core.study.methods import *  # noqa: F403
from earl_core.study.report import *  # noqa: F403
from earl_core.study.summary import *  # noqa: F403

__all__ = [*_methods.__all__, *_summary.__all__, *_report.__all__]
