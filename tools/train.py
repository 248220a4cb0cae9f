"""Train a detector with earl-mmdet components (mmengine Runner; mmdet's flags).

python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
"""

from __future__ import annotations

import argparse

from _common import (
    add_runner_args,
    build_runner,
    check_output_paths,
    filter_third_party_warnings,
    load_config,
    set_local_rank,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a detector (earl-mmdet)')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='directory for logs and checkpoints')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision')
    p.add_argument('--auto-scale-lr', action='store_true', help='scale lr by total batch size')
    p.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in work-dir if no CKPT',
    )
    add_runner_args(p)
    args = p.parse_args(argv)
    check_output_paths(p, folders=[('--work-dir', args.work_dir)])
    set_local_rank(args.local_rank)
    return args


def main(argv=None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher, check='train')
    if args.amp:
        optim = cfg.optim_wrapper
        if optim.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            optim.type = 'AmpOptimWrapper'
            optim.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(
                f'{args.config}: --auto-scale-lr needs `auto_scale_lr = dict(enable=..., '
                'base_batch_size=...)` in the config'
            )
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # Sign the checkpoints this run writes, so that --resume may fully unpickle them (the
    # hook also installs the safe loaders, as load_config did); and store the random
    # generators' state in them, so that a resumed run continues exactly.
    hooks = list(cfg.get('custom_hooks', []) or [])
    for hook_type in ('TrustOwnCheckpointsHook', 'RandomStateHook'):
        if not any(h.get('type') == hook_type for h in hooks):
            hooks.append(dict(type=hook_type))
    cfg.custom_hooks = hooks

    build_runner(cfg, args.config, args.work_dir).train()


if __name__ == '__main__':
    main()
