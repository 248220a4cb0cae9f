"""First contact: the card's commands without the data print one clear line, up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_tools.run_tool import free_port

ROOT = Path(__file__).resolve().parents[2]
CARD = 'configs/earl_yolo_vindr.py'


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable, PORT=free_port())
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    'cmd, missing',
    [
        # the card's distributed command: checked once, before torchrun starts
        (['bash', 'tools/dist_train.sh', CARD, '2'], 'train.json: annotation file'),
        # single-process training and testing
        ([sys.executable, 'tools/train.py', CARD], 'train.json: annotation file'),
        ([sys.executable, 'tools/test.py', CARD, 'x.pth'], 'test.json: annotation file'),
        (['bash', 'tools/dist_test.sh', CARD, 'x.pth', '2'], 'test.json: annotation file'),
    ],
)
def test_missing_data_is_one_line(tmp_path, cmd, missing):
    root = tmp_path / 'nothing'
    proc = _run([*cmd, '--cfg-options', f'data_root={root}/'], tmp_path)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines[:20]
    assert lines[0].startswith(f'error: {root}/{missing} not found'), lines[0]
    assert 'docs/vindr.md' in lines[0] and 'tools/make_vindr_sample.py' in lines[0]


@pytest.mark.skipif((ROOT / 'data' / 'vindr' / 'train.json').exists(), reason='VinDr is here')
def test_the_card_command_as_typed(tmp_path):
    proc = _run(['bash', 'tools/dist_train.sh', CARD, '2'], tmp_path)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, lines[:20]
    assert lines[0].startswith('error: data/vindr/train.json: annotation file not found')
