"""What the entry points in ``tools/`` share: config loading, run set-up, argument checks.

This module imports only the standard library and :mod:`earl_mmdet.core.safe_output` (itself
standard library only) at import time (mmengine, torch and the rest of the package are
imported inside the functions that need them), so a tool that only
checks its arguments or a config stays fast. ``tools/_common.py`` loads it for the tools.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from ..core import safe_output

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

#: Dataset types whose config holds the ``fusion`` dict (wrappers are looked through).
RATER_DATASET_TYPES = ('MultiAnnotatorCocoDataset',)


def filter_third_party_warnings() -> None:
    """Hide ``THIRD_PARTY_WARNINGS`` in this process (its forked workers inherit it).

    The tools call it first thing in ``main``; child processes they start are tools too
    and call it themselves.
    """
    for message, category, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


def add_normalize_rater_ids_flag(parser: argparse.ArgumentParser) -> None:
    """``--normalize-rater-ids`` and ``--merge-duplicate-images``: the tools that read rater
    files offer the same opt-in repairs (``load_multirater_coco``'s arguments)."""
    parser.add_argument(
        '--normalize-rater-ids',
        action='store_true',
        help='merge rater ids that differ only by case, surrounding space, invisible '
        'characters or Unicode form (counted); default: such ids are an error',
    )
    parser.add_argument(
        '--merge-duplicate-images',
        action='store_true',
        help='merge image records that name the same file_name (one record per rater) into '
        'one image (counted); default: such records are an error',
    )


def check_output_paths(
    parser: argparse.ArgumentParser,
    files: Iterable[tuple[str, str | None]] = (),
    folders: Iterable[tuple[str, str | None]] = (),
    inputs: Iterable[str | None] = (),
    suffixes: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """``parser.error`` (exit 2, no traceback) for an output path that cannot be written
    or that would destroy an input.

    Args:
        parser (argparse.ArgumentParser): the tool's parser.
        files (Iterable[tuple[str, str | None]]): ``(flag, path)`` of output files; None
            paths are skipped. A folder there is an error, and so is one of ``inputs``
            (the same file, through a symbolic or hard link too).
        folders (Iterable[tuple[str, str | None]]): ``(flag, path)`` of output folders. An
            existing file there is an error. (The files a tool writes into a folder are
            given in ``files`` to be checked against ``inputs``.)
        inputs (Iterable[str | None]): the files the tool reads; None is skipped.
            Two output files that name one file are an error too.
        suffixes (Mapping[str, Sequence[str]] | None): ``{flag: ('.json', ...)}`` for the
            outputs whose format is picked by the suffix; another suffix is an error.

    A path under an existing *file* (``out.txt/sub``) is an error either way, and so is a
    name longer than the file system allows.
    """
    inputs = [p for p in inputs if p is not None]
    suffixes = suffixes or {}
    earlier: list[tuple[str, str]] = []
    for kind, items in (('folder', folders), ('file', files)):  # a folder's own error first
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
            try:
                if kind == 'file':
                    safe_output.check_output(path, inputs, suffixes.get(flag), what=flag)
                else:
                    safe_output.check_name(path, what=flag)
            except ValueError as e:
                parser.error(str(e))
            for flag0, path0 in earlier:
                if kind == 'file' and safe_output.same_file(path, path0):
                    parser.error(f'{flag0} {path0} and {flag} {path} name the same file')
            if kind == 'file':
                earlier.append((flag, path))


def read_config(path: str, cfg_options: dict | None, import_custom_modules: bool = True):
    """``Config.fromfile`` + ``--cfg-options``, where ``data_root=DIR`` moves the whole config.

    A config's ``data_root`` variable is already spelled out in its dataset and evaluator
    entries when the file is read, so mmengine's plain ``data_root=DIR`` override would
    change nothing else. Here every ``data_root`` equal to the config's own and every
    ``*ann_file`` under it move to ``DIR`` first; other ``--cfg-options`` still win.

    Raises:
        FileNotFoundError: ``path`` is not a file.
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


def _move_data_root(node: Any, old: str, new: str) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, str):
            if key == 'data_root' and value.rstrip('/') + '/' == old:
                node[key] = new
            elif isinstance(key, str) and key.endswith('ann_file') and value.startswith(old):
                node[key] = new + value[len(old) :]
        elif isinstance(value, (dict, list)):
            _move_data_root(value, old, new)


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


def _data_paths(cfg: Mapping, mode: str) -> list[tuple[str, str, str]]:
    """(what, path, kind) of the annotation files / image folders a run in ``mode`` reads."""
    parts = ['train', 'val'] if mode == 'train' else ['test']
    if mode == 'train' and not (cfg.get('val_cfg') and cfg.get('val_dataloader')):
        parts = ['train']
    out: list[tuple[str, str, str]] = []

    def walk(node: Any, where: str) -> None:
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


def check_data(cfg: Mapping, config_path: str, mode: str) -> None:
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
    """``./work_dirs/<config name without .py>``, mmdet's default."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def set_local_rank(local_rank: int | None) -> None:
    """Export ``--local-rank`` as ``LOCAL_RANK`` unless the launcher already did."""
    if 'LOCAL_RANK' not in os.environ and local_rank is not None:
        os.environ['LOCAL_RANK'] = str(local_rank)


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


def medmnist_cfg_options(
    data_root: str, epochs: int, seed: int, val: bool = True, val_interval: int | None = None
) -> list[str]:
    """``--cfg-options`` that point a configs/medmnist config at ``data_root`` and set its
    schedule (``epochs``, with the cosine phase after the 1 warm-up epoch) and seed.

    ``val=False`` switches validation off (no val loop, loader or evaluator);
    ``val_interval`` validates every that many epochs (and after the last; None: after the
    last only).
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
        f'train_cfg.val_interval={val_interval or epochs}',
        f'param_scheduler.1.end={epochs}',
        f'param_scheduler.1.T_max={max(epochs - 1, 1)}',
        f'randomness.seed={seed}',
    ]


def child_env(root: str, **overrides: str) -> dict[str, str]:
    """This process's environment for a child tool run from the checkout ``root``:
    ``root`` first on ``PYTHONPATH`` (the checkout's package wins), ``overrides`` set."""
    env = {**os.environ, **overrides}
    env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env


def _pipeline_dataset(cfg: Mapping, loader: str) -> tuple[Mapping, str]:
    """The dataset of ``cfg[loader]`` that holds the pipeline (wrappers looked through),
    and its dotted key."""
    dataset, key = cfg[loader].get('dataset'), f'{loader}.dataset'
    while isinstance(dataset, Mapping) and 'pipeline' not in dataset:
        dataset, key = dataset.get('dataset'), f'{key}.dataset'
    if not isinstance(dataset, Mapping):
        raise ValueError(f'{loader}: no dataset with a pipeline')
    return dataset, key


def input_size(cfg: Mapping, loader: str = 'train_dataloader') -> int | None:
    """The side of the first ``Resize`` scale in ``loader``'s pipeline (None: no Resize)."""
    dataset, _ = _pipeline_dataset(cfg, loader)
    for step in dataset['pipeline']:
        if isinstance(step, Mapping) and step.get('type') == 'Resize' and 'scale' in step:
            return int(step['scale'][0])
    return None


#: Pipeline steps that fix the network input size of a square-canvas config: type -> key.
SIZE_STEPS = {'Resize': 'scale', 'Pad': 'size'}


def image_size_cfg_options(
    cfg: Mapping, size: int, loaders: Sequence[str] = ('train_dataloader', 'test_dataloader')
) -> list[str]:
    """``--cfg-options`` that make every ``Resize`` (``scale``) and ``Pad`` (``size``) step of
    ``loaders``' pipelines ``(size, size)``: a configs/medmnist config on data of another
    canvas (the MED-MNIST study runs at 96 px with the 128 px configs).

    Wrapper datasets are looked through (the pipeline of the innermost dataset that has one).
    A loader that is ``None`` (validation switched off) is skipped.

    Raises:
        ValueError: a loader's pipeline has no ``Resize`` step (the size would not change).

    Examples:
        >>> cfg = dict(train_dataloader=dict(dataset=dict(pipeline=[
        ...     dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 128)),
        ...     dict(type='Pad', size=(128, 128))])), test_dataloader=None)
        >>> image_size_cfg_options(cfg, 96)
        ['train_dataloader.dataset.pipeline.1.scale=(96,96)', \
'train_dataloader.dataset.pipeline.2.size=(96,96)']
    """
    opts = []
    for loader in loaders:
        if cfg.get(loader) is None:
            continue
        dataset, key = _pipeline_dataset(cfg, loader)
        found = []
        for i, step in enumerate(dataset['pipeline']):
            field = SIZE_STEPS.get(step.get('type')) if isinstance(step, Mapping) else None
            if field is not None and field in step:
                found.append(step['type'])
                opts.append(f'{key}.pipeline.{i}.{field}=({size},{size})')
        if 'Resize' not in found:
            raise ValueError(
                f'{key}.pipeline has no Resize step with a scale: cannot set the image size '
                f'to {size}'
            )
    return opts


def _rater_dataset(cfg: Mapping, loader: str) -> tuple[MutableMapping, str]:
    """The multi-rater dataset of ``cfg[loader]`` (wrappers' ``dataset`` looked through) and
    its dotted key."""
    if not isinstance(cfg.get(loader), Mapping) or not isinstance(
        cfg[loader].get('dataset'), Mapping
    ):
        raise ValueError(f'config has no {loader}.dataset')
    dataset, key = cfg[loader]['dataset'], f'{loader}.dataset'
    while dataset.get('type') not in RATER_DATASET_TYPES and 'fusion' not in dataset:
        inner = dataset.get('dataset')
        if not isinstance(inner, Mapping):
            raise ValueError(
                f'{key} (type {dataset.get("type")!r}) is not one of {RATER_DATASET_TYPES} '
                'and wraps none: no fusion to set'
            )
        dataset, key = inner, f'{key}.dataset'
    return dataset, key


def fusion_key(cfg: Mapping, loader: str = 'train_dataloader') -> str:
    """Dotted key of the ``fusion`` dict of ``loader``'s multi-rater dataset.

    ``train_dataloader.dataset.fusion``, or ``train_dataloader.dataset.dataset.fusion``
    when a wrapper (``MultiImageMixDataset``, ``RepeatDataset``, ...) holds the dataset.

    Raises:
        ValueError: ``loader`` holds no multi-rater dataset.

    Examples:
        >>> cfg = dict(train_dataloader=dict(dataset=dict(
        ...     type='MultiImageMixDataset',
        ...     dataset=dict(type='MultiAnnotatorCocoDataset', fusion=dict(method='wbf')))))
        >>> fusion_key(cfg)
        'train_dataloader.dataset.dataset.fusion'
    """
    return _rater_dataset(cfg, loader)[1] + '.fusion'


def fusion_cfg_options(cfg: Mapping, loader: str = 'train_dataloader', **fusion: Any) -> list[str]:
    """``--cfg-options`` entries (``KEY.name=value``) that change ``fusion`` settings."""
    key = fusion_key(cfg, loader)
    return [f'{key}.{name}={value}' for name, value in fusion.items()]


def set_fusion(cfg: MutableMapping, loader: str = 'train_dataloader', **fusion: Any) -> dict:
    """Update (in place) the ``fusion`` dict of ``loader``'s multi-rater dataset.

    Keys given replace the config's; ``fusion=None`` in the config starts from an empty dict.

    Returns:
        dict: the dataset's new ``fusion`` dict.
    """
    dataset, _ = _rater_dataset(cfg, loader)
    dataset['fusion'] = {**(dataset.get('fusion') or {}), **fusion}
    return dataset['fusion']


def dicom_scales(cfg: Mapping) -> dict[str, tuple[float, float]] | None:
    """``{image_id: (orig_width / width, orig_height / height)}`` of the test annotation file.

    tools/convert_vindr.py --resize scales images and records their DICOM size; Kaggle
    scores boxes in DICOM pixels. None when the file has no ``orig_width`` (boxes stay in
    image pixels) or the test dataset names no ``ann_file``.
    """
    ds = cfg['test_dataloader']['dataset']
    ann = ds.get('ann_file')
    if not ann:
        return None
    with open(osp.join(ds.get('data_root') or '', ann)) as f:
        images = json.load(f).get('images', [])
    scales = {
        osp.splitext(osp.basename(im['file_name']))[0]: (
            im['orig_width'] / im['width'],
            im['orig_height'] / im['height'],
        )
        for im in images
        if 'orig_width' in im and 'orig_height' in im
    }
    return scales or None


_ETA = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\].*?eta: ([0-9:]+)')


def train_log_status(log: str) -> str | None:
    """'epoch 3 iter 50/94, eta 0:02:10' from the last mmengine line of a training log."""
    try:
        with open(log, 'rb') as f:
            f.seek(max(0, osp.getsize(log) - 20000))
            tail = f.read().decode('utf-8', 'replace')
    except OSError:
        return None
    found = _ETA.findall(tail)
    if not found:
        return None
    epoch, it, n, eta = found[-1]
    return f'epoch {epoch} iter {it}/{n}, run eta {eta}'


def progress(iterable: Iterable, total: int, desc: str) -> Iterator:
    """tqdm if installed, else a counter on stderr every ~10 %."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
        return
    step = max(1, total // 10)
    for i, item in enumerate(iterable, 1):
        if i % step == 0 or i == total:
            sys.stderr.write(f'\r{desc}: {i}/{total}')
            sys.stderr.flush()
        yield item
    sys.stderr.write('\n')
