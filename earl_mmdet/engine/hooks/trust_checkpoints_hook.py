"""Hook that loads checkpoints safely and marks those a run writes as its own (``--resume``)."""

from __future__ import annotations

import glob
import os.path as osp
import time

from mmdet.registry import HOOKS
from mmengine.hooks import CheckpointHook, Hook

from ...core.checkpoint_trust import mark_trusted
from ..checkpoint import install_safe_loaders, restore_loaders


@HOOKS.register_module()
class TrustOwnCheckpointsHook(Hook):
    """Load checkpoints safely during the run; sign every ``*.pth`` it saves.

    ``before_run`` installs the safe checkpoint loaders of
    :mod:`earl_mmdet.engine.checkpoint` (mmengine's Runner calls it before it initialises
    pretrained weights and before ``load_from`` / ``resume``); ``after_run`` puts back the
    loaders that were there before.

    Runs after mmengine's ``CheckpointHook`` (priority ``LOWEST`` vs ``VERY_LOW``), so each
    checkpoint is signed (HMAC manifest beside it) right after it is written. Only files
    modified after the run started are signed. ``tools/train.py`` adds this hook
    automatically; with another entry point add
    ``custom_hooks = [dict(type='TrustOwnCheckpointsHook')]``.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._start = time.time()
        self._signed: dict[str, float] = {}
        self._previous_loaders: dict | None = None

    def before_run(self, runner) -> None:
        self._start = time.time()
        self._previous_loaders = install_safe_loaders()

    def after_run(self, runner) -> None:
        if self._previous_loaders is not None:
            restore_loaders(self._previous_loaders)
            self._previous_loaders = None

    def _dirs(self, runner) -> set[str]:
        dirs = {runner.work_dir}
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and getattr(hook, 'out_dir', None):
                dirs.add(hook.out_dir)
        return dirs

    def _sign_new(self, runner) -> None:
        if runner.rank != 0:  # only rank 0 saves; avoid racing on the manifest
            return
        for directory in self._dirs(runner):
            for path in glob.glob(osp.join(directory, '*.pth')):
                mtime = osp.getmtime(path)
                # 1 s slack: coarse file-system timestamps.
                if mtime + 1.0 < self._start or self._signed.get(path) == mtime:
                    continue
                mark_trusted(path)
                self._signed[path] = mtime

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._sign_new(runner)

    def after_train_epoch(self, runner) -> None:
        self._sign_new(runner)

    def after_train(self, runner) -> None:
        self._sign_new(runner)
