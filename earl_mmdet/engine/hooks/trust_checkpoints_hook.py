"""Hook that loads checkpoints safely and signs exactly the checkpoints its runner saves."""

from __future__ import annotations

import logging
import os
import os.path as osp
import stat as stat_mod
import time
from typing import Any

from mmdet.registry import HOOKS
from mmengine.fileio import join_path
from mmengine.hooks import Hook
from mmengine.logging import print_log

from earl_mmdet.engine.checkpoint_trust import file_sha256, mark_trusted

from ..checkpoint import install_safe_loaders, restore_loaders


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


@HOOKS.register_module()
class TrustOwnCheckpointsHook(Hook):
    """Load checkpoints safely during the run; sign each checkpoint the runner saves.

    ``before_run`` installs the safe checkpoint loaders of
    :mod:`earl_mmdet.engine.checkpoint` (mmengine's Runner calls it before it initialises
    pretrained weights and before ``load_from`` / ``resume``) and wraps this runner's
    ``save_checkpoint``, so that every save — by ``CheckpointHook`` (interval, last and
    best checkpoints, any ``out_dir``) or by other code that calls the runner — reports the
    one path it wrote. That file, and only that file, is signed (HMAC manifest beside it),
    and only when:

    * it is a regular local file, not a symlink (a symlink planted at the checkpoint's
      path is written through, but its target is never signed);
    * the save wrote it: it was created or modified during the call.

    Nothing else in the work dir is ever signed, whatever its time stamp: a file copied in
    during the run, or unpacked with a future modification time, loads with
    ``weights_only=True``. ``after_run`` puts back the loaders and the runner's method.

    ``tools/train.py`` adds this hook automatically; with another entry point add
    ``custom_hooks = [dict(type='TrustOwnCheckpointsHook')]``.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._previous_loaders: dict | None = None
        self._own_attribute = None
        self.signed: list[str] = []

    def before_run(self, runner) -> None:
        self._previous_loaders = install_safe_loaders()
        save = runner.save_checkpoint
        self._own_attribute = vars(runner).get('save_checkpoint')

        def save_checkpoint(out_dir: str, filename: str, *args: Any, **kwargs: Any):
            backend_args = kwargs.get('backend_args')
            path = None
            if runner.rank == 0 and not kwargs.get('file_client_args'):
                path = join_path(out_dir, filename, backend_args=backend_args)
            before = _lstat(path) if path else None
            start = time.time()
            result = save(out_dir, filename, *args, **kwargs)
            if path is not None:
                self._sign_saved(path, before, start)
            return result

        runner.save_checkpoint = save_checkpoint

    def after_run(self, runner) -> None:
        if self._previous_loaders is not None:
            restore_loaders(self._previous_loaders)
            self._previous_loaders = None
        if self._own_attribute is not None:
            runner.save_checkpoint = self._own_attribute
        elif 'save_checkpoint' in vars(runner):
            del runner.save_checkpoint  # the class's method again

    def _sign_saved(self, path: str, before: os.stat_result | None, start: float) -> None:
        """Sign ``path`` if the save just wrote it as a regular local file."""
        if '://' in path:  # a remote file backend: never loaded as a trusted local file
            return
        after = _lstat(path)
        if after is None:
            return
        why = None
        if not stat_mod.S_ISREG(after.st_mode):
            why = 'it is a symlink or not a regular file'
        elif before is not None and stat_mod.S_ISLNK(before.st_mode):
            why = 'a symlink stood at its path when the save began'
        elif before is not None and (before.st_ino, before.st_mtime_ns, before.st_size) == (
            after.st_ino,
            after.st_mtime_ns,
            after.st_size,
        ):
            why = 'the save did not change it'
        elif after.st_mtime + 1.0 < start:  # 1 s slack: coarse file-system time stamps
            why = 'its modification time is older than the save'
        if why:
            print_log(
                f'Not signing checkpoint {path}: {why}. It will load with weights_only=True '
                '(no --resume from it).',
                logger='current',
                level=logging.WARNING,
            )
            return
        digest = file_sha256(path)
        # The file hashed must be the file the save wrote (same inode, unchanged).
        again = _lstat(path)
        if again is None or (again.st_ino, again.st_mtime_ns, again.st_size) != (
            after.st_ino,
            after.st_mtime_ns,
            after.st_size,
        ):
            print_log(
                f'Not signing checkpoint {path}: it changed while it was being hashed.',
                logger='current',
                level=logging.WARNING,
            )
            return
        mark_trusted(path, digest=digest)
        self.signed.append(osp.abspath(path))
