"""Hook that makes a resumed run draw the random numbers an uninterrupted run would."""

from __future__ import annotations

import functools

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_gather_object
from mmengine.hooks import Hook
from torch.utils.data import DataLoader, get_worker_info

from earl_mmdet.engine.random_state import get_rng_state, set_rng_state

CHECKPOINT_KEY = 'rng_state'
# A persistent worker reports its state with each batch; the hook pops it before the model.
WORKER_STATE_KEY = '_earl_worker_rng_state'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' state in each epoch's checkpoint; restore it on resume.

    mmengine's checkpoints carry the model, optimizer, schedulers and EMA but not the
    random generators that augmentations and some heads draw from, so a resumed run
    diverges from the run it replaces at its first iteration. This hook closes the gap for
    epoch-based training (``EpochBasedTrainLoop``), on every rank:

    * At the end of each train epoch it captures ``random``, numpy and torch (CPU and the
      current CUDA device) in the main process, gathers them from all ranks, and writes
      them into the checkpoint saved for that epoch (key ``rng_state``; tensors and plain
      values only, so the file still loads with ``weights_only=True``).
    * At the start of the next train epoch it puts the captured state back. Validation
      between two epochs therefore no longer shifts the training draws, in a straight run
      as in a resumed one. A resumed run restores the checkpoint's state at this point.
    * Persistent data-loader workers keep their generators across epochs, in other
      processes. Each reports its state with every batch (the collate function is wrapped;
      the hook removes the report before the model sees the batch); a resumed run's new
      workers start from the state their predecessors ended the epoch with. Non-persistent
      workers are re-seeded by mmengine at every epoch and need nothing.
    * The seed stored in the checkpoint wins over a new one: with ``randomness.seed``
      unset, mmengine draws a seed per run and builds the sampler and the workers' seeding
      with it before resuming; the hook hands them the checkpoint's seed.

    A straight run's numbers are unchanged unless validation runs between two train epochs
    (its draws used to carry over into the next epoch). Restored only when the processes
    and the data-loader workers are as many as in the run that wrote the checkpoint;
    otherwise the hook warns and the resumed run draws fresh numbers.
    ``tools/train.py`` adds this hook automatically; with another entry point add
    ``custom_hooks = [dict(type='RandomStateHook')]``.
    """

    # First everywhere: restore before other hooks draw at an epoch's start, capture before
    # CheckpointHook saves at its end, and take the worker report off a batch first.
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._main: dict | None = None  # main-process state to restore at the next epoch
        self._workers: dict[int, dict] = {}  # persistent worker id -> state after its last batch
        self._saved: dict | None = None  # every rank's states at the end of the last epoch
        self._resumed = False  # the next train epoch is the first one after a resume
        self._put_back: tuple | None = None  # loader attributes to restore once workers start

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if _persistent(loader) and not isinstance(loader.collate_fn, _ReportWorkerState):
            loader.collate_fn = _ReportWorkerState(loader.collate_fn)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:  # load_from: weights only, a new run
            return
        meta = checkpoint.get('meta', {})
        self._use_seed(runner, meta.get('seed'))
        saved = checkpoint.get(CHECKPOINT_KEY)
        loader = runner.train_dataloader
        if saved is None:
            problem = (
                'the checkpoint holds no random state (written mid-epoch or without this hook)'
            )
        elif saved['world_size'] != runner.world_size:
            problem = (
                f'the checkpoint was written by {saved["world_size"]} processes, this run '
                f'has {runner.world_size}'
            )
        elif saved['ranks'][runner.rank]['num_workers'] != loader.num_workers or (
            saved['ranks'][runner.rank]['persistent'] != _persistent(loader)
        ):
            was = saved['ranks'][runner.rank]
            problem = (
                f'the checkpoint was written with num_workers={was["num_workers"]} '
                f'(persistent: {was["persistent"]}), this run has {loader.num_workers} '
                f'(persistent: {_persistent(loader)})'
            )
        else:
            problem = None
        if problem:
            runner.logger.warning(
                f'RandomStateHook: {problem}; the resumed run will not draw the random '
                'numbers an uninterrupted run would.'
            )
            return
        mine = saved['ranks'][runner.rank]
        self._main = mine['main']
        self._workers = dict(mine['workers'])
        self._resumed = True

    def before_train_epoch(self, runner) -> None:
        if self._main is not None:
            set_rng_state(self._main)
        if not self._resumed:
            return
        self._resumed = False
        loader = runner.train_dataloader
        if _persistent(loader) and loader._iterator is None:
            # The uninterrupted run's workers live on: start ours where theirs stood, and
            # keep their creation off torch's global generator (the uninterrupted run drew
            # that number at its first epoch; mmengine's worker seeding overrides it).
            self._put_back = (loader.worker_init_fn, loader.generator)
            loader.worker_init_fn = _RestoreWorkerState(loader.worker_init_fn, self._workers)
            loader.generator = torch.Generator()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if isinstance(data_batch, dict):
            report = data_batch.pop(WORKER_STATE_KEY, None)
            if report is not None:
                worker_id, state = report
                self._workers[worker_id] = state
        elif batch_idx == 0 and runner.epoch == 0 and _persistent(runner.train_dataloader):
            runner.logger.warning(
                f'RandomStateHook: batches are {type(data_batch).__name__}, not dict; the '
                "persistent workers' random state cannot travel with them, so a resumed "
                'run will not draw what an uninterrupted run would.'
            )
        if self._put_back is not None:  # the workers have started
            loader = runner.train_dataloader
            loader.worker_init_fn, loader.generator = self._put_back
            self._put_back = None

    def after_train_epoch(self, runner) -> None:
        self._main = get_rng_state()
        loader = runner.train_dataloader
        mine = dict(
            main=self._main,
            workers=dict(self._workers),
            num_workers=loader.num_workers,
            persistent=_persistent(loader),
        )
        ranks = all_gather_object(mine)
        # CheckpointHook saves after this hook with meta epoch = runner.epoch + 1.
        self._saved = dict(
            epoch=runner.epoch + 1, iter=runner.iter, world_size=len(ranks), ranks=ranks
        )

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        # Only an end-of-epoch checkpoint: a mid-epoch one would need the loader's position.
        if self._saved and (meta.get('epoch'), meta.get('iter')) == (
            self._saved['epoch'],
            self._saved['iter'],
        ):
            checkpoint[CHECKPOINT_KEY] = self._saved

    def restart_workers(self, runner) -> None:
        """Stop the persistent train workers between two epochs; new ones take over.

        For a hook that changed the training dataset in the main process (the workers hold
        copies of it), e.g. ``DetectorRaterHook``. Call it after this hook's
        ``after_train_epoch``: the new workers start from the generator states the old
        ones ended the epoch with, as after a resume, so the run draws what it would have
        drawn with the old workers and a resumed run still matches it.

        Args:
            runner: the mmengine Runner.
        """
        loader = runner.train_dataloader
        if not _persistent(loader) or loader._iterator is None:
            return
        loader._iterator._shutdown_workers()
        loader._iterator = None
        self._resumed = True  # next before_train_epoch: start the workers from their states

    @staticmethod
    def _use_seed(runner, seed: int | None) -> None:
        """Give the train loader's sampler and worker seeding the checkpoint's seed."""
        if seed is None:
            return
        loader = runner.train_dataloader
        changed = False
        for sampler in (loader.sampler, getattr(loader.batch_sampler, 'sampler', None)):
            if getattr(sampler, 'seed', seed) != seed:
                sampler.seed = seed
                changed = True
        init = loader.worker_init_fn
        if isinstance(init, functools.partial) and init.keywords.get('seed', seed) != seed:
            loader.worker_init_fn = functools.partial(
                init.func, *init.args, **{**init.keywords, 'seed': seed}
            )
            changed = True
        if changed:
            runner.logger.info(
                f'RandomStateHook: train loader seeded with the checkpoint seed {seed}'
            )


def _persistent(loader: DataLoader) -> bool:
    return bool(loader.persistent_workers and loader.num_workers > 0)


class _ReportWorkerState:
    """Collate function wrapper: add the worker's generator state after this batch."""

    def __init__(self, collate_fn) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples):
        batch = self.collate_fn(samples)
        info = get_worker_info()
        if info is not None and isinstance(batch, dict):
            batch[WORKER_STATE_KEY] = (info.id, get_rng_state(cuda=False))
        return batch


class _RestoreWorkerState:
    """``worker_init_fn`` wrapper: seed as before, then restore the saved state if any."""

    def __init__(self, worker_init_fn, states: dict[int, dict]) -> None:
        self.worker_init_fn = worker_init_fn
        self.states = states

    def __call__(self, worker_id: int) -> None:
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)
        if worker_id in self.states:
            set_rng_state(self.states[worker_id])
