"""tools/analyze_raters.py on a tiny multi-rater COCO file written to tmp_path."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_tools.run_tool import run_tool
from tests.test_tools.test_fuse_annotations import tiny_multirater, tool_help


def analyze(*args):
    """``python tools/analyze_raters.py ARGS``: its stdout; fails on a non-zero exit."""
    proc = run_tool('analyze_raters', *args)
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
    proc = run_tool('analyze_raters', tmp_path / 'missing.json', '--out', tmp_path / 'o')
    assert proc.returncode == 2 and 'not found' in proc.stderr


def test_help_subprocess():
    proc = tool_help('analyze_raters')
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


def crowd_file(path, n_raters=40, n_images=120, seed=0):
    """A multi-rater file: each image read by 3 of ``n_raters`` raters, one box each on
    one object (rater r{k} reads more images the smaller k is)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(3, n_raters + 3)
    names = [f'r{k:02d}' for k in range(n_raters)]
    images, anns = [], []
    for i in range(n_images):
        read_by = rng.choice(n_raters, 3, replace=False, p=p / p.sum())
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=100, height=100,
                           annotators=[names[r] for r in read_by]))  # fmt: skip
        for r in read_by:
            x = 20 + float(rng.normal(0, 1))
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1,
                             bbox=[x, 20, 30, 30], annotator_id=names[r]))  # fmt: skip
    path.write_text(json.dumps(dict(images=images, annotations=anns,
                                    categories=[dict(id=1, name='thing')])))  # fmt: skip
    return path, images


def png_size(path):
    """(width, height) of a PNG from its IHDR chunk."""
    data = path.read_bytes()
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def test_crowd_figures_and_tables_are_bounded(tmp_path):
    # 40 raters: the pairwise matrix, both figures and the per-pair table show the 30 who
    # read the most images, and say so; report.json keeps every pair of raters who read a
    # common image (and no other). The dense code drew 40 x 40 (0.55 inch per rater).
    pytest.importorskip('matplotlib')
    src, images = crowd_file(tmp_path / 'crowd.json')
    out = tmp_path / 'rep'
    stdout = analyze(src, '--out', out)
    rep = json.loads((out / 'report.json').read_text())
    pw = rep['pairwise_f1']
    read = {r: sum(r in im['annotators'] for im in images) for r in rep['raters']}
    assert rep['raters'] == [f'r{k:02d}' for k in range(40)] and len(pw['raters']) == 30
    assert min(read[r] for r in pw['raters']) >= max(
        read[r] for r in rep['raters'] if r not in pw['raters']
    )
    assert pw['shown'] == 'the 30 raters who read the most images, of 40'
    assert len(pw['matrix']) == 30 and all(len(row) == 30 for row in pw['matrix'])
    co_read = {
        tuple(sorted((a, b))) for im in images for a in im['annotators']
        for b in im['annotators'] if a != b
    }  # fmt: skip
    assert {(p['rater'], p['other']) for p in pw['pairs']} == co_read
    assert all(p['shared_images'] >= 1 for p in pw['pairs'])
    assert png_size(out / 'pairwise_f1.png')[0] <= 1.5 * 120 + 0.55 * 30 * 120 + 10
    assert 'the 30 raters who read the most images, of 40' in stdout
    shown = set(pw['raters'])
    table = [line for line in stdout.splitlines() if re.match(r'\| r\d\d -> r\d\d ', line)]
    assert table and all(
        line.split('|')[1].split(' -> ')[0].strip() in shown
        and line.split('|')[1].split(' -> ')[1].strip() in shown
        for line in table
    )


def test_old_tool_name_still_runs(src, tmp_path):
    # tools/analyze_annotators.py (until 0.2) keeps working until 0.3, with a FutureWarning
    out_old, out_new = tmp_path / 'old', tmp_path / 'new'
    proc = run_tool('analyze_annotators', src, '--out', out_old, '--no-plots')
    assert proc.returncode == 0, proc.stderr
    assert 'tools/analyze_annotators.py is deprecated' in proc.stderr
    assert 'tools/analyze_raters.py' in proc.stderr
    analyze(src, '--out', out_new, '--no-plots')
    assert (out_old / 'report.json').read_text() == (out_new / 'report.json').read_text()
