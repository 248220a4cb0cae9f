"""The main job (`make demo`): MED-MNIST (cpu preset) -> WBF fusion -> WBF+EARL -> mAP report.

    python tools/demo.py [--epochs 20] [--seed 0] [--data data/medmnist_cpu]
        [--work-dir work_dirs/demo] [--quick]

Each step prints what it does; training shows mmengine's progress lines with an ETA. The
data are generated once (same seed -> same bytes) and reused; the run writes
``WORK_DIR/report.json`` and ``WORK_DIR/report.md``.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import subprocess
import sys
import time

from _common import child_env, filter_third_party_warnings, medmnist_cfg_options

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/medmnist/yolox_nano_wbf-earl_20e_medmnist-cpu.py'


def _step(title: str) -> None:
    print(f'\n=== {title} ===', flush=True)


def _run(args: list[str]) -> None:
    env = child_env(ROOT)
    env.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
    print('$', ' '.join(args), flush=True)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'demo: step failed with exit code {proc.returncode}: {" ".join(args)}')


def main(argv=None) -> None:
    filter_third_party_warnings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--data', default='data/medmnist_cpu', help='MED-MNIST directory')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument(
        '--epochs',
        type=int,
        default=12,
        help='training epochs (12 keeps the demo under 15 min on 2 cores; the config says 20)',
    )
    p.add_argument('--seed', type=int, default=0, help='data and training seed')
    p.add_argument('--quick', action='store_true', help='2 epochs: a smoke run of the pipeline')
    args = p.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    t0 = time.time()

    _step('1/4 MED-MNIST, cpu preset (3 simulated raters, p = 0.8)')
    if osp.isfile(osp.join(ROOT, args.data, 'meta.json')):
        print(f'reusing {args.data} (delete it to regenerate)')
    else:
        _run(
            [
                'tools/make_medmnist.py',
                '--preset',
                'cpu',
                '--out',
                args.data,
                '--seed',
                str(args.seed),
            ]
        )

    _step('2/4 truth inference: WBF over the raters, agreement c = T/R')
    os.makedirs(osp.join(ROOT, args.work_dir), exist_ok=True)
    _run(
        [
            'tools/fuse_annotations.py',
            osp.join(args.data, 'train.json'),
            osp.join(args.work_dir, 'train_fused_wbf.json'),
            '--method',
            'wbf',
            '--iou-thr',
            '0.4',
            '--confidence',
            'agreement_ratio',
        ]
    )

    _step(f'3/4 train YOLOX (2.2 M params) with WBF + EARL, {epochs} epochs')
    opts = medmnist_cfg_options(args.data, epochs, args.seed)
    _run(['tools/train.py', CONFIG, '--work-dir', args.work_dir, '--cfg-options', *opts])

    _step('4/4 evaluate on the gold test set (1,000 images, never seen digits)')
    ckpt = osp.join(args.work_dir, f'epoch_{epochs}.pth')
    report = osp.join(args.work_dir, 'report.json')
    md = osp.splitext(report)[0] + '.md'
    # Both named: a second demo in the same work dir replaces its own report.md.
    _run(
        [
            'tools/test.py',
            CONFIG,
            ckpt,
            '--work-dir',
            args.work_dir,
            '--out',
            report,
            '--out',
            md,
            '--cfg-options',
            *opts,
        ]
    )
    md = osp.join(ROOT, md)
    print()
    with open(md) as f:
        print(f.read())
    print(f'demo finished in {(time.time() - t0) / 60:.1f} min; report: {report} and {md}')


if __name__ == '__main__':
    main()
