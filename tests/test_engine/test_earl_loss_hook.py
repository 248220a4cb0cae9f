"""EARLLossHook: a stock detector config + the hook trains exactly like the EARL heads."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import MODEL_WRAPPERS, init_default_scope
from mmengine.runner import Runner
from torch import nn

from earl_mmdet.engine.hooks import EARLLossHook
from earl_mmdet.models import make_earl_detector
from earl_mmdet.models.dense_heads import (
    EARLRetinaHead,
    EARLRPNHead,
    EARLYOLOXHead,
    is_earl_head,
)
from earl_mmdet.models.roi_heads import EARLStandardRoIHead
from tests.test_models import earl_head_utils as eh
from tests.test_models.test_dense_heads.test_earl_configs import RETINA, YOLOX, _tiny_runner_cfg
from tests.tiny_data import make_tiny_coco, tiny_retinanet_config

ROOT = Path(__file__).resolve().parents[2]
MEDMNIST_FRCNN = ROOT / 'configs/medmnist/faster-rcnn_r18_fpn_wbf_20e_medmnist-cpu.py'


@MODEL_WRAPPERS.register_module(name='_EARLTestWrapper', force=True)
class _Wrapper(nn.Module):
    """Stands in for MMDistributedDataParallel (``is_model_wrapper`` -> ``.module``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _fake_runner(model: nn.Module) -> SimpleNamespace:
    return SimpleNamespace(model=model, logger=MMLogger.get_current_instance())


def _faster_rcnn(**model_overrides) -> nn.Module:
    """The MED-MNIST Faster R-CNN (ResNet-18 FPN) for 3 classes, seeded weights."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(MEDMNIST_FRCNN))
    cfg.merge_from_dict({'model.roi_head.bbox_head.num_classes': 3, **model_overrides})
    cfg = cfg.model
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def _detector_run(model: nn.Module, samples: list) -> tuple[dict, dict]:
    model.zero_grad()
    inputs = torch.randn(
        len(samples), 3, eh.IMG, eh.IMG, generator=torch.Generator().manual_seed(3)
    )
    torch.manual_seed(0)  # samplers
    losses = model.loss(inputs, samples)
    eh.total_loss(losses).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return eh.flat_losses(losses), grads


def test_hook_makes_faster_rcnn_earl_with_stock_losses_at_c1():
    stock = _faster_rcnn()
    model = copy.deepcopy(stock)
    hook = EARLLossHook(earl_cfg=dict())
    hook.before_train(_fake_runner(_Wrapper(model)))  # DDP-style wrapper: via .module
    assert hook.converted == ['rpn_head', 'roi_head']
    assert type(model.rpn_head) is EARLRPNHead and type(model.roi_head) is EARLStandardRoIHead
    assert is_earl_head(model.roi_head.bbox_head)
    eh.assert_same(model.state_dict(), stock.state_dict(), rtol=0, atol=0)
    # c = 1: every loss and every gradient of the detector equals stock Faster R-CNN's
    ref_losses, ref_grads = _detector_run(stock, eh.make_samples(eh.BOXES, eh.LABELS))
    losses, grads = _detector_run(model, eh.make_samples(eh.BOXES, eh.LABELS, eh.ONES))
    eh.assert_same(losses, ref_losses, rtol=0, atol=0)
    eh.assert_same(grads, ref_grads, rtol=1e-6, atol=1e-7)
    # the hook runs the config types' code: EARLRPNHead + EARLStandardRoIHead from config
    typed = _faster_rcnn(
        **{'model.rpn_head.type': 'EARLRPNHead', 'model.roi_head.type': 'EARLStandardRoIHead'}
    )
    assert type(typed.rpn_head) is EARLRPNHead and type(typed.roi_head) is EARLStandardRoIHead
    typed.load_state_dict(model.state_dict())
    hook_c, typed_c = (
        _detector_run(m, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))
        for m in (model, typed)
    )
    eh.assert_same(hook_c[0], typed_c[0], rtol=0, atol=0)
    assert not torch.allclose(hook_c[0]['loss_bbox'], ref_losses['loss_bbox'])
    # every box c = 0: no positive box loss in either stage
    zeros = [[0.0] * len(b) for b in eh.BOXES]
    zero_losses, _ = _detector_run(model, eh.make_samples(eh.BOXES, eh.LABELS, zeros))
    assert ref_losses['loss_rpn_bbox'] > 0 and ref_losses['loss_bbox'] > 0
    assert zero_losses['loss_rpn_bbox'] == 0 and zero_losses['loss_bbox'] == 0


def test_hook_options_and_refusals():
    model = _faster_rcnn()
    EARLLossHook(earl_cfg=dict(scale=3.0), heads=('roi_head',)).before_train(_fake_runner(model))
    assert type(model.rpn_head).__name__ == 'RPNHead'  # restricted to the RoI head
    assert type(model.roi_head) is EARLStandardRoIHead
    # already EARL with the same options: nothing to do; other options: refused, untouched
    assert make_earl_detector(model, dict(scale=3.0), heads=('roi_head',)) == ['roi_head']
    with pytest.raises(ValueError, match='already EARL'):
        EARLLossHook(earl_cfg=dict(scale=2.0)).before_train(_fake_runner(model))
    assert type(model.rpn_head).__name__ == 'RPNHead'  # checked all before converting any
    with pytest.raises(ValueError, match='mask_head'):
        EARLLossHook(heads=('mask_head',))
    with pytest.raises(ValueError, match='unknown key'):
        EARLLossHook(earl_cfg=dict(sclae=3.0))  # bad options fail when the hook is built
    with pytest.raises(TypeError, match='no head'):
        make_earl_detector(nn.Linear(2, 2))


def test_hook_refuses_unsupported_head_at_start_up(tmp_path):
    data = make_tiny_coco(tmp_path / 'data', num_images=2)
    cfg = Config.fromfile(tiny_retinanet_config(data, str(tmp_path / 'work'), max_epochs=1))
    cfg.model.bbox_head.type = 'FreeAnchorRetinaHead'  # own loss: EARL cannot weight it
    cfg.custom_hooks = [dict(type='EARLLossHook')]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(TypeError, match='EARLLossHook: model.bbox_head .*FreeAnchorRetinaHead'):
        runner.train()
    assert runner.iter == 0  # before the first optimizer step


class _RecordLosses(Hook):
    def __init__(self) -> None:
        self.losses: list[dict] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append({k: v.detach().clone() for k, v in outputs.items()})


def _train(cfg: Config) -> tuple[list[dict], dict, type]:
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    record = _RecordLosses()
    runner.register_hook(record)
    runner.train()
    model = runner.model
    return (
        record.losses,
        {k: v.clone() for k, v in model.state_dict().items()},
        type(model.bbox_head),
    )


@pytest.mark.parametrize(
    'path, yolox',
    [
        pytest.param(RETINA, False, id='retinanet'),
        pytest.param(YOLOX, True, id='yolox', marks=pytest.mark.slow),  # ~50 s on 2 cores
    ],
)
def test_stock_config_plus_hook_trains_like_earl_head_config(path, yolox, tmp_path):
    # the EARL example config (mmdet's config + multi-rater dataset + fusion + EARL head
    # type) against mmdet's model config + the same data + EARLLossHook: two iterations
    earl = _tiny_runner_cfg(path, tmp_path, yolox)
    earl.train_cfg.max_epochs = 2
    earl.randomness = dict(seed=0)
    hooked = copy.deepcopy(earl)
    stock_head = 'YOLOXHead' if yolox else 'RetinaHead'
    hooked.model.bbox_head.type = stock_head
    earl_cfg = hooked.model.bbox_head.pop('earl_cfg', None)  # None: the paper's settings
    hooked.custom_hooks = [
        *hooked.get('custom_hooks', []),
        dict(type='EARLLossHook', earl_cfg=earl_cfg),
    ]
    mmdet_model = Config.fromfile(
        str(
            Path(mmdet.__file__).parent
            / '.mim/configs'
            / (
                'yolox/yolox_s_8xb8-300e_coco.py'
                if yolox
                else 'retinanet/retinanet_r50_fpn_1x_coco.py'
            )
        )
    ).model
    assert hooked.model.bbox_head.type == mmdet_model.bbox_head.type  # a stock head
    earl_losses, earl_state, earl_type = _train(earl)
    hook_losses, hook_state, hook_type = _train(hooked)
    assert earl_type is hook_type and (earl_type is EARLRetinaHead) != yolox
    assert len(earl_losses) == len(hook_losses) == 2
    for a, b in zip(earl_losses, hook_losses):
        eh.assert_same(a, b, rtol=1e-6, atol=1e-7)
    eh.assert_same(earl_state, hook_state, rtol=1e-6, atol=1e-7)
    # and the stock head without the hook trains differently on this data (c < 1 boxes)
    if not yolox:
        hooked.custom_hooks = hooked.custom_hooks[:-1]
        stock_losses, _, stock_type = _train(hooked)
        assert stock_type.__name__ == stock_head
        assert not torch.allclose(stock_losses[0]['loss_bbox'], earl_losses[0]['loss_bbox'])


def test_medmnist_yolox_plus_hook_trains_like_its_earl_twin(tmp_path):
    # the CPU YOLOX pair that differs by one token: wbf (stock YOLOXHead) + the hook vs
    # wbf-earl (EARLYOLOXHead); one epoch of two iterations on a tiny MED-MNIST layout
    from tests.test_configs import _layout, _set_data_root, _shrink

    root = str(_layout(tmp_path, tuple(str(d) for d in range(10)), ('R1', 'R2', 'R3'))) + '/'
    cfgs = []
    for name in ('yolox_nano_wbf-earl_20e_medmnist-cpu.py', 'yolox_nano_wbf_20e_medmnist-cpu.py'):
        cfg = Config.fromfile(str(ROOT / 'configs/medmnist' / name))
        _set_data_root(cfg.train_dataloader, root, 'train.json')
        _shrink(cfg.train_dataloader)
        cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
        cfg.train_dataloader.pop('batch_sampler', None)
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=10)
        cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
        cfg.param_scheduler = []
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'TrustOwnCheckpointsHook']
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000, save_last=False)
        cfg.work_dir = str(tmp_path / name)
        cfgs.append(cfg)
    earl, hooked = cfgs
    hooked.custom_hooks.append(
        dict(type='EARLLossHook', earl_cfg=earl.model.bbox_head.get('earl_cfg'))
    )
    earl_losses, earl_state, earl_type = _train(earl)
    hook_losses, hook_state, hook_type = _train(hooked)
    assert earl_type is hook_type and earl_type.__name__ == 'EARLYOLOXHead'
    assert len(earl_losses) == len(hook_losses) == 2
    for a, b in zip(earl_losses, hook_losses):
        eh.assert_same(a, b, rtol=1e-6, atol=1e-7)
    eh.assert_same(earl_state, hook_state, rtol=1e-6, atol=1e-7)


MEDMNIST_YOLOX = ROOT / 'configs/medmnist/yolox_nano_wbf_20e_medmnist-cpu.py'
MMDET_RETINA = Path(mmdet.__file__).parent / '.mim/configs/retinanet/retinanet_r50_fpn_1x_coco.py'


def _stock_detector(path: Path) -> nn.Module:
    """A detector of a config whose heads are mmdet's (3 classes), seeded weights."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(path))
    cfg.model.bbox_head.num_classes = 3
    cfg.model.backbone.init_cfg = None  # no pretrained download
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def _stock_at_c1_changed_at_confidence(stock: nn.Module, model: nn.Module) -> tuple[dict, dict]:
    """Check that ``model`` at c = 1 has ``stock``'s losses and gradients; return the
    stock losses and ``model``'s losses with uncertain boxes (``eh.CONFIDENCE``)."""
    ref_losses, ref_grads = _detector_run(stock, eh.make_samples(eh.BOXES, eh.LABELS))
    losses, grads = _detector_run(model, eh.make_samples(eh.BOXES, eh.LABELS, eh.ONES))
    eh.assert_same(losses, ref_losses, rtol=0, atol=0)
    eh.assert_same(grads, ref_grads, rtol=1e-6, atol=1e-7)
    changed, _ = _detector_run(model, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))
    return ref_losses, changed


@pytest.mark.parametrize('policy', ['soft', 'ignore'])
@pytest.mark.parametrize(
    'path, earl_type',
    [
        pytest.param(MMDET_RETINA, EARLRetinaHead, id='retinanet'),
        pytest.param(MEDMNIST_YOLOX, EARLYOLOXHead, id='yolox'),
    ],
)
def test_hook_policy_reaches_the_converted_head(path, earl_type, policy):
    stock = _stock_detector(path)
    model = copy.deepcopy(stock)
    hook = EARLLossHook(earl_cfg=dict(policy=policy, ignore_below=0.4))
    hook.before_train(_fake_runner(model))
    assert hook.converted == ['bbox_head'] and type(model.bbox_head) is earl_type
    assert model.bbox_head.earl_cfg.policy == policy
    assert model.bbox_head.earl_cfg.ignore_below == 0.4
    ref_losses, changed = _stock_at_c1_changed_at_confidence(stock, model)
    assert not torch.allclose(changed['loss_cls'], ref_losses['loss_cls'])


def test_hook_fails_naming_the_head_that_refuses_the_policy():
    model = _faster_rcnn()
    msg = (
        r"EARLLossHook: model.roi_head \(StandardRoIHead\): earl_cfg.policy 'soft' is "
        'not implemented for StandardRoIHead'
    )
    with pytest.raises(ValueError, match=msg):
        EARLLossHook(earl_cfg=dict(policy='soft')).before_train(_fake_runner(model))
    assert type(model.rpn_head).__name__ == 'RPNHead'  # refused before any conversion
    # the RPN alone implements it
    EARLLossHook(earl_cfg=dict(policy='soft'), heads=('rpn_head',)).before_train(
        _fake_runner(model)
    )
    assert type(model.rpn_head) is EARLRPNHead and model.rpn_head.earl_cfg.policy == 'soft'


def test_hook_ignore_on_faster_rcnn_equals_stock_when_nothing_is_ignored():
    stock = _faster_rcnn()
    model = copy.deepcopy(stock)
    EARLLossHook(earl_cfg=dict(policy='ignore')).before_train(_fake_runner(model))
    assert type(model.rpn_head) is EARLRPNHead and type(model.roi_head) is EARLStandardRoIHead
    assert model.roi_head.bbox_head.earl_cfg.policy == 'ignore'
    ref_losses, changed = _stock_at_c1_changed_at_confidence(stock, model)
    assert not torch.allclose(changed['loss_rpn_cls'], ref_losses['loss_rpn_cls'])
    assert not torch.allclose(changed['loss_cls'], ref_losses['loss_cls'])
