"""Safe checkpoint loading under torch >= 2.6 for mmengine runners, whatever the scheme.

:func:`install_safe_loaders` re-registers mmengine's checkpoint loader for every scheme that
mmengine registers (:data:`SAFE_SCHEMES`): local paths (prefix ``''``), ``http://`` and
``https://``, ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` / ``openmmlab://``,
``mmcls://``, ``pavi://`` and the file backends ``s3://`` / ``petrel://``. One rule then
holds for ``load_from``, ``--resume``, ``tools/test.py CONFIG CHECKPOINT`` and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` alike:

* a local file that this user's own run saved (see :mod:`earl_mmdet.engine.checkpoint_trust`;
  the manifest is written by :class:`TrustOwnCheckpointsHook`) is fully unpickled, so
  ``--resume`` works;
* every other file (``load_from``, pretrained weights, a checkpoint given by URL or model
  name and the copy ``torch.hub`` keeps in its cache, a file read from ``s3://``) loads with
  ``weights_only=True``: tensors and plain containers only, no code runs. A file that
  needs more raises a ``RuntimeError`` naming it;
* full unpickling of an untrusted file happens only when the user opts in, and is logged
  as a warning each time: config key ``allow_unsafe_checkpoint_load = True`` (read by
  ``tools/train.py`` / ``tools/test.py``), :func:`allow_unsafe_checkpoint_load`, or env
  ``EARL_MMDET_ALLOW_UNSAFE_LOAD=1``.

Importing ``earl_mmdet`` does not install them: mmengine's registry of loaders is
process-wide, so it changes only where asked. It is installed by the project's entry points
(``tools/train.py``, ``tools/test.py`` and the tools built on them, through
:func:`earl_mmdet.utils.cli.load_config`) and by :class:`TrustOwnCheckpointsHook` in its
``before_run`` (which mmengine's Runner calls before it initialises pretrained weights and
before ``load_from`` / ``resume``), restored in its ``after_run``. Elsewhere use
:func:`safe_loaders` (a context manager) or :func:`install_safe_loaders`.

Why every scheme: mmengine 0.10.7's loaders call ``torch.load`` without ``weights_only``
(refused by torch >= 2.6 for its own resume checkpoints) and, for URLs,
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to ``False`` even
on torch >= 2.6 — a file planted in the hub cache would run code.

The loaders below call mmengine's model-name tables and torch.hub's download; only the
final unpickling is ours.
"""

from __future__ import annotations

import io
import logging
import os
import os.path as osp
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from tempfile import TemporaryDirectory
from typing import Any, Callable
from urllib.parse import urlparse

import mmengine
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from earl_mmdet.engine.checkpoint_trust import trust_status

UNSAFE_ENV = 'EARL_MMDET_ALLOW_UNSAFE_LOAD'
_ALLOW_UNSAFE = False


def allow_unsafe_checkpoint_load(enabled: bool = True) -> None:
    """Opt in (or out) of fully unpickling checkpoints the run did not write itself."""
    global _ALLOW_UNSAFE
    _ALLOW_UNSAFE = bool(enabled)


def _unsafe_allowed() -> bool:
    return _ALLOW_UNSAFE or os.environ.get(UNSAFE_ENV, '') not in ('', '0', 'false', 'False')


def _load_guarded(
    name: str, load: Callable[[bool], Any], trusted: bool = False, why_not: str = ''
) -> Any:
    """Run ``load(weights_only)`` under the module's rule; ``name`` is what messages show.

    Args:
        name (str): The checkpoint as the user gave it (path or URL), plus where it lies.
        load (Callable[[bool], Any]): Unpickles the checkpoint; its argument is
            ``weights_only``.
        trusted (bool): The file was saved by this user's own run. Defaults to False.
        why_not (str): Why a local file is not trusted, for the error. Defaults to ''.
    """
    if trusted:
        return load(False)
    if _unsafe_allowed():
        msg = (
            f'Fully unpickling checkpoint {name}: it was not written by one of your own runs '
            'and unpickling can execute arbitrary code (allow_unsafe_checkpoint_load / '
            f'{UNSAFE_ENV} is set). Only do this for files you trust.'
        )
        print_log(msg, logger='current', level=logging.WARNING)
        warnings.warn(msg, stacklevel=3)
        return load(False)
    try:
        return load(True)
    except pickle.UnpicklingError as err:
        reason = f' ({why_not})' if why_not else ''
        raise RuntimeError(
            f'Refusing to fully unpickle checkpoint {name}: it holds Python objects beyond '
            'tensors and was not saved by one of your own earl-mmdet runs'
            f'{reason}. Unpickling it could run '
            'arbitrary code. If you trust the file, set `allow_unsafe_checkpoint_load = True` '
            f'in the config or {UNSAFE_ENV}=1. Original error: {str(err).splitlines()[0]}'
        ) from err


def load_from_local(filename: str, map_location=None):
    """Load a local checkpoint, unpickling fully only trusted files (see module doc).

    The file is read once; its trust is checked on the bytes that are then unpickled, so
    swapping the file between the check and the load changes nothing.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    with open(filename, 'rb') as f:
        data = f.read()
    trusted, why_not = trust_status(filename, data)
    return _load_guarded(
        repr(filename),
        lambda weights_only: torch.load(
            io.BytesIO(data), map_location=map_location, weights_only=weights_only
        ),
        trusted=trusted,
        why_not=why_not,
    )


# The name tests and users imported before the other schemes were covered.
load_checkpoint_file = load_from_local


def load_from_http(filename: str, map_location=None, model_dir=None, progress=None):
    """Download a checkpoint with ``torch.hub`` (into its cache) and load it safely.

    Like mmengine's loader for ``http(s)://``: in a distributed run rank 0 downloads
    first and the other ranks read the cached file after a barrier.

    Args:
        filename (str): The URL.
        map_location: As for :func:`torch.load`. Defaults to None.
        model_dir (str, optional): Download folder. Defaults to ``<hub dir>/checkpoints``.
        progress (bool, optional): Show a progress bar. Defaults to stdin being a tty.
    """
    if progress is None:
        progress = os.isatty(0)
    cache = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(cache, osp.basename(urlparse(filename).path))

    def load():
        return _load_guarded(
            f'{filename!r} (cached at {cached!r})',
            lambda weights_only: torch.hub.load_state_dict_from_url(
                filename,
                model_dir=model_dir,
                map_location=map_location,
                progress=progress,
                weights_only=weights_only,
            ),
        )

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def _split(filename: str) -> tuple[str, str]:
    prefix, _, name = filename.partition('://')
    return prefix + '://', name


def _lookup(urls: dict, name: str, filename: str) -> str:
    if name not in urls:
        raise ValueError(
            f'Unknown model name in checkpoint {filename!r}: {name!r} is not in the '
            f'table of {_split(filename)[0]} models ({len(urls)} names, e.g. '
            f'{sorted(urls)[:3]}).'
        )
    return urls[name]


def _torchvision_urls() -> dict:
    """mmengine's ``torchvision://`` name -> URL table.

    mmengine builds it by importing torchvision; without torchvision the names of
    torchvision 0.12 (``resnet50`` etc., the ones mmdet configs use) are read from the
    table mmengine ships.
    """
    try:
        return mm_checkpoint.get_torchvision_models()
    except ImportError:
        return mmengine.load(osp.join(mmengine.__path__[0], 'hub', 'torchvision_0.12.json'))


def load_from_torchvision(filename: str, map_location=None):
    """``torchvision://NAME`` (or the deprecated ``modelzoo://NAME``): torchvision's URL."""
    prefix, name = _split(filename)
    if prefix == 'modelzoo://':
        print_log(
            'The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
            logger='current',
            level=logging.WARNING,
        )
    url = _lookup(_torchvision_urls(), name, filename)
    return load_from_http(url, map_location=map_location)


def load_from_openmmlab(filename: str, map_location=None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: mmengine's table (+ ``open_mmlab.json``
    in the mmengine home), either a URL or a file under the mmengine home."""
    prefix, name = _split(filename)
    deprecated = mm_checkpoint.get_deprecated_model_names()
    if name in deprecated:
        print_log(
            f'{prefix}{name} is deprecated in favor of {prefix}{deprecated[name]}',
            logger='current',
            level=logging.WARNING,
        )
        name = deprecated[name]
    url = _lookup(mm_checkpoint.get_external_models(), name, filename)
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location)
    return load_from_local(osp.join(mm_checkpoint._get_mmengine_home(), url), map_location)


def load_from_mmcls(filename: str, map_location=None):
    """``mmcls://NAME``: an mmcls backbone, keys renamed as mmengine does."""
    url = _lookup(mm_checkpoint.get_mmcls_models(), _split(filename)[1], filename)
    return mm_checkpoint._process_mmcls_checkpoint(load_from_http(url, map_location=map_location))


def load_from_pavi(filename: str, map_location=None):
    """``pavi://MODEL``: downloaded from pavi's model cloud into a temporary folder."""
    try:
        from pavi import modelcloud
    except ImportError as err:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from err
    model = modelcloud.get(filename[len('pavi://') :])
    with TemporaryDirectory() as tmp_dir:
        path = osp.join(tmp_dir, osp.basename(model.name))
        model.download(path)
        return _load_guarded(
            repr(filename),
            lambda weights_only: torch.load(
                path, map_location=map_location, weights_only=weights_only
            ),
        )


def load_from_ceph(filename: str, map_location=None, backend: str = 'petrel'):
    """``s3://`` / ``petrel://`` (optionally ``NAME:s3://``): read through mmengine's file
    backend, then loaded from memory."""
    data = mm_checkpoint.get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    return _load_guarded(
        repr(filename),
        lambda weights_only: torch.load(
            io.BytesIO(data), map_location=map_location, weights_only=weights_only
        ),
    )


#: Every prefix mmengine 0.10.7 registers, with the loader that replaces its own.
SAFE_SCHEMES: dict[tuple[str, ...], Callable] = {
    ('',): load_from_local,
    ('http://', 'https://'): load_from_http,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    ('mmcls://',): load_from_mmcls,
    ('pavi://',): load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
}


def safe_loaders_installed() -> bool:
    """True when every scheme of :data:`SAFE_SCHEMES` loads through this module."""
    schemes = CheckpointLoader._schemes
    return all(
        schemes.get(prefix) is loader
        for prefixes, loader in SAFE_SCHEMES.items()
        for prefix in prefixes
    )


def install_safe_loaders() -> dict[str, Callable]:
    """Register the loaders of :data:`SAFE_SCHEMES` in mmengine's ``CheckpointLoader``.

    Idempotent. Process-wide, like mmengine's registry itself.

    Returns:
        dict[str, Callable]: mmengine's table of loaders before the call (prefix -> loader),
        for :func:`restore_loaders`.
    """
    previous = dict(CheckpointLoader._schemes)
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=list(prefixes), loader=loader, force=True)
    return previous


def restore_loaders(previous: dict[str, Callable]) -> None:
    """Put back a table of loaders that :func:`install_safe_loaders` returned."""
    CheckpointLoader._schemes = type(CheckpointLoader._schemes)(previous)


@contextmanager
def safe_loaders() -> Iterator[None]:
    """Load checkpoints under this module's rule inside the ``with`` block only.

    Examples:
        >>> with safe_loaders():  # doctest: +SKIP
        ...     runner.load_checkpoint('epoch_12.pth')
    """
    previous = install_safe_loaders()
    try:
        yield
    finally:
        restore_loaders(previous)
