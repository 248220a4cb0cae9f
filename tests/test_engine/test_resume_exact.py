"""A run stopped and resumed trains exactly like one never stopped (tools/train.py)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_tools.run_tool import free_port
from tests.tiny_data import make_tiny_coco

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / 'configs/medmnist/yolox_nano_wbf-earl_20e_medmnist-cpu.py'


def _tiny_config(
    data: dict[str, str], path: Path, num_workers: int, base: Path = BASE, extra: str = ''
) -> str:
    """A MED-MNIST cpu preset (default: EMA, EARL head, random flips) on the tiny set;
    ``extra`` (config lines) goes in before ``default_hooks``."""
    root = data['root'] + '/'
    text = f"""
_base_ = {str(base)!r}
metainfo = dict(classes=('c0', 'c1', 'c2'))
model = dict(bbox_head=dict(num_classes=3))
train_dataloader = dict(
    batch_size=2, num_workers={num_workers}, persistent_workers={num_workers > 0},
    dataset=dict(data_root={root!r}, metainfo=metainfo, ann_file='multi.json',
                 data_prefix=dict(img='images/')))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={root!r}, metainfo=metainfo, ann_file='gold.json',
                 data_prefix=dict(img='images/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={data['gold']!r})
test_evaluator = val_evaluator
{extra}default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
log_processor = dict(window_size=1)
"""
    path.write_text(text)
    return str(path)


def _train(cfg: str, work: str, epochs: int, key: Path, *extra, seed='0', procs: int = 1) -> None:
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=str(ROOT),
        EARL_MMDET_KEY_FILE=str(key),
        PORT=free_port(),
        PYTHON=sys.executable,
    )
    # The stopped run differs from the straight one in max_epochs only: a resumed run keeps
    # the param schedulers of its checkpoint (mmengine restores their whole state).
    opts = [
        f'train_cfg.max_epochs={epochs}',
        'train_cfg.val_interval=1',
        'param_scheduler.1.end=3',
        'param_scheduler.1.T_max=2',
        f'randomness.seed={seed}',
    ]
    if procs == 1:
        cmd = [sys.executable, 'tools/train.py', cfg]
    else:
        cmd = ['bash', 'tools/dist_train.sh', cfg, str(procs)]
    proc = subprocess.run(
        [*cmd, '--work-dir', work, *extra, '--cfg-options', *opts],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert 'RandomStateHook: the' not in proc.stdout + proc.stderr  # no mismatch warning


def _logged(work: str) -> dict[tuple[int, int], dict[str, float]]:
    """(epoch, iter) -> logged training scalars; and 'val' entries keyed (epoch, -1)."""
    out = {}
    for path in glob.glob(os.path.join(work, '*', 'vis_data', 'scalars.json')):
        for line in Path(path).read_text().splitlines():
            rec = json.loads(line)
            if 'loss' in rec:
                out[(rec['epoch'], rec['iter'])] = {k: v for k, v in rec.items() if 'loss' in k}
            elif any(k.startswith('coco/') for k in rec):
                out[(rec['step'], -1)] = {k: v for k, v in rec.items() if k.startswith('coco/')}
    return out


def _weights(path: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return {**ckpt['state_dict'], **{f'ema.{k}': v for k, v in ckpt['ema_state_dict'].items()}}


@pytest.mark.slow
@pytest.mark.parametrize(
    'num_workers,seed,procs',
    [
        (0, '0', 1),  # loading in the main process
        (2, '0', 1),  # 2 persistent workers
        (2, 'None', 1),  # no seed in the config: mmengine draws one per run, the resume too
        (2, '0', 2),  # tools/dist_train.sh, 2 gloo processes with 2 workers each
    ],
)
def test_resume_equals_straight_run(tmp_path, num_workers, seed, procs):
    data = make_tiny_coco(tmp_path / 'data', num_images=8)
    cfg = _tiny_config(data, tmp_path / 'cfg.py', num_workers)
    key = tmp_path / 'key'
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    _train(cfg, resumed, 2, key, seed=seed, procs=procs)
    drawn = str(torch.load(f'{resumed}/epoch_2.pth', weights_only=False)['meta']['seed'])
    _train(cfg, straight, 3, key, seed=drawn, procs=procs)  # seed None: the one it drew
    _train(cfg, resumed, 3, key, '--resume', seed=seed, procs=procs)  # None: draws another

    a, b = _logged(straight), _logged(resumed)
    after = sorted(k for k in a if k[0] == 3)
    assert len(after) == 1 + 4 // procs  # epoch 3's iterations + its validation
    assert {k: a[k] for k in after} == {k: b[k] for k in after}
    wa, wb = _weights(f'{straight}/epoch_3.pth'), _weights(f'{resumed}/epoch_3.pth')
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
