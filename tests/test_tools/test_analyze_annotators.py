"""tools/analyze_annotators.py on a tiny multi-rater COCO file written to tmp_path."""

from __future__ import annotations

import json

import pytest

from tests.test_tools.run_tool import run_tool
from tests.test_tools.test_fuse_annotations import tiny_multirater, tool_help


def analyze(*args):
    """``python tools/analyze_annotators.py ARGS``: its stdout; fails on a non-zero exit."""
    proc = run_tool('analyze_annotators', *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def src(tmp_path):
    return tiny_multirater(tmp_path / 'multi.json')


def test_report_files_and_values(src, tmp_path):
    out = tmp_path / 'rep'
    stdout = analyze(src, '--out', out, '--no-plots')
    rep = json.loads((out / 'report.json').read_text())
    assert rep['raters'] == ['R1', 'R2', 'R3']
    assert rep['num_images'] == 3 and rep['num_boxes'] == 5
    # images read / boxes drawn (see tiny_multirater's docstring)
    assert {r: (v['images_read'], v['boxes']) for r, v in rep['per_rater'].items()} == {
        'R1': (2, 1),
        'R2': (3, 2),
        'R3': (3, 2),
    }
    # R1 vs R2 on images 1-2: R1's cat matches R2's cat (IoU .818 > .5) -> F1 = 2*1/(1+1).
    f1 = rep['pairwise_f1']['matrix']
    assert f1[0][1] == pytest.approx(1.0)
    # R2 vs R3: image 3 dogs match (TP 1), image 1 cat vs dog do not: 2*1 / (2+2) = 0.5.
    assert f1[1][2] == pytest.approx(0.5)
    assert rep['pairwise_f1']['shared_images'][0] == [2, 2, 2]
    # R3 against the other two (mv of R1+R2 on image 1: their cat; on image 3 only R2 read
    # -> R2's dog): R3's far dog misses, R3's image-3 dog matches -> P = 1/2, R = 1/2.
    r3 = rep['per_rater']['R3']
    assert (r3['tp'], r3['precision'], r3['recall']) == (1, 0.5, 0.5)
    assert rep['em']['classes'] == ['cat', 'dog', 'no_obj']
    assert set(rep['krippendorff_alpha']) >= {'alpha', 'alpha_nominal', 'units'}
    assert '| rater | images read |' in stdout and "Krippendorff's alpha" in stdout
    assert (out / 'summary.md').read_text().startswith('# Rater report')
    assert not (out / 'pairwise_f1.png').exists()


def test_plots(src, tmp_path):
    pytest.importorskip('matplotlib')
    out = tmp_path / 'rep'
    analyze(src, '--out', out)
    for name in ('pairwise_f1.png', 'confusion.png'):
        data = (out / name).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 1000


def test_errors(tmp_path):
    proc = run_tool('analyze_annotators', tmp_path / 'missing.json', '--out', tmp_path / 'o')
    assert proc.returncode == 2 and 'not found' in proc.stderr


def test_help_subprocess():
    proc = tool_help('analyze_annotators')
    assert proc.returncode == 0 and '--out' in proc.stdout


def test_partner_statistics_in_report_and_summary(src, tmp_path):
    out = tmp_path / 'rep'
    analyze(src, '--out', out, '--no-plots')
    rep = json.loads((out / 'report.json').read_text())
    ps = rep['partner_statistics']
    assert ps['iou_thr'] == 0.4 and ps['overall']['boxes'] > 0
    assert {(p['rater'], p['other']) for p in ps['pairs']} <= {
        (a, b) for a in ('R1', 'R2', 'R3') for b in ('R1', 'R2', 'R3') if a != b
    }
    assert sum(rep['wbf_agreement']['counts'].values()) == rep['wbf_agreement']['fused_boxes']
    summary = (out / 'summary.md').read_text()
    assert '| rater -> other | boxes | partner rate |' in summary and 'WBF (IoU 0.4' in summary
