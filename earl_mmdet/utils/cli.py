"""What the project's entry points (``tools/train.py``, ``tools/test.py``, ...) need to build
and run a Runner: config loading with registration, the runtime patches, the Runner flags.

The framework-free helpers (argument and path checks, config reading) are in
:mod:`earl_core.cli` and are re-exported here, so ``earl_mmdet.utils.cli`` offers both.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from earl_core.cli import *  # noqa: F403  (the framework-free helpers, re-exported)
from earl_core.cli import __all__ as _core_all
from earl_core.cli import check_data, default_work_dir, read_config

__all__ = [
    *_core_all,
    'prepare_runtime',
    'load_config',
    'CfgOptionsAction',
    'add_runner_args',
    'build_runner',
]


def prepare_runtime() -> None:
    """What the project's entry points apply before they build a Runner.

    Installs the safe checkpoint loaders (:func:`earl_mmdet.engine.install_safe_loaders`)
    and, only where CUDA is used with an mmcv built without CUDA ops, the CPU fallback of
    NMS (:func:`earl_mmdet.utils.patch_nms_for_cpu_only_mmcv`). Importing ``earl_mmdet``
    applies neither.
    """
    from earl_mmdet.engine import install_safe_loaders
    from earl_mmdet.utils.mmcv_compat import patch_nms_for_cpu_only_mmcv

    install_safe_loaders()
    patch_nms_for_cpu_only_mmcv()


def load_config(path: str, cfg_options: dict | None, launcher: str, check: str | None = None):
    """Load a config, apply overrides and make it runnable on this machine.

    ``check`` (``'train'`` or ``'test'``) first checks that the data that run reads exist
    (``check_data``), so that a missing dataset is one line, not a traceback after the log.
    Then registers the components, runs :func:`prepare_runtime` and honours the config's
    ``allow_unsafe_checkpoint_load``.
    """
    cfg = read_config(path, cfg_options, import_custom_modules=False)
    if check is not None:
        check_data(cfg, path, check)

    import torch

    import earl_mmdet  # noqa: F401  (registers the components)

    if cfg.get('custom_imports'):  # what Config.fromfile would have imported
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg['custom_imports'])
    prepare_runtime()
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        # No CUDA: nccl cannot start; gloo runs the same job on CPU processes.
        env_cfg = cfg.get('env_cfg', {}) or {}
        dist_cfg = dict(env_cfg.get('dist_cfg', {}) or {})
        dist_cfg['backend'] = 'gloo'
        env_cfg['dist_cfg'] = dist_cfg
        cfg.env_cfg = env_cfg
        # mmengine passes device_ids=[LOCAL_RANK] to DDP, which CPU modules refuse; a value
        # in the config wins over that default.
        wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
        wrapper.setdefault('device_ids', None)
        cfg.model_wrapper_cfg = wrapper
        if launcher == 'pytorch':
            _init_cpu_process_group()
    if cfg.get('allow_unsafe_checkpoint_load', False):
        from earl_mmdet.engine import allow_unsafe_checkpoint_load

        allow_unsafe_checkpoint_load(True)
    return cfg


def _init_cpu_process_group() -> None:
    """Start the gloo process group from torchrun's env ourselves.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which a
    CPU build of torch lacks; the Runner skips ``init_dist`` when a group already exists.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            init_method='env://',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
        )


# Whitespace between two characters of one item (not next to a comma or bracket): mmengine
# would delete it ('[my dir, b]' -> ['mydir', 'b']).
_SPACE_IN_ITEM = re.compile(r'[^\s,\[\]()]\s+[^\s,\[\]()]')


class CfgOptionsAction(argparse.Action):
    """``--cfg-options KEY=VALUE ...`` parsed as mmengine's ``DictAction`` does, except that
    a space inside a value is kept, or refused where it cannot be.

    ``DictAction`` deletes every space of a value (it allows ``KEY=[1, 2]``), so
    ``data_root='/data/my scans/'`` would silently become ``/data/myscans/``: a run could
    read another folder. Here a plain value (no list syntax) is kept as written, quotes
    around it removed; a list whose items contain spaces is refused (mmengine cannot
    parse it); lists with spaces only around commas and brackets parse as before.
    """

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: D102
        from mmengine.config import DictAction

        options = dict(getattr(namespace, self.dest, None) or {})
        for kv in values or ():
            key, sep, val = kv.partition('=')
            if not sep or not key:
                parser.error(f'{option_string}: expected KEY=VALUE, got {kv!r}')
            bare = val.strip('\'"')  # as DictAction strips quotes
            if not any(ch.isspace() for ch in bare):
                options[key] = DictAction._parse_iterable(val)
                continue
            listed = bare.startswith(('[', '(')) or ',' in bare
            if not listed:  # one value: keep its spaces (a path such as 'my scans/')
                options[key] = DictAction._parse_int_float_bool(bare)
            elif _SPACE_IN_ITEM.search(bare):
                parser.error(
                    f'{option_string}: {kv!r}: an item of this list holds a space, which '
                    "mmengine's list parser would delete; give that key in the config file"
                )
            else:
                options[key] = DictAction._parse_iterable(val)
        setattr(namespace, self.dest, options)


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank``: mmdet's flags of train/test."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config keys (KEY=VALUE; spaces in a value are kept)',
    )
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def build_runner(cfg: Any, config_path: str, work_dir: str | None):
    """Set ``cfg.work_dir`` (the flag, else the config's, else mmdet's default) and build
    the Runner (``runner_type`` when the config names one)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
