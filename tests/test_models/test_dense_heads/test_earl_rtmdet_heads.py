"""EARL RTMDet / ATSS / GFL heads against mmdet's own heads (the oracle), every policy."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from mmdet.models.dense_heads import ATSSHead, GFLHead, RTMDetHead, RTMDetSepBNHead, TOODHead
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from earl_mmdet.models.dense_heads import (
    EARLATSSHead,
    EARLGFLHead,
    EARLRTMDetHead,
    EARLRTMDetSepBNHead,
    earl_head_class,
    make_earl_head,
)
from earl_mmdet.models.earl_weights import boxes_in_regions, points_in_regions
from tests.test_models import earl_head_utils as eh

_TRAIN_CFG = dict(allowed_border=-1, pos_weight=-1, debug=False)


def rtmdet_kwargs(
    num_classes: int = eh.NUM_CLASSES, strides=eh.STRIDES, sep_bn: bool = True, **extra
) -> dict:
    """RTMDet-tiny's head arguments (mmdet's rtmdet_tiny_8xb32-300e_coco.py), toy width."""
    head = dict(
        num_classes=num_classes,
        in_channels=eh.CHANNELS,
        feat_channels=eh.CHANNELS,
        stacked_convs=1,
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=list(strides)),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        with_objectness=False,
        norm_cfg=dict(type='BN'),
        act_cfg=dict(type='SiLU', inplace=True),
        train_cfg=ConfigDict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), **_TRAIN_CFG),
    )
    if sep_bn:
        head.update(exp_on_reg=False, share_conv=True, pred_kernel_size=1)
    head.update(extra)
    return head


def _anchor_kwargs() -> dict:
    return dict(
        num_classes=eh.NUM_CLASSES,
        in_channels=eh.CHANNELS,
        feat_channels=eh.CHANNELS,
        stacked_convs=1,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=4,
            scales_per_octave=1,
            strides=list(eh.STRIDES),
        ),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        train_cfg=ConfigDict(assigner=dict(type='ATSSAssigner', topk=9), **_TRAIN_CFG),
    )


def atss_kwargs() -> dict:
    """ATSSHead arguments as in mmdet's atss_r50_fpn_1x_coco.py, toy width."""
    return dict(
        _anchor_kwargs(),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
        ),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
    )


def gfl_kwargs() -> dict:
    """GFLHead arguments as in mmdet's gfl_r50_fpn_1x_coco.py, toy width."""
    return dict(
        _anchor_kwargs(),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
    )


#: (stock class, EARL class, arguments, the positives-only box loss terms)
HEADS = {
    'rtmdet_sepbn': (RTMDetSepBNHead, EARLRTMDetSepBNHead, rtmdet_kwargs(), ('loss_bbox',)),
    'rtmdet': (RTMDetHead, EARLRTMDetHead, rtmdet_kwargs(sep_bn=False), ('loss_bbox',)),
    'atss': (ATSSHead, EARLATSSHead, atss_kwargs(), ('loss_bbox', 'loss_centerness')),
    'gfl': (GFLHead, EARLGFLHead, gfl_kwargs(), ('loss_bbox', 'loss_dfl')),
}

#: options under which c = 1 (or no confidence) must give the stock head exactly
STOCK_EQUIVALENT_CFGS = [
    None,
    dict(normalize='weight_sum'),
    dict(policy='soft'),
    dict(policy='soft', normalize='weight_sum', gamma=2.0),
    dict(policy='ignore'),
    dict(policy='ignore', weight_kept=True, normalize='weight_sum'),
    dict(terms=('bbox',)),
]


def _pair(name: str, earl_cfg: dict | None = None) -> tuple[nn.Module, nn.Module]:
    stock_cls, earl_cls, kwargs, _ = HEADS[name]
    stock = eh.build(stock_cls, kwargs)
    return stock, eh.clone_into(earl_cls, kwargs, stock, earl_cfg=earl_cfg)


@pytest.mark.parametrize('name', HEADS)
@pytest.mark.parametrize('earl_cfg', STOCK_EQUIVALENT_CFGS)
def test_equals_stock_at_full_confidence(name, earl_cfg):
    stock, earl = _pair(name, earl_cfg)
    ref = eh.assert_equals_stock(stock, earl, eh.ONES)
    assert all(float(v) > 0 for v in ref.values())  # every term is exercised
    for module in earl.modules():  # the hooks are gone again
        assert not module._forward_pre_hooks and not module._forward_hooks
    assert earl._earl_state is None


@pytest.mark.parametrize('name', HEADS)
def test_equals_stock_without_confidence(name):
    stock, earl = _pair(name, dict(policy='soft', normalize='weight_sum'))
    eh.assert_equals_stock(stock, earl, None)


# -- RTMDet equality beyond the fixture: strides, image sizes, batch, classes ---------------


def _random_samples(batch, img_shape, pad_shape, num_classes, seed, confidence_one=True):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(batch):
        num = 0 if i == batch - 1 else int(torch.randint(1, 6, (1,), generator=g))
        h, w = img_shape
        xy = torch.rand(num, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 4 + torch.rand(num, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]) - 1.0)], dim=1)
        gt = InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (num,), generator=g))
        if confidence_one:
            gt.confidence = torch.ones(num)
        samples.append(
            DetDataSample(
                metainfo=dict(
                    img_shape=img_shape,
                    pad_shape=pad_shape,
                    batch_input_shape=pad_shape,
                    scale_factor=(1.0, 1.0),
                ),
                gt_instances=gt,
            )
        )
    return samples


@pytest.mark.parametrize(
    'strides, img_shape, pad_shape, batch, num_classes, extra',
    [
        ((8, 16, 32), (64, 64), (64, 64), 3, 3, {}),
        ((4, 8), (40, 72), (48, 80), 2, 1, dict(with_objectness=True)),
        ((8, 16, 32, 64), (100, 90), (128, 96), 4, 7, dict(share_conv=False, exp_on_reg=True)),
    ],
)
@pytest.mark.parametrize('earl_cfg', [None, dict(policy='soft', normalize='weight_sum')])
def test_rtmdet_equals_stock_in_general(
    strides, img_shape, pad_shape, batch, num_classes, extra, earl_cfg
):
    kwargs = rtmdet_kwargs(num_classes, strides, **extra)
    stock = eh.build(RTMDetSepBNHead, kwargs, seed=7)
    earl = eh.clone_into(EARLRTMDetSepBNHead, kwargs, stock, earl_cfg=earl_cfg)
    g = torch.Generator().manual_seed(3)
    feats = [
        torch.randn(batch, eh.CHANNELS, -(-pad_shape[0] // s), -(-pad_shape[1] // s), generator=g)
        for s in strides
    ]
    for seed in (0, 1):
        samples = _random_samples(batch, img_shape, pad_shape, num_classes, seed)
        plain = _random_samples(batch, img_shape, pad_shape, num_classes, seed, False)
        ref_losses, ref_grads = eh.loss_and_grads(stock, feats, plain)
        losses, grads = eh.loss_and_grads(earl, feats, samples)
        eh.assert_same(losses, ref_losses)
        eh.assert_same(grads, ref_grads)


# -- what c does: a c = 0 box, an ignored box ----------------------------------------------


def _capture_labels(head: nn.Module, name: str) -> list[Tensor]:
    """Spy on ``head.loss_by_feat_single``: the flat labels of each level it is given."""
    captured: list[Tensor] = []
    original = head.loss_by_feat_single
    signature = inspect.signature(HEADS[name][0].loss_by_feat_single)  # mmdet's arguments

    def spy(*args, **kwargs):
        labels = signature.bind(head, *args, **kwargs).arguments['labels']
        captured.append(labels.reshape(-1).clone())
        return original(*args, **kwargs)

    head.loss_by_feat_single = spy
    return captured


def _output_grads(head: nn.Module, feats: list[Tensor], samples: list) -> tuple[dict, list]:
    """Losses, and the gradient of their sum w.r.t. each head output as (rows, channels)
    per output kind, rows ordered as the heads' targets (level, image, location)."""
    torch.manual_seed(0)
    outs = [[o.detach().requires_grad_() for o in kind] for kind in head(tuple(feats))]
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    losses = head.loss_by_feat(*outs, gts, metas)
    eh.total_loss(losses).backward()
    grads = [
        torch.cat([o.grad.permute(0, 2, 3, 1).reshape(-1, o.shape[1]) for o in kind])
        for kind in outs
    ]
    return eh.flat_losses(losses), grads


BOX_A = [10.0, 12.0, 46.0, 50.0]  # image 0
BOX_B = [20.0, 6.0, 60.0, 40.0]  # image 1


@pytest.mark.parametrize('name', HEADS)
@pytest.mark.parametrize('policy', ['earl', 'soft'])
def test_zero_confidence_box_has_no_positive_loss(name, policy):
    stock, earl = _pair(name, dict(policy=policy))
    feats = eh.make_feats(batch=2)
    labels = _capture_labels(stock, name)
    ref_losses, ref = _output_grads(stock, feats, eh.make_samples([[BOX_A], [BOX_B]], [[2], [1]]))
    samples = eh.make_samples([[BOX_A], [BOX_B]], [[2], [1]], [[0.0], [1.0]])
    _, got = _output_grads(earl, feats, samples)
    pos = torch.cat(labels) < eh.NUM_CLASSES
    image = torch.cat([torch.arange(2).repeat_interleave(len(lv) // 2) for lv in labels])
    pos_a = pos & (image == 0)
    assert bool(pos_a.any()) and bool((pos & (image == 1)).any())
    for kind, (ref_grad, grad) in enumerate(zip(ref, got)):
        assert bool((ref_grad[pos_a] != 0).any())  # the stock head trains them
        if kind == 0 and policy == 'soft':  # target 0: trained down like a negative
            assert bool((grad[pos_a, 2] > 0).all())
        else:
            torch.testing.assert_close(grad[pos_a], torch.zeros_like(grad[pos_a]))
        # the c = 1 box and every negative: as the stock head (same normalisers)
        torch.testing.assert_close(grad[~pos_a], ref_grad[~pos_a])


@pytest.mark.parametrize('name', HEADS)
def test_ignored_box_is_neither_positive_nor_negative(name):
    stock, earl = _pair(name, dict(policy='ignore', ignore_below=0.5))
    feats = eh.make_feats(batch=2)
    # the stock head without the ignored box, the EARL head with it (c = 1/3 < 0.5)
    _, ref = _output_grads(stock, feats, eh.make_samples([[], [BOX_B]], [[], [1]]))
    labels = _capture_labels(earl, name)
    samples = eh.make_samples([[BOX_A], [BOX_B]], [[2], [1]], [[1 / 3], [1.0]])
    _, got = _output_grads(earl, feats, samples)
    assert not bool((labels[0][: len(labels[0]) // 2] < eh.NUM_CLASSES).any())  # no positive
    # the priors it covers: classification weight 0; all the rest as without the box
    sizes = [(eh.IMG // s, eh.IMG // s) for s in eh.STRIDES]
    if isinstance(earl, RTMDetHead):
        priors = earl.prior_generator.grid_priors(sizes, device='cpu', with_stride=True)
        inside = [points_in_regions(p, torch.tensor([BOX_A])) for p in priors]
    else:
        priors = earl.prior_generator.grid_priors(sizes, device='cpu')
        inside = [boxes_in_regions(p, torch.tensor([BOX_A]), 0.5) for p in priors]
    covered = torch.cat([torch.cat([m, torch.zeros_like(m)]) for m in inside])  # image 0 only
    assert bool(covered.any())
    cls_ref, cls_got = ref[0], got[0]
    assert bool((cls_ref[covered] != 0).all())
    torch.testing.assert_close(cls_got[covered], torch.zeros_like(cls_got[covered]))
    torch.testing.assert_close(cls_got[~covered], cls_ref[~covered])
    for ref_grad, grad in zip(ref[1:], got[1:]):
        torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize('name', HEADS)
def test_positive_terms_scale_with_confidence(name):
    # one box per image: its positive box terms are linear in w (num_pos normaliser)
    _, _, _, box_terms = HEADS[name]
    stock, earl = _pair(name)
    feats = eh.make_feats(batch=1)
    ref = eh.loss_and_grads(stock, feats, eh.make_samples([[BOX_A]], [[2]]))[0]
    got = eh.loss_and_grads(earl, feats, eh.make_samples([[BOX_A]], [[2]], [[0.25]]))[0]
    for term in box_terms:
        torch.testing.assert_close(got[term], 0.25 * ref[term])
    assert 0 < got['loss_cls'] < ref['loss_cls']


@pytest.mark.parametrize('name', ['atss'])  # RTMDet / GFL: sum of s_i < 1 at init
def test_weight_sum_box_normalisers_are_weighted(name):
    # a single box: sum_i w s_i L_i / sum_i w s_i is the stock value, whatever w (here the
    # normalisers stay above mmdet's clamp at 1)
    _, _, _, box_terms = HEADS[name]
    stock, earl = _pair(name, dict(normalize='weight_sum'))
    feats = eh.make_feats(batch=1)
    ref = eh.loss_and_grads(stock, feats, eh.make_samples([[BOX_A]], [[2]]))[0]
    got = eh.loss_and_grads(earl, feats, eh.make_samples([[BOX_A]], [[2]], [[2.0]]))[0]
    for term in box_terms:
        torch.testing.assert_close(got[term], ref[term])


def test_soft_target_is_quality_times_q():
    # GFL / RTMDet: loss_cls gets (labels, score * q) for the positives, q = min(1, w)
    stock, earl = _pair('rtmdet_sepbn', dict(policy='soft'))
    seen, stock_seen = [], []
    earl.loss_cls.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    stock.loss_cls.register_forward_hook(lambda m, args, out: stock_seen.append(args[1]))
    feats = eh.make_feats(batch=1)
    eh.loss_and_grads(stock, feats, eh.make_samples([[BOX_A]], [[2]]))
    eh.loss_and_grads(earl, feats, eh.make_samples([[BOX_A]], [[2]], [[0.4]]))
    for (labels, score), (ref_labels, ref_score) in zip(seen, stock_seen):
        assert torch.equal(labels, ref_labels)
        torch.testing.assert_close(score, ref_score * 0.4)


def test_soft_focal_loss_on_atss():
    # ATSS: per level, sum of (alpha t + (1 - alpha)(1 - t)) BCE(p, t) |t - p| ** gamma,
    # t = q, over the positives' class elements plus the focal loss of every other element,
    # label-weighted, / avg_factor
    _, earl = _pair('atss', dict(policy='soft'))
    calls = []
    earl.loss_cls.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    feats = eh.make_feats(batch=1)
    got = eh.loss_and_grads(earl, feats, eh.make_samples([[BOX_A]], [[2]], [[0.4]]))[0]
    expected, num_pos = 0.0, 0
    for (pred, labels, weight), kwargs in calls:
        assert not labels.is_floating_point()  # mmdet's call, with labels
        pos = labels < eh.NUM_CLASSES
        num_pos += int(pos.sum())
        target = torch.zeros_like(pred)
        target[pos, labels[pos]] = 0.4
        p = pred.detach().sigmoid()
        bce = -(target * p.log() + (1 - target) * (1 - p).log())
        alpha = 0.25 * target + 0.75 * (1 - target)  # the focal balance, linear in t
        element = alpha * bce * (target - p).abs() ** 2
        expected += float((element * weight[:, None]).sum()) / kwargs['avg_factor']
    assert num_pos > 0
    assert float(got['loss_cls']) == pytest.approx(expected, rel=1e-4)
    assert not earl.loss_cls._forward_hooks  # only the test's pre-hook is left


def test_soft_refused_for_a_loss_it_cannot_soften():
    activated = dict(type='FocalLoss', use_sigmoid=True, activated=True)
    with pytest.raises(ValueError, match="'soft' on EARLATSSHead needs loss_cls .*FocalLoss"):
        EARLATSSHead(**dict(atss_kwargs(), loss_cls=activated), earl_cfg=dict(policy='soft'))
    kwargs = dict(atss_kwargs(), loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True))
    with pytest.raises(ValueError, match='soft'):
        EARLATSSHead(**kwargs, earl_cfg=dict(policy='soft'))
    head = ATSSHead(**kwargs)
    with pytest.raises(ValueError, match='soft'):
        make_earl_head(head, policy='soft')
    assert type(head) is ATSSHead  # refused before the class swap
    make_earl_head(head, policy='earl')


@pytest.mark.parametrize('name', HEADS)
def test_registered_and_conversion_runs_the_same_class(name):
    stock_cls, earl_cls, kwargs, _ = HEADS[name]
    assert earl_head_class(stock_cls) is earl_cls
    head = MODELS.build(dict(type=earl_cls.__name__, earl_cfg=dict(scale=3.0), **kwargs))
    assert type(head) is earl_cls and head.earl_cfg.scale == 3.0
    copy.deepcopy(head)  # EMAHook deep-copies the model
    converted = make_earl_head(eh.build(stock_cls, kwargs), scale=3.0)
    assert type(converted) is earl_cls


def test_heads_with_other_target_code_are_refused():
    # TOODHead is an ATSSHead with its own targets and losses
    with pytest.raises(TypeError, match='TOODHead'):
        earl_head_class(TOODHead)

    class OwnLossRTMDetHead(RTMDetSepBNHead):
        def loss_by_feat_single(self, *args, **kwargs):
            return super().loss_by_feat_single(*args, **kwargs)

    with pytest.raises(TypeError, match='OwnLossRTMDetHead'):
        earl_head_class(OwnLossRTMDetHead)
