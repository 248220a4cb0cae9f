"""Safe checkpoint loading under torch >= 2.6 for mmengine runners.

Importing ``earl_mmdet`` re-registers mmengine's loader for local paths (prefix ``''``):

* a file that this user's own run wrote (see :mod:`earl_mmdet.core.checkpoint_trust`, the
  manifest is written by :class:`TrustOwnCheckpointsHook`) is fully unpickled, so
  ``--resume`` works;
* every other file (``load_from``, pretrained weights, a downloaded checkpoint) loads with
  ``weights_only=True``: tensors and plain containers only, no code runs;
* full unpickling of an untrusted file happens only when the user opts in, with a warning:
  config key ``allow_unsafe_checkpoint_load = True`` (read by ``tools/train.py`` /
  ``tools/test.py``), :func:`allow_unsafe_checkpoint_load`, or env
  ``EARL_MMDET_ALLOW_UNSAFE_LOAD=1``.

Remote schemes (``http://``, ``torchvision://``...) go through ``torch.hub``, which already
defaults to ``weights_only=True`` on torch >= 2.6.
"""

from __future__ import annotations

import os
import os.path as osp
import pickle
import warnings

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from ..core.checkpoint_trust import is_trusted

UNSAFE_ENV = 'EARL_MMDET_ALLOW_UNSAFE_LOAD'
_ALLOW_UNSAFE = False


def allow_unsafe_checkpoint_load(enabled: bool = True) -> None:
    """Opt in (or out) of fully unpickling checkpoints the run did not write itself."""
    global _ALLOW_UNSAFE
    _ALLOW_UNSAFE = bool(enabled)


def _unsafe_allowed() -> bool:
    return _ALLOW_UNSAFE or os.environ.get(UNSAFE_ENV, '') not in ('', '0', 'false', 'False')


def load_checkpoint_file(filename: str, map_location=None):
    """Load a local checkpoint, unpickling fully only trusted files (see module doc)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if is_trusted(filename):
        return torch.load(filename, map_location=map_location, weights_only=False)
    if _unsafe_allowed():
        warnings.warn(
            f'Fully unpickling {filename!r}: it was not written by one of your own runs and '
            'unpickling can execute arbitrary code. Only do this for files you trust.',
            stacklevel=2,
        )
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f'Refusing to fully unpickle checkpoint {filename!r}: it holds Python objects '
            'beyond tensors and was not written by one of your own earl-mmdet runs '
            '(no valid entry in its .earl_trusted_checkpoints.json). Unpickling it could '
            'run arbitrary code. If you trust the file, set '
            '`allow_unsafe_checkpoint_load = True` in the config or '
            f'{UNSAFE_ENV}=1. Original error: {str(err).splitlines()[0]}'
        ) from err


CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)
