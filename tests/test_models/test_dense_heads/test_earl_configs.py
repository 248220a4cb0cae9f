"""The example configs: mmdet's RetinaNet / YOLOX-S configs as ``_base_`` with the EARL
head, the multi-rater dataset and the fusion transforms swapped in, built and trained for
one iteration (mmengine Runner) on a tiny generated multi-rater set."""

from __future__ import annotations

import copy
from pathlib import Path

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from tests.tiny_data import make_tiny_coco

ROOT = Path(__file__).resolve().parents[3]
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
RETINA = ROOT / 'configs/coco/retinanet_r50_fpn_wbf-earl_1x_coco.py'
YOLOX = ROOT / 'configs/coco/yolox_s_wbf-earl_8xb8-300e_coco.py'
CLASSES = ('c0', 'c1', 'c2')


def _without(cfg: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in cfg.items() if k not in keys}


def _plain(obj):
    """Config content without the ``_scope_`` keys mmengine adds for ``mmdet::`` bases."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


@pytest.mark.parametrize(
    'path, base, head',
    [
        (RETINA, 'retinanet/retinanet_r50_fpn_1x_coco.py', 'EARLRetinaHead'),
        (YOLOX, 'yolox/yolox_s_8xb8-300e_coco.py', 'EARLYOLOXHead'),
    ],
)
def test_config_changes_only_head_type_and_training_data(path, base, head):
    cfg, ref = Config.fromfile(str(path)), Config.fromfile(str(MMDET_CONFIGS / base))
    assert cfg.filename != ref.filename
    assert cfg.model.bbox_head.type == head
    # the model section is mmdet's apart from the head type and its EARL options
    model, ref_model = _plain(cfg.model.to_dict()), _plain(ref.model.to_dict())
    model['bbox_head'] = _without(model['bbox_head'], ('type', 'earl_cfg'))
    ref_model['bbox_head'] = _without(ref_model['bbox_head'], ('type',))
    assert model == ref_model
    # evaluation, schedule, hooks and optimiser untouched
    for key in (
        'val_dataloader',
        'val_evaluator',
        'train_cfg',
        'optim_wrapper',
        'param_scheduler',
        'default_hooks',
        'custom_hooks',
    ):
        assert _plain(cfg.get(key)) == _plain(ref.get(key)), key
    assert cfg.custom_imports == dict(imports=['earl_mmdet'], allow_failed_imports=False)


def _tiny_runner_cfg(path: Path, tmp_path: Path, yolox: bool) -> Config:
    """The example config pointed at a tiny set, small images, one iteration, no val."""
    # two images, batch 2: one epoch is one iteration; image 2 has a box that only two of
    # the three raters drew (c < 1)
    data = make_tiny_coco(tmp_path / 'data', num_images=2, size=96)
    cfg = Config.fromfile(str(path))
    metainfo = dict(classes=CLASSES)
    cfg.model.bbox_head.num_classes = len(CLASSES)
    cfg.model.backbone.init_cfg = None  # no pretrained download
    loader = cfg.train_dataloader
    inner = loader.dataset.dataset if yolox else loader.dataset
    inner.update(
        data_root='',
        ann_file=data['multi'],
        data_prefix=dict(img=data['img_dir']),
        metainfo=metainfo,
        filter_cfg=dict(filter_empty_gt=False),
    )
    if yolox:
        scale = (96, 96)
        for t in loader.dataset.pipeline:
            if t.type in ('Mosaic', 'MixUp', 'Resize'):
                t[('img_scale' if 'img_scale' in t else 'scale')] = scale
            if t.type == 'RandomAffine':
                t.border = (-scale[0] // 2, -scale[1] // 2)
        cfg.model.data_preprocessor.batch_augments = None
    else:
        for t in inner.pipeline:
            if t.type == 'Resize':
                t.scale = (96, 96)
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.pop('batch_sampler', None)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=100)
    for key in (
        'val_dataloader',
        'val_evaluator',
        'val_cfg',
        'test_dataloader',
        'test_evaluator',
        'test_cfg',
    ):
        cfg[key] = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.launcher = 'none'
    return cfg


@pytest.mark.parametrize(
    'path, yolox',
    [
        pytest.param(RETINA, False, id='retinanet'),
        pytest.param(YOLOX, True, id='yolox', marks=pytest.mark.slow),  # ~25 s on 2 cores
    ],
)
def test_example_config_trains_one_iteration(path, yolox, tmp_path):
    torch.manual_seed(0)
    cfg = _tiny_runner_cfg(path, tmp_path, yolox)
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    model = runner.model
    head_type = 'EARLYOLOXHead' if yolox else 'EARLRetinaHead'
    assert type(model.bbox_head).__name__ == head_type
    # the pipeline must really deliver c to the head: otherwise EARL silently weighs 1
    dataset = runner.train_dataloader.dataset
    batch = pseudo_collate([dataset[0], dataset[1]])
    confidence = [s.gt_instances.confidence for s in batch['data_samples']]
    assert all(
        c.dtype == torch.float32 and len(c) == len(s.gt_instances)
        for c, s in zip(confidence, batch['data_samples'])
    )
    assert torch.cat(confidence).numel() > 0 and bool((torch.cat(confidence) < 1).any())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    runner.train()
    assert runner.iter == 1
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith('bbox_head.') for n in changed)
    # and on this batch the EARL loss differs from the stock head's (c < 1 somewhere)
    init_default_scope('mmdet')
    data = model.data_preprocessor(batch, True)
    model.train()
    earl_losses = model.loss(data['inputs'], data['data_samples'])
    for s in data['data_samples']:
        del s.gt_instances.confidence
    plain_losses = model.loss(data['inputs'], data['data_samples'])
    earl_bbox = sum(earl_losses['loss_bbox']) if not yolox else earl_losses['loss_bbox']
    plain_bbox = sum(plain_losses['loss_bbox']) if not yolox else plain_losses['loss_bbox']
    assert torch.isfinite(earl_bbox) and not torch.allclose(earl_bbox, plain_bbox)
