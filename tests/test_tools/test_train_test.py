"""tools/train.py -> --resume -> tools/test.py on a tiny generated COCO set (RetinaNet-R18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_tools.run_tool import free_port
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

    def run_test(*outputs):
        checkpoint = str(Path(work) / 'epoch_2.pth')
        return _run(['tools/test.py', cfg, checkpoint, '--work-dir', work, *outputs], tmp_path)

    out = tmp_path / 'report' / 'report.json'
    run_test('--out', str(out))
    report = json.loads(out.read_text())
    assert {'coco/mAP_40', 'coco/mAP'} <= set(report['metrics'])
    assert 'per_class' in report['tables']
    assert out.with_suffix('.md').is_file()

    preds = tmp_path / 'preds.pkl'
    sub = tmp_path / 'submission.csv'
    run_test('--out', str(preds), '--kaggle-submission', str(sub))
    assert preds.stat().st_size > 0
    lines = sub.read_text().splitlines()
    assert lines[0] == 'image_id,PredictionString'
    assert sorted(line.split(',')[0] for line in lines[1:]) == [f'img_{i:03d}' for i in range(4)]


def test_test_tool_refuses_code_in_url_checkpoint(tmp_path):
    """`tools/test.py CONFIG https://.../x.pth`: the copy torch.hub cached must not run."""
    import torch

    from tests.test_engine.test_checkpoint import _Evil

    data = make_tiny_coco(tmp_path / 'data', num_images=2)
    work = str(tmp_path / 'work')
    cfg = tiny_retinanet_config(data, work, max_epochs=1)
    marker = tmp_path / 'marker.txt'
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    torch.save({'state_dict': {}, 'meta': _Evil(str(marker))}, cache / 'x.pth')
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=str(ROOT),
        EARL_MMDET_KEY_FILE=str(tmp_path / 'key'),
        TORCH_HOME=str(tmp_path / 'torch'),
    )
    env.pop('EARL_MMDET_ALLOW_UNSAFE_LOAD', None)
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', cfg, 'https://example.com/x.pth', '--work-dir', work],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert 'Refusing to fully unpickle checkpoint' in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists()


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path):
    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    work = str(tmp_path / 'work')
    cfg = tiny_retinanet_config(data, work, max_epochs=1)
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PORT=free_port(),
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


def _dist(script: str, args: list[str], tmp_path, port: str) -> str:
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PORT=port,
        PYTHON=sys.executable,
        EARL_MMDET_KEY_FILE=str(tmp_path / 'key'),
    )
    proc = subprocess.run(
        ['bash', script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path):
    """Same total batch (1 x 2 images vs 2 x 1 image), same seed, same data.

    Evaluation: the same checkpoint scored by 2 gloo processes and by 1 process gives the
    identical report (the metric gathers every rank's predictions). Training: the two runs
    cannot be bit-identical (BatchNorm sees 1 image per process instead of 2, and gradient
    all-reduce sums in another order), so their metrics must agree within 0.05 mAP@0.4.
    Caveat: two epochs on 8 tiny images leave mAP at 0 for both, so here this is a smoke
    test of the 2-process train/test path, not evidence of parity (see docs/benchmarks.md).
    """
    data = make_tiny_coco(tmp_path / 'data', num_images=8)
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    cfg1 = tiny_retinanet_config(data, one, max_epochs=2)
    cfg2 = tiny_retinanet_config(data, two, max_epochs=2)
    _run(['tools/train.py', cfg1, '--work-dir', one, '--cfg-options',
          'randomness.seed=0'], tmp_path)  # fmt: skip
    _dist('tools/dist_train.sh', [cfg2, '2', '--work-dir', two, '--cfg-options',
          'train_dataloader.batch_size=1', 'randomness.seed=0'], tmp_path, free_port())  # fmt: skip

    reports = {}
    for name, work, cfg in (('one', one, cfg1), ('two', two, cfg2)):
        ckpt = str(Path(work) / 'epoch_2.pth')
        single = tmp_path / f'{name}_single.json'
        _run(['tools/test.py', cfg, ckpt, '--work-dir', work, '--out', str(single)], tmp_path)
        multi = tmp_path / f'{name}_multi.json'
        _dist('tools/dist_test.sh', [cfg, ckpt, '2', '--work-dir', work, '--out', str(multi)],
              tmp_path, free_port())  # fmt: skip
        a = json.loads(single.read_text())['metrics']
        b = json.loads(multi.read_text())['metrics']
        assert a == b, (name, a, b)
        reports[name] = a
    print('gloo parity:', {k: {m: round(v, 4) for m, v in r.items()} for k, r in reports.items()})
    assert abs(reports['one']['coco/mAP_40'] - reports['two']['coco/mAP_40']) <= 0.05, reports
