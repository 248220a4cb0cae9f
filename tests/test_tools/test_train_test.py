"""tools/train.py -> --resume -> tools/test.py on a tiny generated COCO set (RetinaNet-R18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_data import make_tiny_coco, tiny_retinanet_config

ROOT = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, timeout=300):
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=str(ROOT),
        EARL_MMDET_KEY_FILE=str(tmp_path / 'key'),
    )
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def test_train_resume_test(tmp_path):
    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    work = str(tmp_path / 'work')
    cfg = tiny_retinanet_config(data, work, max_epochs=1)

    _run(['tools/train.py', cfg, '--work-dir', work], tmp_path)
    assert (Path(work) / 'epoch_1.pth').is_file()
    assert (Path(work) / '.earl_trusted_checkpoints.json').is_file()

    # Resume: torch >= 2.6 would refuse mmengine's own checkpoint without our loader.
    log = _run(
        [
            'tools/train.py',
            cfg,
            '--work-dir',
            work,
            '--resume',
            '--cfg-options',
            'train_cfg.max_epochs=2',
        ],
        tmp_path,
    )
    assert 'resumed epoch: 1' in log.replace('resumed epoch:1', 'resumed epoch: 1'), log[-3000:]
    assert (Path(work) / 'epoch_2.pth').is_file()

    out = tmp_path / 'report' / 'report.json'
    log = _run(
        [
            'tools/test.py',
            cfg,
            str(Path(work) / 'epoch_2.pth'),
            '--work-dir',
            work,
            '--out',
            str(out),
        ],
        tmp_path,
    )
    report = json.loads(out.read_text())
    assert {'coco/mAP_40', 'coco/mAP'} <= set(report['metrics'])
    assert 'per_class' in report['tables']
    assert out.with_suffix('.md').is_file()

    preds = tmp_path / 'preds.pkl'
    sub = tmp_path / 'submission.csv'
    _run(
        [
            'tools/test.py',
            cfg,
            str(Path(work) / 'epoch_2.pth'),
            '--work-dir',
            work,
            '--out',
            str(preds),
            '--kaggle-submission',
            str(sub),
        ],
        tmp_path,
    )
    assert preds.stat().st_size > 0
    lines = sub.read_text().splitlines()
    assert lines[0] == 'image_id,PredictionString'
    assert sorted(line.split(',')[0] for line in lines[1:]) == [f'img_{i:03d}' for i in range(4)]


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path):
    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    work = str(tmp_path / 'work')
    cfg = tiny_retinanet_config(data, work, max_epochs=1)
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PORT='29613',
        PYTHON=sys.executable,
        EARL_MMDET_KEY_FILE=str(tmp_path / 'key'),
    )
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (Path(work) / 'epoch_1.pth').is_file()
