"""What the entry points in ``tools/`` share and can use without torch or mmdet: the flags
several tools take (value tuples, choices, an output folder of their own, a rater file with
the loader's repairs), argument and output-path checks, warnings filters, child
environments, progress and the heavy-job slot (these three defined in
:mod:`earl_core.jobs`), and the config helpers that only read a config (mmengine's
``Config`` is imported inside :func:`read_config`; nothing else here imports more than the
standard library, :mod:`earl_core.io.safe_output` and :mod:`earl_core.jobs`).

The helpers that build a Runner or register the components live in
:mod:`earl_mmdet.utils.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import warnings
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from earl_core.io import safe_output
from earl_core.jobs import child_env, heavy_job_slot, progress, train_log_status

__all__ = [
    'heavy_job_slot',
    'THIRD_PARTY_WARNINGS',
    'RATER_DATASET_TYPES',
    'filter_third_party_warnings',
    'add_choice_argument',
    'add_normalize_rater_ids_flag',
    'add_output_folder_args',
    'add_tuple_argument',
    'check_output_folder',
    'check_output_paths',
    'rater_file_parser',
    'rater_file_options',
    'read_config',
    'check_data',
    'default_work_dir',
    'set_local_rank',
    'medmnist_cfg_options',
    'child_env',
    'input_size',
    'SIZE_STEPS',
    'image_size_cfg_options',
    'fusion_key',
    'fusion_cfg_options',
    'set_fusion',
    'dicom_scales',
    'train_log_status',
    'progress',
    'machine_description',
]


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
RATER_DATASET_TYPES = ('MultiRaterCocoDataset', 'MultiAnnotatorCocoDataset')


def machine_description() -> str:
    """What the study tools record as the machine of a result, e.g. ``x86_64, 2 CPU cores``."""
    import os
    import platform

    return f'{platform.machine()}, {os.cpu_count()} CPU cores'


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


def add_choice_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    choices: Sequence[str],
    help: str | None = None,
) -> None:
    """A flag that takes one of ``choices``; the first is the default."""
    parser.add_argument(flag, default=choices[0], choices=tuple(choices), help=help)


def add_output_folder_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out`` (required) and ``--overwrite`` of a tool that writes a folder of its own
    (:func:`earl_core.io.safe_output.claim_folder`): the folder must be missing, empty or
    hold an earlier ``what`` (e.g. 'sample'), which ``--overwrite`` replaces, deleting only
    the files it wrote."""
    parser.add_argument(
        '--out',
        required=True,
        help=f'output directory (created; must be empty or hold an earlier {what})',
    )
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help=f'replace an earlier {what} in --out (only the files it wrote; any other file '
        'there refuses the folder)',
    )


def add_tuple_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    type: type,
    names: Sequence[str] = ('MIN', 'MAX'),
    help: str | None = None,
) -> None:
    """A flag that takes one value per name of ``names`` (``--digit-size MIN MAX``).

    The values arrive as a list of ``type`` (None when the flag is not given); the tool
    checks their order and range.
    """
    parser.add_argument(flag, type=type, nargs=len(names), metavar=tuple(names), help=help)


def rater_file_parser(
    description: str,
    name: str = 'annotations',
    help: str = 'multi-rater COCO JSON',
    repairs: bool = True,
) -> argparse.ArgumentParser:
    """The parser of a tool that reads a multi-rater COCO file: defaults shown in the help,
    the file as the first positional argument ``name``, and with ``repairs`` the loader's
    options (``--no-repair`` and :func:`add_normalize_rater_ids_flag`), which
    :func:`rater_file_options` turns back into ``load_multirater_coco``'s arguments."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(name, help=help)
    if repairs:
        parser.add_argument(
            '--no-repair', action='store_true', help='fail instead of repairing input'
        )
        add_normalize_rater_ids_flag(parser)
    return parser


def rater_file_options(args: argparse.Namespace) -> dict[str, bool]:
    """``load_multirater_coco``'s keyword arguments from the flags of
    :func:`rater_file_parser` (``repairs=True``)."""
    return dict(
        repair=not args.no_repair,
        normalize_rater_ids=args.normalize_rater_ids,
        merge_duplicate_images=args.merge_duplicate_images,
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


def check_output_folder(
    parser: argparse.ArgumentParser,
    flag: str,
    folder: str,
    names: Iterable[str],
    inputs: Iterable[str | None] = (),
) -> None:
    """:func:`check_output_paths` of a tool that writes the files ``names`` into the
    folder ``folder`` given by ``flag``: the folder, and each file against ``inputs``."""
    check_output_paths(
        parser,
        files=[(flag, osp.join(folder, name)) for name in names],
        folders=[(flag, folder)],
        inputs=inputs,
    )


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
        ...     dataset=dict(type='MultiRaterCocoDataset', fusion=dict(method='wbf')))))
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
