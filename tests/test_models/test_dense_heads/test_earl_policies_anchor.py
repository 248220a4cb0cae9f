"""Loss policies 'soft' and 'ignore' on the anchor heads, against mmdet's RetinaHead /
RPNHead (the oracle) and hand-computed losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import RetinaHead, RPNHead, SSDHead
from mmdet.models.losses import CrossEntropyLoss, FocalLoss
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.structures.bbox import bbox_overlaps

from earl_mmdet.models.dense_heads import (
    EARLRetinaHead,
    EARLRPNHead,
    earl_head_class,
    make_earl_head,
)
from earl_mmdet.models.dense_heads.earl_anchor_heads import soft_focal_forward
from tests.test_models import earl_head_utils as eh
from tests.test_models.test_dense_heads.test_earl_anchor_heads import _targets

HEADS = {
    'retina': (RetinaHead, EARLRetinaHead, eh.retina_kwargs),
    'rpn': (RPNHead, EARLRPNHead, eh.rpn_kwargs),
}


def _rpn_labels(labels):
    return [[0] * len(lab) for lab in labels]  # RPN: one class


@pytest.mark.parametrize('name', ['retina', 'rpn'])
@pytest.mark.parametrize(
    'confidence, earl_cfg',
    [
        (eh.ONES, dict(policy='soft')),
        (None, dict(policy='soft', gamma=2.0)),
        (eh.ONES, dict(policy='ignore')),
        (eh.ONES, dict(policy='ignore', weight_kept=True)),
        # c < 1 but above the threshold: nothing ignored, kept boxes weigh 1
        (eh.CONFIDENCE, dict(policy='ignore', ignore_below=0.1)),
        (eh.ONES, dict(policy='soft', normalize='weight_sum')),
    ],
)
def test_policies_equal_stock_when_nothing_is_uncertain(name, confidence, earl_cfg):
    stock_cls, earl_cls, make_kwargs = HEADS[name]
    kwargs = make_kwargs()
    stock = eh.build(stock_cls, kwargs)
    earl = eh.clone_into(earl_cls, kwargs, stock, earl_cfg=earl_cfg)
    labels = _rpn_labels(eh.LABELS) if name == 'rpn' else eh.LABELS
    ref = eh.assert_equals_stock(stock, earl, confidence, labels)
    assert all(v > 0 for v in ref.values())


def _iof(anchors: torch.Tensor, region: list[float]) -> torch.Tensor:
    """Oracle: intersection / anchor area of each anchor with one region (mmdet's op)."""
    return bbox_overlaps(anchors, torch.tensor([region]), mode='iof')[:, 0]


@pytest.mark.parametrize('unmap_outputs', [True, False])
@pytest.mark.parametrize('name', ['retina', 'rpn'])
def test_ignored_box_is_neither_positive_nor_negative(name, unmap_outputs):
    # box A (c = 1) is kept, box B (c = 0.2 < ignore_below) becomes an ignore region
    # that also covers positives of A.
    # allowed_border=0 makes the inside anchors' indices differ from all anchors'.
    stock_cls, earl_cls, make_kwargs = HEADS[name]
    kwargs = make_kwargs()
    kwargs['train_cfg']['allowed_border'] = 0
    stock = eh.build(stock_cls, kwargs)
    earl = eh.clone_into(earl_cls, kwargs, stock, earl_cfg=dict(policy='ignore'))
    box_a, box_b = [30.0, 26.0, 62.0, 58.0], [16.0, 10.0, 50.0, 44.0]  # overlapping
    labels = [[0, 0]] if name == 'rpn' else [[0, 1]]
    torch.manual_seed(0)
    samples = eh.make_samples([[box_a, box_b]], labels, [[1.0, 0.2]])
    (got,) = _targets(earl, samples, unmap_outputs)
    torch.manual_seed(0)
    (only_a,) = _targets(stock, eh.make_samples([[box_a]], [labels[0][:1]]), unmap_outputs)
    sizes = [(eh.IMG // s, eh.IMG // s) for s in eh.STRIDES]
    anchors, valid = stock.get_anchors(sizes, [samples[0].metainfo], device='cpu')
    anchors = torch.cat(anchors[0])
    if not unmap_outputs:
        anchors = anchors[anchor_inside_flags(anchors, torch.cat(valid[0]), (eh.IMG, eh.IMG), 0)]
    assert got[1].shape[0] == anchors.shape[0]
    # assignment: exactly the positives of box A alone (none for B)
    torch.testing.assert_close(got[0], only_a[0])
    torch.testing.assert_close(got[4], only_a[4])
    positive = only_a[0] < stock.num_classes
    in_b = _iof(anchors, box_b) >= earl.earl_cfg.ignore_iof
    covered = in_b & ~positive
    assert (in_b & positive).any()  # a positive of A in B's region: it stays positive
    counted = only_a[1] > 0  # stock: sampled / weighted anchors
    assert (covered & counted).sum() > 0  # negatives of the stock head in B's region
    expected = only_a[1].masked_fill(covered, 0.0)
    torch.testing.assert_close(got[1], expected)  # those, and only those, get weight 0
    torch.testing.assert_close(got[3], only_a[3])  # box weights: positives of A only
    assert (got[1][covered] == 0).all() and (got[3][covered] == 0).all()


def test_ignored_box_gets_no_gradient_on_its_anchors():
    kwargs = eh.retina_kwargs()
    head = eh.build(EARLRetinaHead, kwargs, earl_cfg=dict(policy='ignore', ignore_below=0.5))
    boxes = [[[34.0, 30.0, 62.0, 62.0], [2.0, 2.0, 30.0, 30.0]]]
    samples = eh.make_samples(boxes, [[0, 1]], [[1.0, 0.4]])
    g = torch.Generator().manual_seed(3)
    sizes = [eh.IMG // s for s in eh.STRIDES]
    a = head.num_base_priors
    cls = [torch.randn(1, a * eh.NUM_CLASSES, s, s, generator=g).requires_grad_() for s in sizes]
    reg = [torch.randn(1, a * 4, s, s, generator=g).requires_grad_() for s in sizes]
    losses = head.loss_by_feat(cls, reg, [x.gt_instances for x in samples], [samples[0].metainfo])
    eh.total_loss(losses).backward()
    anchors, _ = head.get_anchors([(s, s) for s in sizes], [samples[0].metainfo], device='cpu')
    in_b = _iof(torch.cat(anchors[0]), boxes[0][1]) >= 0.5
    cls_grad = torch.cat([c.grad.permute(0, 2, 3, 1).reshape(-1, eh.NUM_CLASSES) for c in cls])
    reg_grad = torch.cat([r.grad.permute(0, 2, 3, 1).reshape(-1, 4) for r in reg])
    assert in_b.sum() > 0
    assert torch.count_nonzero(cls_grad[in_b]) == 0  # no positive, no negative loss
    assert torch.count_nonzero(reg_grad[in_b]) == 0
    assert torch.count_nonzero(cls_grad[~in_b]) > 0  # the rest of the image is learnt


def _bce(x: float, t: float) -> float:
    p = 1.0 / (1.0 + math.exp(-x))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _constant_logits_losses(head, x, samples, seed=0):
    """The head's losses for every classification logit = x (one class), zero deltas."""
    sizes = [eh.IMG // s for s in eh.STRIDES]
    a = head.num_base_priors
    cls = [torch.full((1, a, s, s), x) for s in sizes]
    reg = [torch.zeros(1, a * 4, s, s) for s in sizes]
    torch.manual_seed(seed)
    losses = head.loss_by_feat(cls, reg, [s.gt_instances for s in samples], [samples[0].metainfo])
    return eh.flat_losses(losses)


def test_soft_target_focal_loss_hand_computed():
    # one class, every logit x = 0.3, one box with c = q = 0.5: each positive anchor's loss
    # is (alpha q + (1 - alpha)(1 - q)) BCE(p, q) |q - p| ** gamma, each negative's the
    # focal loss (1 - alpha) p ** gamma (-log(1 - p)); mean over positives (alpha = 0.25,
    # gamma = 2)
    kwargs = dict(eh.retina_kwargs(), num_classes=1)
    stock = eh.build(RetinaHead, kwargs)
    soft = eh.clone_into(EARLRetinaHead, kwargs, stock, earl_cfg=dict(policy='soft'))
    box, x, q = [[[10.0, 12.0, 46.0, 50.0]]], 0.3, 0.5
    (ref,) = _targets(stock, eh.make_samples(box, [[0]]))
    num_pos = int((ref[0] == 0).sum())
    num_neg = int(((ref[0] == 1) & (ref[1] > 0)).sum())
    assert num_pos > 0 and num_neg > 0
    got = _constant_logits_losses(soft, x, eh.make_samples(box, [[0]], [[q]]))
    p = 1.0 / (1.0 + math.exp(-x))
    balance = 0.25 * q + 0.75 * (1 - q)  # alpha t + (1 - alpha)(1 - t)
    positive = balance * -(q * math.log(p) + (1 - q) * math.log(1 - p)) * abs(q - p) ** 2
    negative = 0.75 * -math.log(1 - p) * p**2
    expected = (num_pos * positive + num_neg * negative) / num_pos
    assert got['loss_cls'].item() == pytest.approx(expected, rel=1e-5)
    # the box term is weighted by w as under 'earl'
    stock_losses = _constant_logits_losses(stock, x, eh.make_samples(box, [[0]]))
    torch.testing.assert_close(got['loss_bbox'], q * stock_losses['loss_bbox'])


def test_soft_target_rpn_bce_hand_computed():
    kwargs = eh.rpn_kwargs()
    stock = eh.build(RPNHead, kwargs)
    soft = eh.clone_into(EARLRPNHead, kwargs, stock, earl_cfg=dict(policy='soft'))
    box, x, q = [[[10.0, 12.0, 46.0, 50.0]]], -0.4, 0.25
    torch.manual_seed(0)
    (ref,) = _targets(stock, eh.make_samples(box, [[0]]))
    num_pos = int((ref[0] == 0).sum())
    num_neg = int(((ref[0] == 1) & (ref[1] > 0)).sum())
    assert num_pos > 0 and num_neg > 0
    got = _constant_logits_losses(soft, x, eh.make_samples(box, [[0]], [[q]]))
    expected = (num_pos * _bce(x, q) + num_neg * _bce(x, 0.0)) / (num_pos + num_neg)
    assert got['loss_rpn_cls'].item() == pytest.approx(expected, rel=1e-5)


def test_soft_targets_per_box_and_hooks_removed():
    # q per box: the soft head's cls loss lies between hard (q = 1) and 'earl' at c = 0
    kwargs = eh.retina_kwargs()
    stock = eh.build(RetinaHead, kwargs)
    soft = eh.clone_into(EARLRetinaHead, kwargs, stock, earl_cfg=dict(policy='soft'))
    feats = eh.make_feats(batch=3)
    ref, _ = eh.loss_and_grads(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    got, _ = eh.loss_and_grads(soft, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))
    assert not torch.allclose(got['loss_cls'], ref['loss_cls'])
    assert not soft.loss_cls._forward_pre_hooks and not soft.loss_cls._forward_hooks
    assert soft._earl_soft_levels is None


@pytest.mark.parametrize(
    'loss_kwargs, call',
    [
        (dict(), dict()),
        (dict(alpha=0.5, gamma=1.5, loss_weight=2.0), dict(avg_factor=7.0)),
        (dict(reduction='sum'), dict(weight='rows')),
        (dict(), dict(weight='elements', avg_factor=3.0)),
        (dict(), dict(weight='rows', reduction_override='none')),
        (dict(reduction='none'), dict(reduction_override='sum')),
    ],
)
def test_soft_focal_forward_reduces_as_mmdet_focal_loss(loss_kwargs, call):
    # on one-hot targets it is mmdet's FocalLoss, weight / avg_factor / reduction included
    loss_cls = FocalLoss(**loss_kwargs)
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(12, 3, generator=g)
    labels = torch.randint(0, 4, (12,), generator=g)  # 3: background
    weights = {'rows': torch.rand(12, generator=g), 'elements': torch.rand(12, 3, generator=g)}
    call = dict(call, weight=weights.get(call.get('weight')))
    target = F.one_hot(labels, 4)[:, :3]
    expected = loss_cls(pred, labels, **call)
    torch.testing.assert_close(soft_focal_forward(loss_cls, pred, target.float(), **call), expected)
    # a soft target changes the positives' elements only
    none = dict(call, reduction_override='none')
    got = soft_focal_forward(loss_cls, pred, target * 0.5, **none)
    ref = loss_cls(pred, labels, **none)
    neg = target == 0
    torch.testing.assert_close(got[neg], ref[neg])
    assert bool((got[~neg] != ref[~neg]).all())


def test_soft_focal_forward_refuses_other_losses():
    pred, target = torch.zeros(2, 3), torch.zeros(2, 3)
    for loss in (FocalLoss(activated=True), CrossEntropyLoss(use_sigmoid=True)):
        with pytest.raises(TypeError, match='FocalLoss'):
            soft_focal_forward(loss, pred, target)
    with pytest.raises(ValueError, match='weight of shape'):
        soft_focal_forward(FocalLoss(), pred, target, weight=torch.ones(6))
    with pytest.raises(ValueError, match='target of shape'):
        soft_focal_forward(FocalLoss(), pred, torch.zeros(2))


def test_policies_refused_where_not_implemented():
    with pytest.raises(ValueError, match="policy 'soft' is not implemented for EARLSSDHead"):
        earl_head_class(SSDHead)(earl_cfg=dict(policy='soft'), **eh.ssd_kwargs())
    with pytest.raises(ValueError, match="policy 'ignore' is not implemented for EARLSSDHead"):
        earl_head_class(SSDHead)(earl_cfg=dict(policy='ignore'), **eh.ssd_kwargs())
    softmax = dict(eh.rpn_kwargs(), loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))
    with pytest.raises(ValueError, match="'soft' is not implemented for EARLRPNHead .*Cross"):
        EARLRPNHead(earl_cfg=dict(policy='soft'), **softmax)
    stock = RPNHead(**softmax)
    with pytest.raises(ValueError, match="'soft' is not implemented for RPNHead"):
        make_earl_head(stock, policy='soft')
    assert type(stock) is RPNHead  # refused before the class swap
    # without the cls term, the soft target is not used: the loss does not matter
    make_earl_head(stock, policy='soft', terms=('bbox',))
    assert type(stock) is EARLRPNHead


@pytest.mark.parametrize('name', ['retina', 'rpn'])
def test_every_box_ignored_leaves_only_negatives_outside(name):
    stock_cls, earl_cls, make_kwargs = HEADS[name]
    kwargs = make_kwargs()
    stock = eh.build(stock_cls, kwargs)
    earl = eh.clone_into(earl_cls, kwargs, stock, earl_cfg=dict(policy='ignore'))
    box = [[[10.0, 12.0, 46.0, 50.0]]]
    samples = eh.make_samples(box, [[0]], [[0.1]])
    torch.manual_seed(0)
    (got,) = _targets(earl, samples)
    assert got[4].numel() == 0 and (got[0] == earl.num_classes).all()  # no positive
    sizes = [(eh.IMG // s, eh.IMG // s) for s in eh.STRIDES]
    anchors, _ = earl.get_anchors(sizes, [samples[0].metainfo], device='cpu')
    in_box = _iof(torch.cat(anchors[0]), box[0][0]) >= 0.5
    assert in_box.any() and (got[1][in_box] == 0).all() and (got[1][~in_box] > 0).any()
    losses = eh.loss_and_grads(earl, eh.make_feats(batch=1), samples)[0]
    assert losses['loss_bbox' if name == 'retina' else 'loss_rpn_bbox'] == 0
