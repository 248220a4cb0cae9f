"""DetectorRaterHook: the detector joins the raters, the fusion is refit, in place.

A tiny MED-MNIST-config training (4 images, batch 2: 2 iterations per epoch, 3 epochs,
warm-up 1, refit every epoch) runs with the hook, and a run stopped after epoch 2 and
resumed equals the straight run (weights, EMA weights, fused targets, logged losses); with
persistent workers and with tools/dist_train.sh. Checked by hand while writing: without
restarting the persistent workers after a refit, or without restoring the fused targets
on resume, the resumed run differs (388 weight tensors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from earl_core.structures import Detections
from tests.test_engine.test_resume_exact import _logged, _train, _weights
from tests.test_engine.test_resume_exact import _tiny_config as _resume_config
from tests.tiny_data import make_tiny_coco

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / 'configs/medmnist/yolox_nano_bayes-loop-soft_20e_medmnist-cpu.py'


def _tiny_config(data: dict[str, str], path: Path, num_workers: int) -> str:
    """The bayes-loop-soft MED-MNIST config on the tiny set; the hook refits after every
    epoch from the first on, keeps the detector's boxes from score 0.01 and keeps every
    detector-only cluster (so that a refit changes the targets even this early)."""
    hooks = """custom_hooks = [
    *_base_.custom_hooks[:-1],
    dict(type='DetectorRaterHook', warmup_epochs=1, interval=1, score_thr=0.01,
         max_per_image=5, fusion=dict(method='bayes', detector_min_presence=0.0)),
]
"""
    return _resume_config(data, path, num_workers, base=BASE, extra=hooks)


def _dataset(tmp_path: Path):
    from mmdet.registry import DATASETS

    import earl_mmdet  # noqa: F401  (registration)

    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    return DATASETS.build(
        dict(
            type='MultiRaterCocoDataset',
            data_root=data['root'],
            ann_file='multi.json',
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=('c0', 'c1', 'c2')),
            fusion=dict(method='bayes'),
            pipeline=[],
        )
    )


def _predictions(dataset, shift: float = 0.0) -> dict[int, tuple[np.ndarray, ...]]:
    """A 'detector' that finds each fused box (moved by ``shift`` px) plus one false box."""
    out = {}
    for i in range(len(dataset)):
        inst = dataset.get_data_info(i)['instances']
        boxes = [np.asarray(x['bbox']) + shift for x in inst] + [np.array([1.0, 1, 9, 9])]
        labels = [x['bbox_label'] for x in inst] + [0]
        out[i] = (np.stack(boxes), np.full(len(boxes), 0.9), np.asarray(labels, np.int64))
    return out


def test_refit_is_deterministic_and_adds_the_detector_as_a_rater(tmp_path):
    from earl_mmdet.engine.hooks import DetectorRaterHook

    dataset = _dataset(tmp_path)
    hook = DetectorRaterHook(fusion=dict(method='bayes', detector_min_presence=0.0))
    preds = _predictions(dataset)
    a, summary = hook._refit(dataset, preds)
    b, _ = hook._refit(dataset, preds)
    for x, y in zip(a, b):
        for name in ('boxes', 'labels', 'confidence', 'agreement'):
            assert np.array_equal(getattr(x, name), getattr(y, name)), name
    assert 'detector boxes' in summary and 'detector sensitivity' in summary
    # the false box (1, 1, 9, 9) is a detector-only cluster, kept (detector_min_presence 0)
    assert all(any(r == ('detector',) for r in f.member_raters) for f in a)
    assert all(f.num_raters == 3 for f in a)  # R counts the raters, not the detector
    before = sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))
    dataset.set_fused(a)
    after = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert sum(len(d['instances']) for d in after) == before + len(dataset)
    assert np.array_equal(after[0]['gt_confidence'], a[0].confidence)


def test_set_fused_reaches_persistent_workers_after_a_restart(tmp_path):
    """A persistent worker keeps its copy of the dataset until the hook restarts it."""
    from torch.utils.data import DataLoader

    from earl_mmdet.engine.hooks import DetectorRaterHook

    dataset = _dataset(tmp_path)
    loader = DataLoader(
        dataset, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=list
    )

    class Runner:  # what the hook reads of mmengine's Runner
        train_dataloader = loader
        hooks: list = []

    def fused_confidence() -> list[float]:
        (batch,) = list(loader)
        return [c for d in batch for c in d['gt_confidence'].tolist()]

    first = fused_confidence()
    halved = [
        Detections.fused(f.boxes, f.labels, f.confidence * 0.5, f.agreement, f.num_raters)
        for f in _unpack_dataset(dataset)
    ]
    dataset.set_fused(halved)
    assert fused_confidence() == first  # the worker still holds the old copy
    DetectorRaterHook._restart_workers(Runner)
    assert fused_confidence() == [0.5 * c for c in first]
    loader._iterator._shutdown_workers()


def _unpack_dataset(dataset) -> list[Detections]:
    out = []
    for i in range(len(dataset)):
        d = dataset.get_data_info(i)
        boxes = np.asarray([x['bbox'] for x in d['instances']], np.float32).reshape(-1, 4)
        labels = np.asarray([x['bbox_label'] for x in d['instances']], np.int64)
        out.append(Detections.fused(boxes, labels, d['gt_confidence'], d['gt_agreement'], 3))
    return out


@pytest.mark.parametrize(
    'kwargs, name',
    [
        (dict(warmup_epochs=0), 'warmup_epochs'),  # a refit before any training
        (dict(interval=1.5), 'interval'),
        (dict(score_thr=1.0), 'score_thr'),
        (dict(max_per_image=0), 'max_per_image'),
        (dict(batch_size=True), 'batch_size'),  # a bool is not a count
        (dict(rater_id=''), 'rater_id'),
        (dict(fusion='bayes'), 'fusion'),  # a dict with 'method'
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    from earl_mmdet.engine.hooks import DetectorRaterHook

    with pytest.raises(ValueError, match=name):
        DetectorRaterHook(**kwargs)


def test_tiny_training_refits_after_every_epoch(tmp_path):
    """3 epochs of 2 iterations, warm-up 1, refit every epoch: three refits, the last one's
    fused targets in the checkpoint, with the detector's boxes among them."""
    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    cfg = _tiny_config(data, tmp_path / 'cfg.py', num_workers=0)
    work = str(tmp_path / 'work')
    _train(cfg, work, 3, tmp_path / 'key')
    log = '\n'.join(p.read_text() for p in Path(work).rglob('*.log'))
    for epoch in (1, 2, 3):
        assert f'DetectorRaterHook: epoch {epoch}: ' in log
    state = torch.load(f'{work}/epoch_3.pth', weights_only=False)['fusion_refit']
    assert state['epoch'] == 3 and state['counts'].shape == (4,)
    first = torch.load(f'{work}/epoch_1.pth', weights_only=False)['fusion_refit']
    assert int(state['counts'].sum()) > 5  # the 5 rater objects plus the detector's boxes
    assert first['epoch'] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    'num_workers, procs',
    [
        (0, 1),  # loading in the main process
        (2, 1),  # 2 persistent workers: restarted after each refit
        (2, 2),  # tools/dist_train.sh, 2 gloo processes: rank 0 fits, broadcast
    ],
)
def test_resumed_run_equals_straight_run(tmp_path, num_workers, procs):
    data = make_tiny_coco(tmp_path / 'data', num_images=4)
    cfg = _tiny_config(data, tmp_path / 'cfg.py', num_workers)
    key = tmp_path / 'key'
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    _train(cfg, resumed, 2, key, procs=procs)
    _train(cfg, straight, 3, key, procs=procs)
    _train(cfg, resumed, 3, key, '--resume', procs=procs)

    a, b = _logged(straight), _logged(resumed)
    after = sorted(k for k in a if k[0] == 3)
    assert after and {k: a[k] for k in after} == {k: b[k] for k in after}
    wa, wb = _weights(f'{straight}/epoch_3.pth'), _weights(f'{resumed}/epoch_3.pth')
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    fa = torch.load(f'{straight}/epoch_3.pth', weights_only=False)['fusion_refit']
    fb = torch.load(f'{resumed}/epoch_3.pth', weights_only=False)['fusion_refit']
    assert fa['epoch'] == fb['epoch'] == 3
    for k in ('counts', 'num_raters', 'boxes', 'labels', 'confidence', 'agreement'):
        assert torch.equal(fa[k], fb[k]), k
    # the refits changed the targets (else resuming them would prove nothing)
    assert int(fa['counts'].sum()) > 5
