"""Shared helpers of the earl-mmdet entry points (kept tiny: config + runner set-up)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import os.path as osp
import sys
import warnings

# Run from a checkout without `pip install -e .`.
_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


# Deprecation warnings that third-party code (mmdet, mmengine) raises on every run and that
# a user of these tools cannot act on: (message regex, category, module regex of the code
# the warning is attributed to, '' = any). Only these are hidden; every other warning,
# earl-mmdet's own included, still shows.
THIRD_PARTY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # mmdet 3.3 (CSPDarknet, SimOTA, SE layers) calls torch.cuda.amp.autocast(enabled=False)
    (r'`?torch\.cuda\.amp\.autocast\(args\.\.\.\)`? is deprecated', FutureWarning, r'mmdet\.'),
    # mmdet's prior generators call torch.meshgrid without indexing= (torch warns inside)
    (r'torch\.meshgrid: in an upcoming release', UserWarning, r'torch\.functional'),
    # mmengine imports pkg_resources (setuptools >= 80); attributed to mmengine or importlib
    (r'pkg_resources is deprecated as an API', UserWarning, ''),
    # mmdet's all_reduce_dict (SyncNormHook, every distributed epoch) warns on every call
    (
        r'group` is deprecated\. Currently only supports NCCL',
        UserWarning,
        r'mmdet\.utils\.dist_utils',
    ),
    (r'Note: the "to_float" is True', UserWarning, r'mmdet\.utils\.dist_utils'),
)


def filter_third_party_warnings() -> None:
    """Hide ``THIRD_PARTY_WARNINGS`` in this process (its forked workers inherit it).

    The tools call it first thing in ``main``; child processes they start are tools too
    and call it themselves.
    """
    for message, category, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


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
    # A private stand-in for the package `earl_mmdet.core` (its __init__ is not run), so
    # that relative imports between core modules (`from .vindr import ...`) resolve, and
    # pickles never import the real package.
    pkg_name = '_earl_mmdet_core'
    if pkg_name not in sys.modules:
        pkg = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec(pkg_name, None, is_package=True)
        )
        pkg.__path__ = [osp.join(spec.submodule_search_locations[0], 'core')]
        sys.modules[pkg_name] = pkg
    return importlib.import_module(f'{pkg_name}.{name}')


def add_normalize_rater_ids_flag(parser) -> None:
    """``--normalize-rater-ids``: the tools that read rater files offer the same repair."""
    parser.add_argument(
        '--normalize-rater-ids',
        action='store_true',
        help='merge rater ids that differ only by case, surrounding space or Unicode form '
        '(counted); default: such ids are an error',
    )


def check_output_paths(parser, files=(), folders=()) -> None:
    """``parser.error`` (exit 2, no traceback) for an output path that cannot be written.

    Args:
        parser (argparse.ArgumentParser): the tool's parser.
        files (Iterable[tuple[str, str | None]]): ``(flag, path)`` of output files; None
            paths are skipped. A folder there is an error.
        folders (Iterable[tuple[str, str | None]]): ``(flag, path)`` of output folders. An
            existing file there is an error.

    A path under an existing *file* (``out.txt/sub``) is an error either way.
    """
    for kind, items in (('file', files), ('folder', folders)):
        for flag, path in items:
            if path is None:
                continue
            if kind == 'file' and osp.isdir(path):
                parser.error(f'{flag} {path} is a folder; give the name of the file to write')
            if kind == 'folder' and osp.exists(path) and not osp.isdir(path):
                parser.error(f'{flag} {path} is an existing file; {flag} names a folder')
            parent = osp.dirname(osp.abspath(path))
            while not osp.exists(parent):
                parent = osp.dirname(parent)
            if not osp.isdir(parent):
                parser.error(f'{flag} {path}: {parent} is a file, not a folder')


def read_config(path: str, cfg_options: dict | None, import_custom_modules: bool = True):
    """``Config.fromfile`` + ``--cfg-options``, where ``data_root=DIR`` moves the whole config.

    A config's ``data_root`` variable is already spelled out in its dataset and evaluator
    entries when the file is read, so mmengine's plain ``data_root=DIR`` override would
    change nothing else. Here every ``data_root`` equal to the config's own and every
    ``*ann_file`` under it move to ``DIR`` first; other ``--cfg-options`` still win.
    """
    from mmengine.config import Config

    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path, import_custom_modules=import_custom_modules)
    if cfg_options:
        old = cfg.get('data_root')
        new = cfg_options.get('data_root')
        if isinstance(old, str) and old and isinstance(new, str) and new:
            _move_data_root(cfg._cfg_dict, old.rstrip('/') + '/', new.rstrip('/') + '/')
        cfg.merge_from_dict(cfg_options)
    return cfg


def _move_data_root(node, old: str, new: str) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, str):
            if key == 'data_root' and value.rstrip('/') + '/' == old:
                node[key] = new
            elif isinstance(key, str) and key.endswith('ann_file') and value.startswith(old):
                node[key] = new + value[len(old) :]
        elif isinstance(value, (dict, list)):
            _move_data_root(value, old, new)


def load_config(path: str, cfg_options: dict | None, launcher: str, check: str | None = None):
    """Load a config, apply overrides and make it runnable on this machine.

    ``check`` (``'train'`` or ``'test'``) first checks that the data that run reads exist
    (``check_data``), so that a missing dataset is one line, not a traceback after the log.
    """
    cfg = read_config(path, cfg_options, import_custom_modules=False)
    if check is not None:
        check_data(cfg, path, check)

    import torch

    import earl_mmdet  # noqa: F401  (registers components + safe checkpoint loading)

    if cfg.get('custom_imports'):  # what Config.fromfile would have imported
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg['custom_imports'])
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


def _data_paths(cfg, mode: str) -> list[tuple[str, str, str]]:
    """(what, path, kind) of the annotation files / image folders a run in ``mode`` reads."""
    parts = ['train', 'val'] if mode == 'train' else ['test']
    if mode == 'train' and not (cfg.get('val_cfg') and cfg.get('val_dataloader')):
        parts = ['train']
    out: list[tuple[str, str, str]] = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            ann = node.get('ann_file')
            root = node.get('data_root') or ''
            if isinstance(ann, str) and ann:
                out.append((where, osp.join(root, ann), 'annotation file'))
                img = (node.get('data_prefix') or {}).get('img')
                if isinstance(img, str) and img:
                    out.append((where, osp.join(root, img), 'image folder'))
            for k, v in node.items():
                if k != 'pipeline':
                    walk(v, where)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, where)

    for part in parts:
        loader = cfg.get(f'{part}_dataloader')
        if loader:
            walk(loader.get('dataset'), f'{part}_dataloader')
        evaluator = cfg.get(f'{part}_evaluator')
        if evaluator:
            walk(evaluator, f'{part}_evaluator')
    return out


def check_data(cfg, config_path: str, mode: str) -> None:
    """Exit with one line naming the first annotation file / image folder that is missing.

    Raises:
        SystemExit: ``error: PATH: <kind> not found (<part> of CONFIG); <what to do>``.
    """
    for where, path, kind in _data_paths(cfg, mode):
        exists = osp.isfile(path) if kind == 'annotation file' else osp.isdir(path)
        if exists:
            continue
        if 'vindr' in config_path.lower():
            hint = (
                'VinDr-CXR: download and convert it as in docs/vindr.md, or try the path on '
                'a generated sample: python tools/make_vindr_sample.py --out data/vindr_sample '
                '(README, "Try the VinDr path without the dataset")'
            )
        elif 'medmnist' in config_path.lower():
            hint = 'MED-MNIST: generate it with tools/make_medmnist.py (docs/medmnist.md)'
        else:
            hint = 'prepare the data the config names'
        raise SystemExit(
            f'error: {path}: {kind} not found ({where} of {config_path}). {hint}; or point the '
            'config at your data with --cfg-options data_root=DIR/'
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
