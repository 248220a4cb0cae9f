"""Hook that puts the detector in the loop: its predictions join the raters, fusion is refit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import all_gather_object, broadcast_object_list, get_rank, get_world_size
from mmengine.hooks import Hook

from earl_core.fusion.aggregators import build_aggregator
from earl_core.structures import Detections

from ...datasets.multi_rater_coco import MultiRaterCocoDataset
from .random_state_hook import RandomStateHook

CHECKPOINT_KEY = 'fusion_refit'


@HOOKS.register_module()
class DetectorRaterHook(Hook):
    """Refit the training set's fusion with the detector as one more rater, every few epochs.

    After ``warmup_epochs`` train epochs, and then every ``interval`` epochs, at the end of
    the epoch: the model predicts every training image (test-time pipeline, the boxes it
    scores at least ``score_thr``); those boxes join the image as the boxes of one more
    rater, ``rater_id``, who read every image; the dataset's aggregator is fitted again on
    all images and the fused targets (box, label, confidence c) of every image are
    replaced, in place. With ``fusion=dict(method='bayes')`` the detector is a source with
    its own confusion and box error, learnt with the raters', and a cluster only the
    detector drew is kept when the model believes it (``detector_min_presence``): an object
    every rater missed. The class distribution's mass on the fused label is c, which the
    heads' ``policy='soft'`` takes as the soft target.

    * **Data-loader workers.** Persistent workers hold copies of the dataset: they are
      restarted after a refit (through :meth:`RandomStateHook.restart_workers`, so that
      they continue from their generator states; without ``RandomStateHook`` they restart
      freshly seeded). Non-persistent workers copy the dataset at each epoch anyway.
    * **Distributed training.** Every rank predicts its share of the images; rank 0
      gathers the predictions, fits and fuses, and broadcasts the fused targets.
    * **Resume.** The fused targets of the last refit are saved in each checkpoint (key
      ``fusion_refit``: tensors and ints, like ``rng_state``) and put back
      into the dataset on ``--resume``, so a resumed run trains on what the straight run
      trained on. The refit itself is deterministic (no random draws; the fit starts
      from the raters' votes each time).

    One line in a config (``tools/train.py``, ``tools/dist_train.sh``)::

        custom_hooks = [dict(type='DetectorRaterHook', warmup_epochs=5, interval=2)]

    Args:
        warmup_epochs (int): train epochs before the first refit (>= 1). Defaults to 1.
        interval (int): epochs between two refits (>= 1). Defaults to 1.
        score_thr (float): the detector's boxes kept as its "drawn" boxes, in [0, 1).
            Defaults to 0.3.
        max_per_image (int): at most this many of them per image (highest scores).
            Defaults to 100.
        rater_id (str): the detector's rater id. Defaults to ``'detector'``.
        fusion (dict | None): the aggregator of the refit, as the dataset's ``fusion``
            (``dict(method=..., **params)``); None = the dataset's own. ``method='bayes'``
            gets ``detector=rater_id``. Defaults to None.
        pipeline (list[dict] | None): test-time pipeline of the predictions; None = the
            config's ``test_dataloader`` (else ``val_dataloader``) pipeline. Defaults to
            None.
        batch_size (int): images per inference batch. Defaults to 8.
    """

    priority = 'NORMAL'  # after RandomStateHook (records the states), before CheckpointHook

    def __init__(
        self,
        warmup_epochs: int = 1,
        interval: int = 1,
        score_thr: float = 0.3,
        max_per_image: int = 100,
        rater_id: str = 'detector',
        fusion: Mapping | None = None,
        pipeline: Sequence[Mapping] | None = None,
        batch_size: int = 8,
    ) -> None:
        for name, value in (
            ('warmup_epochs', warmup_epochs),
            ('interval', interval),
            ('max_per_image', max_per_image),
            ('batch_size', batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'DetectorRaterHook: {name} must be an int >= 1, got {value!r}')
        if isinstance(score_thr, bool) or not (
            isinstance(score_thr, (int, float)) and 0.0 <= score_thr < 1.0
        ):
            raise ValueError(f'DetectorRaterHook: score_thr must be in [0, 1), got {score_thr!r}')
        if not isinstance(rater_id, str) or not rater_id.strip():
            raise ValueError(
                f'DetectorRaterHook: rater_id must be a non-empty str, got {rater_id!r}'
            )
        if fusion is not None and (not isinstance(fusion, Mapping) or 'method' not in fusion):
            raise ValueError(
                f"DetectorRaterHook: fusion must be None or a dict with 'method', got {fusion!r}"
            )
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.score_thr = float(score_thr)
        self.max_per_image = max_per_image
        self.rater_id = rater_id
        self.fusion = None if fusion is None else dict(fusion)
        self.pipeline_cfg = None if pipeline is None else list(pipeline)
        self.batch_size = batch_size
        self._pipeline = None
        self._state: dict | None = None  # the last refit, as saved in checkpoints

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _dataset(runner) -> MultiRaterCocoDataset:
        dataset = runner.train_dataloader.dataset
        while not isinstance(dataset, MultiRaterCocoDataset) and hasattr(dataset, 'dataset'):
            dataset = dataset.dataset  # RepeatDataset, ClassBalancedDataset
        if not isinstance(dataset, MultiRaterCocoDataset):
            raise TypeError(
                'DetectorRaterHook: the train dataset must be a MultiRaterCocoDataset '
                f'(possibly wrapped), got {type(runner.train_dataloader.dataset).__name__}'
            )
        if dataset.aggregator is None:
            raise ValueError(
                f"DetectorRaterHook: {dataset.ann_file}: fusion method 'prefused' cannot be "
                'refit: give the dataset an aggregator (fusion=dict(method=...))'
            )
        return dataset

    def _aggregator(self, dataset: MultiRaterCocoDataset):
        spec = dict(self.fusion or dataset.fusion or {'method': 'na', 'confidence': 'agreement'})
        method = spec.pop('method')
        if method == 'bayes':
            spec.setdefault('detector', self.rater_id)
        return build_aggregator(method, **spec)

    def before_train(self, runner) -> None:
        dataset = self._dataset(runner)
        if self.pipeline_cfg is None:
            for key in ('test_dataloader', 'val_dataloader'):
                loader_cfg = runner.cfg.get(key)
                if loader_cfg and loader_cfg.get('dataset', {}).get('pipeline'):
                    self.pipeline_cfg = list(loader_cfg['dataset']['pipeline'])
                    break
            else:
                raise ValueError(
                    'DetectorRaterHook: no pipeline given and the config has no '
                    'test_dataloader / val_dataloader pipeline to predict with'
                )
        self._pipeline = Compose(self.pipeline_cfg)
        self._aggregator(dataset)  # fail now, not after the warm-up, on a bad fusion
        if not hasattr(runner.train_loop, 'max_epochs'):
            raise TypeError('DetectorRaterHook: needs an epoch-based train loop')

    def _due(self, epoch: int) -> bool:
        """Whether a refit follows train epoch ``epoch`` (1-based)."""
        return epoch >= self.warmup_epochs and (epoch - self.warmup_epochs) % self.interval == 0

    # ------------------------------------------------------------------ the refit
    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch + 1
        if not self._due(epoch):
            return
        dataset = self._dataset(runner)
        t0 = time.perf_counter()
        predictions = self._predict(runner, dataset)
        t1 = time.perf_counter()
        fused = None
        if get_rank() == 0:
            fused, summary = self._refit(dataset, predictions)
            runner.logger.info(f'DetectorRaterHook: epoch {epoch}: {summary}')
        holder = [fused]
        if get_world_size() > 1:
            broadcast_object_list(holder, src=0)
        fused = holder[0]
        dataset.set_fused(fused)
        t2 = time.perf_counter()
        self._state = _pack(fused, epoch)
        runner.message_hub.update_scalar('train/refit_predict_s', t1 - t0)
        runner.message_hub.update_scalar('train/refit_fit_s', t2 - t1)
        runner.logger.info(
            f'DetectorRaterHook: epoch {epoch}: predicted {len(dataset)} images in '
            f'{t1 - t0:.1f} s, fit and fused in {t2 - t1:.1f} s'
        )
        self._restart_workers(runner)

    @torch.no_grad()
    def _predict(self, runner, dataset) -> dict[int, tuple[np.ndarray, ...]]:
        """index -> (boxes (N, 4) xyxy pixels, scores, labels) for every image, on rank 0
        (each rank predicts every world_size-th image)."""
        model = runner.model
        was_training = model.training
        model.eval()
        mine: dict[int, tuple[np.ndarray, ...]] = {}
        try:
            indices = list(range(get_rank(), len(dataset), get_world_size()))
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                data = pseudo_collate([self._pipeline(dataset.get_data_info(i)) for i in batch])
                for i, sample in zip(batch, model.test_step(data)):
                    pred = sample.pred_instances
                    mine[i] = (
                        pred.bboxes.detach().cpu().numpy().astype(np.float64),
                        pred.scores.detach().cpu().numpy().astype(np.float64),
                        pred.labels.detach().cpu().numpy().astype(np.int64),
                    )
        finally:
            model.train(was_training)
        if get_world_size() == 1:
            return mine
        merged: dict[int, tuple[np.ndarray, ...]] = {}
        for part in all_gather_object(mine):
            merged.update(part)
        return merged

    def _refit(self, dataset, predictions) -> tuple[list[Detections], str]:
        images = dataset.rater_boxes()
        with_detector = []
        n_det = 0
        for idx, im in enumerate(images):
            if self.rater_id in im.raters:
                raise ValueError(
                    f'DetectorRaterHook: image {im.image_id!r} has a rater named '
                    f'{self.rater_id!r}: choose another rater_id'
                )
            if not im.raters:  # nobody read it: unlabelled, the detector does not label it
                with_detector.append(im)
                continue
            boxes, scores, labels = predictions[idx]
            keep = np.flatnonzero(scores >= self.score_thr)
            keep = keep[np.argsort(-scores[keep], kind='stable')][: self.max_per_image]
            b = boxes[keep].copy()
            b[:, 0::2] = np.clip(b[:, 0::2], 0.0, im.width or np.inf)
            b[:, 1::2] = np.clip(b[:, 1::2], 0.0, im.height or np.inf)
            ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            b, lab = b[ok], labels[keep][ok]
            n_det += len(b)
            with_detector.append(
                Detections.from_raters(
                    np.concatenate([im.boxes, b]),
                    np.concatenate([im.labels, lab]),
                    np.concatenate([im.rater_ids, np.full(len(b), self.rater_id)]),
                    (*im.raters, self.rater_id),
                    width=im.width,
                    height=im.height,
                    image_id=im.image_id,
                )
            )
        aggregator = self._aggregator(dataset)
        aggregator.fit(with_detector)
        fused = [aggregator(im) for im in with_detector]
        n_boxes = sum(len(f) for f in fused)
        summary = (
            f'{n_det} detector boxes (score >= {self.score_thr}) joined '
            f'{sum(len(im) for im in images)} rater boxes -> {n_boxes} fused boxes'
        )
        model = getattr(aggregator, 'model', None)
        if n_boxes:
            confidence = np.concatenate([f.confidence for f in fused])
            summary += f', mean c {float(confidence.mean()):.3f}'
        if model is not None and self.rater_id in (getattr(model, 'raters_', None) or ()):
            i = model.raters_.index(self.rater_id)
            for name in ('sensitivity_', 'fp_per_image_', 'box_sigma_'):
                if hasattr(model, name):
                    summary += f', detector {name[:-1]} {float(getattr(model, name)[i]):.3f}'
        return fused, summary

    @staticmethod
    def _restart_workers(runner) -> None:
        loader = runner.train_dataloader
        if not (loader.persistent_workers and loader.num_workers > 0):
            return
        for hook in runner.hooks:
            if isinstance(hook, RandomStateHook):
                hook.restart_workers(runner)
                return
        if loader._iterator is not None:
            loader._iterator._shutdown_workers()
            loader._iterator = None

    # ------------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._state is not None:
            checkpoint[CHECKPOINT_KEY] = self._state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:  # load_from: weights only, a new run fuses from the raters
            return
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            return
        dataset = self._dataset(runner)
        fused = _unpack(state)
        if len(fused) != len(dataset):
            raise ValueError(
                f'DetectorRaterHook: the checkpoint holds fused targets for {len(fused)} '
                f'images, the training set has {len(dataset)}'
            )
        dataset.set_fused(fused)
        self._state = state
        runner.logger.info(
            f'DetectorRaterHook: fused targets of the refit after epoch {state["epoch"]} restored'
        )


def _pack(fused: Sequence[Detections], epoch: int) -> dict[str, Any]:
    """The fused targets of every image as a few tensors (checkpoint-safe)."""
    cat = np.concatenate
    return dict(
        epoch=int(epoch),
        counts=torch.as_tensor([len(f) for f in fused], dtype=torch.int64),
        num_raters=torch.as_tensor([int(f.num_raters) for f in fused], dtype=torch.int64),
        boxes=torch.from_numpy(
            cat([np.asarray(f.boxes, np.float32).reshape(-1, 4) for f in fused])
        ),
        labels=torch.from_numpy(cat([np.asarray(f.labels, np.int64).reshape(-1) for f in fused])),
        confidence=torch.from_numpy(
            cat([np.asarray(f.confidence, np.float32).reshape(-1) for f in fused])
        ),
        agreement=torch.from_numpy(
            cat([np.asarray(f.agreement, np.int64).reshape(-1) for f in fused])
        ),
    )


def _unpack(state: Mapping[str, Any]) -> list[Detections]:
    """Inverse of :func:`_pack` (members are not kept)."""
    ends = np.cumsum(state['counts'].numpy())
    starts = ends - state['counts'].numpy()
    arrays = {k: state[k].numpy() for k in ('boxes', 'labels', 'confidence', 'agreement')}
    return [
        Detections.fused(
            boxes=arrays['boxes'][s:e],
            labels=arrays['labels'][s:e],
            confidence=arrays['confidence'][s:e],
            agreement=arrays['agreement'][s:e],
            num_raters=int(r),
        )
        for s, e, r in zip(starts.tolist(), ends.tolist(), state['num_raters'].tolist())
    ]
