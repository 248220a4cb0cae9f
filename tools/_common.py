"""Shared helpers of the earl-mmdet entry points (kept tiny: config + runner set-up)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import os.path as osp
import sys
import types

# Run from a checkout without `pip install -e .`.
_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def import_core(name: str):
    """``earl_mmdet.core.<name>`` without running ``earl_mmdet/__init__.py``.

    The package ``__init__`` imports torch and mmdet to register the adapters (~8 s of CPU,
    measured); this tool needs only a numpy module of the core. Reuse the package if it is
    already imported; else locate it (``find_spec`` does not execute it) and load the file.
    """
    if 'earl_mmdet' in sys.modules:
        return importlib.import_module(f'earl_mmdet.core.{name}')
    spec = importlib.util.find_spec('earl_mmdet')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            'error: earl_mmdet not found; run from the repository root or pip install -e .'
        )
    # A stand-in package for earl_mmdet/core (its __init__ is not run), under a private
    # name (pickles must not import the package), so that relative imports between core
    # modules (``from .medmnist import ...``) resolve to the same files.
    pkg_name = '_earl_mmdet_core'
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [osp.join(spec.submodule_search_locations[0], 'core')]
        sys.modules[pkg_name] = pkg
    return importlib.import_module(f'{pkg_name}.{name}')


def load_config(path: str, cfg_options: dict | None, launcher: str):
    """Load a config, apply overrides and make it runnable on this machine."""
    import torch
    from mmengine.config import Config

    import earl_mmdet  # noqa: F401  (registers components + safe checkpoint loading)

    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def set_local_rank(local_rank: int | None) -> None:
    if 'LOCAL_RANK' not in os.environ and local_rank is not None:
        os.environ['LOCAL_RANK'] = str(local_rank)


def medmnist_cfg_options(data_root: str, epochs: int, seed: int, val: bool = True) -> list[str]:
    """``--cfg-options`` that point a configs/medmnist config at ``data_root`` and set its
    schedule (``epochs``, with the cosine phase after the 1 warm-up epoch) and seed.

    ``val=False`` switches validation off (no val loop, loader or evaluator).
    """
    root = data_root.rstrip('/') + '/'
    opts = [
        f'data_root={root}',
        f'train_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'test_evaluator.ann_file={root}test.json',
    ]
    if val:
        opts += [
            f'val_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={root}val.json',
        ]
    else:
        opts += ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    return opts + [
        f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'param_scheduler.1.end={epochs}',
        f'param_scheduler.1.T_max={max(epochs - 1, 1)}',
        f'randomness.seed={seed}',
    ]
