"""Crowd-sized data: the aggregators, EM models and rater report scale with the raters of
each image, and give the numbers of the dense implementations they replaced.

Parity: :mod:`tests.test_core.crowd_cases` holds seeded cases (rater pools of 5 to 40,
readers per image 0 to 30, unseen raters, images nobody read, exact ties, a crowd of 30 on
two objects, one image of 60 lone boxes) and the outputs of the dense code (commit db2678b).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest

from tests.test_core.crowd_cases import all_cases, load_golden, outputs


@functools.cache
def _golden() -> dict[str, Any]:
    return load_golden()


@functools.cache
def _now(case: str) -> dict[str, Any]:
    return outputs(*all_cases()[case])


def assert_close(got: Any, want: Any, path: str, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Every value recorded from the dense code is reproduced (floats to ``rtol``; NaN ==
    NaN); a dict may hold keys the dense code had not."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        missing = sorted(set(want) - set(got))
        assert not missing, f'{path}: keys {missing} missing'
        for key, value in want.items():
            assert_close(got[key], value, f'{path}.{key}', rtol, atol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f'{path}: length'
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f'{path}[{i}]', rtol, atol)
    elif isinstance(want, float) and isinstance(got, (int, float)):
        if math.isnan(want):
            assert math.isnan(got), f'{path}: {got} != nan'
        else:
            assert got == pytest.approx(want, rel=rtol, abs=atol), f'{path}: {got} != {want}'
    else:
        assert got == want, f'{path}: {got!r} != {want!r}'


CASE_NAMES = ['small', 'ties', 'crowd', 'one_class', 'sparse_readers', 'singletons']
SECTIONS = [
    'clusters',  # cluster_boxes, every linkage, class-agnostic and per label
    'em',  # RaterEM: every estimate, posteriors (unseen rater too), rater weights
    'presence_em',  # PresenceEM: estimates, objective trace, posteriors
    'aggregators',  # na, rater:<id>, mv (2 settings), wbf (2), em (4), presence_em (2)
    'pairwise_f1',  # the dense pairwise F1 / shared-images matrices
    'report',  # rater_report (mv consensus): per rater, EM, alpha, partners, WBF shares
    'report_em_per_rater',  # rater_report with the em consensus (refitted per rater)
]


@pytest.mark.parametrize('section', SECTIONS)
@pytest.mark.parametrize('case', CASE_NAMES)
def test_parity_with_dense_implementation(case, section):
    want = _golden()[case]
    if section not in want:
        pytest.skip(f'{section} not recorded for {case}')
    assert_close(_now(case)[section], want[section], f'{case}.{section}')
