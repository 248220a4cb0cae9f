"""RandomStateHook on a simulated epoch loop (no Runner): save, restore, persistent workers."""

from __future__ import annotations

import functools
import io
import random
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.dataset.utils import worker_init_fn as mmengine_worker_init_fn
from torch.utils.data import DataLoader, Dataset

from earl_mmdet.engine.hooks import RandomStateHook
from earl_mmdet.engine.hooks.random_state_hook import CHECKPOINT_KEY, WORKER_STATE_KEY


class _Draws(Dataset):
    """Each sample is what an augmentation would draw in the process that loads it."""

    def __len__(self):
        return 6

    def __getitem__(self, idx):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def _collate(samples):
    return dict(draws=samples)


def _loader(num_workers: int, seed: int = 0) -> DataLoader:
    init = functools.partial(mmengine_worker_init_fn, num_workers=num_workers, rank=0, seed=seed)
    return DataLoader(
        _Draws(),
        batch_size=2,
        sampler=DefaultSampler(_Draws(), shuffle=True, seed=seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=_collate,
        worker_init_fn=init,
        multiprocessing_context='fork' if num_workers else None,
    )


def _runner(loader: DataLoader, resume: bool = False, world_size: int = 1):
    return SimpleNamespace(
        train_dataloader=loader,
        _resume=resume,
        rank=0,
        world_size=world_size,
        epoch=0,
        iter=0,
        logger=mock.Mock(),
    )


def _epoch(hook, runner) -> list:
    """One train epoch: loader draws, a 'model' draws in the main process, then validation."""
    hook.before_train_epoch(runner)
    runner.train_dataloader.sampler.set_epoch(runner.epoch)
    seen = []
    for i, batch in enumerate(runner.train_dataloader):
        hook.before_train_iter(runner, i, batch)
        assert set(batch) == {'draws'}  # the worker report never reaches the model
        seen.append((batch['draws'], float(torch.rand(1)), float(np.random.rand())))
        runner.iter += 1
    hook.after_train_epoch(runner)
    runner.epoch += 1
    torch.rand(3), np.random.rand(3), random.random()  # validation draws in between
    return seen


def _checkpoint(hook, runner, seed: int = 0) -> dict:
    ckpt = dict(meta=dict(epoch=runner.epoch, iter=runner.iter, seed=seed))
    hook.before_save_checkpoint(runner, ckpt)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # the saved state is tensors and plain values


@pytest.mark.parametrize('num_workers', [0, 2])  # main-process loading; persistent workers
def test_resumed_epochs_draw_like_the_straight_run(num_workers):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    hook, runner = RandomStateHook(), _runner(_loader(num_workers))
    hook.before_train(runner)
    _epoch(hook, runner)
    ckpt = _checkpoint(hook, runner)
    assert set(ckpt[CHECKPOINT_KEY]) == {'epoch', 'iter', 'world_size', 'ranks'}
    straight = [_epoch(hook, runner), _epoch(hook, runner)]

    torch.manual_seed(1), np.random.seed(1), random.seed(1)  # a new process, other draws
    hook2, runner2 = RandomStateHook(), _runner(_loader(num_workers), resume=True)
    runner2.epoch, runner2.iter = runner.epoch - 2, runner.iter - 6
    hook2.after_load_checkpoint(runner2, ckpt)
    hook2.before_train(runner2)
    resumed = [_epoch(hook2, runner2), _epoch(hook2, runner2)]
    assert resumed == straight
    runner2.logger.warning.assert_not_called()


def test_straight_run_first_epoch_untouched():
    # No restore before the first epoch: the stock run's first epoch is unchanged.
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    hook, runner = RandomStateHook(), _runner(_loader(0))
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert torch.equal(torch.rand(1), expected)


def test_checkpoint_seed_reaches_sampler_and_workers():
    # randomness.seed unset: the resumed run drew another seed; the checkpoint's wins.
    loader = _loader(2, seed=123)
    runner = _runner(loader, resume=True)
    RandomStateHook().after_load_checkpoint(runner, dict(meta=dict(epoch=1, iter=3, seed=7)))
    assert loader.sampler.seed == 7
    assert loader.worker_init_fn.keywords['seed'] == 7
    runner.logger.warning.assert_called_once()  # and: no random state in that checkpoint


def test_other_number_of_processes_warns_and_restores_nothing():
    hook, runner = RandomStateHook(), _runner(_loader(0))
    _epoch(hook, runner)
    ckpt = _checkpoint(hook, runner)
    hook2, runner2 = RandomStateHook(), _runner(_loader(0), resume=True, world_size=2)
    hook2.after_load_checkpoint(runner2, ckpt)
    assert '1 processes' in runner2.logger.warning.call_args[0][0]
    assert hook2._main is None


def test_mid_epoch_checkpoint_gets_no_state():
    hook, runner = RandomStateHook(), _runner(_loader(0))
    _epoch(hook, runner)
    ckpt = dict(meta=dict(epoch=runner.epoch, iter=runner.iter + 1))
    hook.before_save_checkpoint(runner, ckpt)
    assert CHECKPOINT_KEY not in ckpt


def test_report_key_popped_and_recorded():
    hook, runner = RandomStateHook(), _runner(_loader(0))
    batch = dict(inputs=1, **{WORKER_STATE_KEY: (1, 'state')})
    hook.before_train_iter(runner, 0, batch)
    assert batch == dict(inputs=1)
    assert hook._workers == {1: 'state'}
