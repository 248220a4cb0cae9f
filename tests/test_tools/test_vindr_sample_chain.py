"""The README's "Try the VinDr path without the dataset" commands, run as written on a
tiny sample: sample -> convert -> tools/dist_train.sh (2 gloo processes) -> tools/test.py
report + Kaggle submission (slow: ~1 min on 2 cores)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_tools.run_tool import free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = '## Try the VinDr path without the dataset'


def readme_commands() -> list[str]:
    """The section's bash block: one string per command (continuations joined)."""
    text = (ROOT / 'README.md').read_text()
    block = text.split(SECTION, 1)[1].split('```bash\n', 1)[1].split('```', 1)[0]
    block = block.replace('\\\n', ' ')
    return [
        ' '.join(line.split())
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith(('#', 'source '))
    ]


def test_readme_block_is_the_whole_path():
    cmds = readme_commands()
    assert [c.split()[:2] for c in cmds] == [
        ['python', 'tools/make_vindr_sample.py'],
        ['python', 'tools/convert_vindr.py'],
        ['python', 'tools/convert_vindr.py'],
        ['tools/dist_train.sh', 'configs/earl_yolo_vindr.py'],
        ['python', 'tools/test.py'],
    ]


@pytest.mark.slow
def test_readme_vindr_sample_chain(tmp_path):
    data, work = tmp_path / 'vindr_sample', tmp_path / 'work'
    env = dict(
        os.environ,
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS='1',
        PORT=free_port(),
        EARL_MMDET_KEY_FILE=str(tmp_path / 'key'),
    )
    for cmd in readme_commands():
        # a tiny sample and one epoch; everything else exactly as the README says
        cmd = cmd.replace('data/vindr_sample', str(data)).replace(
            'work_dirs/vindr_sample', str(work)
        )
        if cmd.startswith('python tools/make_vindr_sample.py'):
            cmd += ' --images 6 --test-images 3'
        cmd = re.sub(r'max_epochs=\d+', 'max_epochs=1', cmd).replace('epoch_2.pth', 'epoch_1.pth')
        proc = subprocess.run(
            ['bash', '-c', cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, (cmd, proc.stdout[-3000:] + proc.stderr[-5000:])
        out = proc.stdout + proc.stderr
        assert 'FutureWarning' not in out, cmd

    report = json.loads((work / 'report.json').read_text())
    assert {'config', 'checkpoint', 'metrics', 'tables'} <= set(report)
    assert {'coco/mAP_40', 'coco/mAP'} <= set(report['metrics'])
    assert 'per_class' in report['tables']
    assert (work / 'report.md').is_file()
    with open(work / 'submission.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    test_ids = {p.stem for p in (data / 'test').glob('*.dicom')}
    assert len(test_ids) == 3
    assert sorted(r['image_id'] for r in rows) == sorted(test_ids)  # one row per test image
    assert all(r['PredictionString'].strip() for r in rows)  # at least 'No finding'
