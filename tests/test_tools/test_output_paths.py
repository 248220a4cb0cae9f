"""Every tool refuses an output path it cannot write before doing any work (exit 2,
argparse message naming the flag), instead of a traceback after the work."""

from __future__ import annotations

import pytest

from tests.test_tools.run_tool import run_tool

# (tool, argv with {file} = an existing file and {dir} = an existing folder, message)
CASES = [
    # folders given where a file is written
    pytest.param('fuse_annotations', ['in.json', '{dir}'], 'output {dir} is a folder', id='fuse'),
    pytest.param('test', ['c.py', 'w.pth', '--out', '{dir}'], '--out {dir} is a folder', id='test'),
    pytest.param(
        'test',
        ['c.py', 'w.pth', '--kaggle-submission', '{dir}'],
        '--kaggle-submission {dir} is a folder',
        id='test-kaggle',
    ),
    pytest.param('score_truth', ['a.json', 'g.json', '--out', '{dir}'], 'is a folder', id='score'),
    # files given where a folder is written
    pytest.param(
        'convert_vindr',
        ['--csv', 'x.csv', '--skip-images', '--size-table', 's.csv', '--out', '{file}'],
        '--out {file} is an existing file',
        id='convert-vindr',
    ),
    pytest.param('train', ['c.py', '--work-dir', '{file}'], 'is an existing file', id='train'),
    pytest.param(
        'test', ['c.py', 'w.pth', '--work-dir', '{file}'], 'is an existing file', id='test-workdir'
    ),
    pytest.param(
        'analyze_raters', ['a.json', '--out', '{file}'], 'is an existing file', id='analyze'
    ),
    pytest.param(
        'ensemble_predictions',
        ['p.json', '--gt', 'g.json', '--out-dir', '{file}'],
        '--out-dir {file} is an existing file',
        id='ensemble',
    ),
    pytest.param('make_medmnist', ['--out', '{file}'], 'is an existing file', id='medmnist'),
    pytest.param('browse_dataset', ['c.py', '--out', '{file}'], 'is an existing file', id='browse'),
    # a path under an existing file
    pytest.param(
        'fuse_annotations', ['in.json', '{file}/x.json'], '{file} is a file, not a folder', id='sub'
    ),
]


@pytest.mark.parametrize('name,argv,msg', CASES)
def test_unwritable_output_is_refused(tmp_path, name, argv, msg):
    existing = tmp_path / 'exists.txt'
    existing.write_text('keep me')
    fill = dict(file=str(existing), dir=str(tmp_path))
    proc = run_tool(name, *(a.format(**fill) for a in argv))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert msg.format(**fill) in proc.stderr
    assert existing.read_text() == 'keep me'
