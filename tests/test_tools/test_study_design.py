"""tools/study_design.py: the design's error-rate tables from the committed runs."""

from __future__ import annotations

import pytest

from tests.test_tools.run_tool import run_tool


def test_prints_the_tables_deterministically():
    args = ('--sims', '300', '--sd-scale', '1')
    first, second = run_tool('study_design', *args), run_tool('study_design', *args)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    # the planning SDs come from the committed files
    assert '| WBF + EARL − NA, paired, vindr-like raters | 0.0253 | 5 |' in out
    assert '| WBF + EARL − NA, paired, paper raters p = 0.7 | 0.0246 | 6 |' in out
    assert '| fusion − fusion, paired, median of 6 pairs (6-epoch study) | 0.0145 | 5 |' in out
    for title in ('**Vindr-like preset', '**Paper raters p = 0.7, question (b)**', '**Ablations**'):
        assert title in out
    assert '| all methods equal | 1 |' in out and '| +0.02 | 1 |' in out
    strip = lambda text: [line for line in text.splitlines() if not line.startswith('(')]  # noqa: E731
    assert strip(out) == strip(second.stdout)  # the same numbers again (timing line aside)


@pytest.mark.parametrize(
    'args, code, message',
    [
        (('--sims', '10'), 2, 'need --sims >= 100'),
        (('--sd-scale', '0'), 2, '--sd-scale > 0'),
        (('--n1', '12'), 2, 'need 2 <= n1 <= n_min <= n_cap, got n1=12, n_min=10'),
        (('--paper', 'no/such.json'), 2, 'error: no/such.json: not a results.json'),
        # several settings in one file: the same method and seed twice, named with the file
        (('--paper', 'docs/results_medmnist.json'), 2, "results_medmnist.json: two runs of 'na'"),
    ],
)
def test_refuses_bad_input(args, code, message):
    proc = run_tool('study_design', *args)
    assert proc.returncode == code and message in proc.stderr, proc.stderr[-2000:]
