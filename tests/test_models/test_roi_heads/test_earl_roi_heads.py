"""EARL in two-stage detectors: RPN, StandardRoIHead and CascadeRoIHead vs mmdet's own.

Oracle for "which rows are positives": the stock head's box-regression gradient, which is
non-zero exactly on the positive anchors / RoIs (only they have a box loss).
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import nn

from earl_mmdet.models.dense_heads import EARLRPNHead, is_earl_head, make_earl_head
from earl_mmdet.models.roi_heads import EARLCascadeRoIHead, EARLStandardRoIHead
from tests.test_models import earl_head_utils as eh

ZERO_FIRST = [[0.0, 0.0, 0.0], [1.0, 1.0], []]  # image 0: every box c = 0; image 1: c = 1


def _bbox_head(reg_class_agnostic: bool) -> dict:
    return dict(
        type='Shared2FCBBoxHead',
        in_channels=eh.CHANNELS,
        fc_out_channels=16,
        roi_feat_size=7,
        num_classes=eh.NUM_CLASSES,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
        ),
        reg_class_agnostic=reg_class_agnostic,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    )


def _rcnn(pos_iou_thr: float) -> ConfigDict:
    return ConfigDict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=pos_iou_thr,
            neg_iou_thr=pos_iou_thr,
            min_pos_iou=pos_iou_thr,
            match_low_quality=False,
            ignore_iof_thr=-1,
        ),
        # add_gt_as_proposals: the gt boxes are positives too (pos_assigned_gt_inds still
        # index the image's gts)
        sampler=dict(
            type='RandomSampler', num=48, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
        ),
        pos_weight=-1,
        debug=False,
    )


_EXTRACTOR = dict(
    type='SingleRoIExtractor',
    roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
    out_channels=eh.CHANNELS,
    featmap_strides=list(eh.STRIDES),
)
STANDARD = dict(
    bbox_roi_extractor=_EXTRACTOR, bbox_head=_bbox_head(False), train_cfg=_rcnn(0.5)
)  # Faster R-CNN
CASCADE = dict(
    num_stages=2,
    stage_loss_weights=[1.0, 0.5],
    bbox_roi_extractor=_EXTRACTOR,
    bbox_head=[_bbox_head(True), _bbox_head(True)],
    train_cfg=[_rcnn(0.5), _rcnn(0.6)],
)  # Cascade R-CNN, two stages


def _build(cls: type, kwargs: dict, **extra) -> nn.Module:
    torch.manual_seed(0)
    head = cls(**copy.deepcopy(kwargs), **extra)
    head.init_weights()
    head.train()
    return head


def _proposals(batch: int, num: int = 30) -> list[InstanceData]:
    """Random boxes plus each image's gts jittered (so that several RoIs are positive)."""
    g = torch.Generator().manual_seed(2)
    out = []
    for i in range(batch):
        xy = torch.rand(num, 2, generator=g) * (eh.IMG - 16)
        wh = 8 + torch.rand(num, 2, generator=g) * 32
        boxes = [torch.cat([xy, (xy + wh).clamp(max=eh.IMG)], 1)]
        if eh.BOXES[i]:
            gt = torch.tensor(eh.BOXES[i])
            boxes += [gt + torch.randn(gt.shape, generator=g) * 2 for _ in range(3)]
        out.append(InstanceData(bboxes=torch.cat(boxes)))
    return out


def _capture_outputs(head: nn.Module, outputs: list) -> list:
    """Forward hooks that keep each call's outputs, with their gradients retained."""

    def hook(module, args, result):
        for t in result:
            for x in t if isinstance(t, (list, tuple)) else [t]:
                x.retain_grad()
        outputs.append(result)

    return [head.register_forward_hook(hook)]


def _roi_run(head: nn.Module, feats: list, samples: list) -> tuple[dict, dict, list]:
    """Losses, gradients (parameters + features), and per-stage (rois, cls/bbox grads)."""
    feats = [f.detach().clone().requires_grad_() for f in feats]
    bbox_heads = head.bbox_head if isinstance(head.bbox_head, nn.ModuleList) else [head.bbox_head]
    extractors = head.bbox_roi_extractor
    extractors = extractors if isinstance(extractors, nn.ModuleList) else [extractors]
    outputs, rois = [], []
    handles = [h for b in bbox_heads for h in _capture_outputs(b, outputs)]
    handles += [
        e.register_forward_hook(lambda m, args, r: rois.append(args[1].detach()))
        for e in extractors
    ]
    head.zero_grad()
    torch.manual_seed(0)  # RandomSampler: the same RoIs for every head
    try:
        losses = head.loss(tuple(feats), _proposals(len(samples)), samples)
        eh.total_loss(losses).backward()
    finally:
        for h in handles:
            h.remove()
    grads = {n: p.grad.detach().clone() for n, p in head.named_parameters() if p.grad is not None}
    grads.update({f'feat{i}': f.grad.detach().clone() for i, f in enumerate(feats)})
    rows = [(r, cls.grad, bbox.grad) for r, (cls, bbox) in zip(rois, outputs)]
    return eh.flat_losses(losses), grads, rows


@pytest.mark.parametrize(
    'stock_cls, kwargs, earl_cls',
    [
        (StandardRoIHead, STANDARD, EARLStandardRoIHead),  # Faster R-CNN's second stage
        (CascadeRoIHead, CASCADE, EARLCascadeRoIHead),  # every stage weighted
    ],
)
def test_roi_head_with_confidence_one_equals_stock(stock_cls, kwargs, earl_cls):
    stock = _build(stock_cls, kwargs)
    registered = eh.clone_into(earl_cls, copy.deepcopy(kwargs), stock, earl_cfg=dict())
    converted = make_earl_head(eh.clone_into(stock_cls, copy.deepcopy(kwargs), stock))
    assert type(converted) is earl_cls
    heads = (
        converted.bbox_head
        if isinstance(converted.bbox_head, nn.ModuleList)
        else [converted.bbox_head]
    )
    assert all(is_earl_head(b) for b in heads)
    feats = eh.make_feats(batch=3)
    ref = _roi_run(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    assert ref[0]['loss_bbox' if stock_cls is StandardRoIHead else 's1.loss_bbox'] > 0
    for head in (registered, converted):
        got = _roi_run(head, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.ONES))
        eh.assert_same(got[0], ref[0], rtol=0, atol=0)
        eh.assert_same(got[1], ref[1], rtol=1e-6, atol=1e-7)
    copy.deepcopy(converted)  # EMAHook deep-copies the model


def _check_rows(got_rows: list, ref_rows: list, zero_images: set[int], scale_neg: float = 1.0):
    """Positive rows of ``zero_images`` have no gradient; the others match the stock head's
    (negative rows times ``scale_neg``). Returns the number of silenced positive rows."""
    silenced = 0
    for (rois, cls_g, bbox_g), (ref_rois, ref_cls_g, ref_bbox_g) in zip(got_rows, ref_rows):
        assert torch.equal(rois, ref_rois)  # same sampled RoIs
        pos = ref_bbox_g.abs().sum(1) > 0
        off = pos & torch.isin(rois[:, 0].long(), torch.tensor(sorted(zero_images)))
        silenced += int(off.sum())
        assert torch.all(cls_g[off] == 0) and torch.all(bbox_g[off] == 0)
        keep_pos = pos & ~off
        torch.testing.assert_close(cls_g[keep_pos], ref_cls_g[keep_pos], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(bbox_g[keep_pos], ref_bbox_g[keep_pos], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(
            cls_g[~pos], ref_cls_g[~pos] * scale_neg, rtol=1e-5, atol=1e-8
        )  # negatives: c never touches them (num_pos keeps mmdet's normaliser)
    return silenced


@pytest.mark.parametrize(
    'stock_cls, kwargs, earl_cls',
    [
        (StandardRoIHead, STANDARD, EARLStandardRoIHead),
        (CascadeRoIHead, CASCADE, EARLCascadeRoIHead),
    ],
)
def test_roi_head_c0_box_has_no_positive_loss(stock_cls, kwargs, earl_cls):
    stock = _build(stock_cls, kwargs)
    earl = eh.clone_into(earl_cls, copy.deepcopy(kwargs), stock, earl_cfg=dict())
    feats = eh.make_feats(batch=3)
    ref = _roi_run(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    got = _roi_run(earl, feats, eh.make_samples(eh.BOXES, eh.LABELS, ZERO_FIRST))
    assert _check_rows(got[2], ref[2], zero_images={0}) > 0


def test_roi_weight_sum_normaliser():
    # every box c = 0 with normalize='weight_sum': the cls normaliser drops from the
    # number of sampled RoIs N to N - P (the positives count 0), so each negative's
    # gradient grows by N / (N - P); positives are silent
    stock = _build(StandardRoIHead, STANDARD)
    earl = eh.clone_into(
        EARLStandardRoIHead, copy.deepcopy(STANDARD), stock, earl_cfg=dict(normalize='weight_sum')
    )
    feats = eh.make_feats(batch=3)
    ref = _roi_run(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    zeros = [[0.0] * len(lab) for lab in eh.LABELS]
    got = _roi_run(earl, feats, eh.make_samples(eh.BOXES, eh.LABELS, zeros))
    ((rois, _, ref_bbox_g),) = ref[2]
    n, p = rois.shape[0], int((ref_bbox_g.abs().sum(1) > 0).sum())
    assert _check_rows(got[2], ref[2], zero_images={0, 1, 2}, scale_neg=n / (n - p)) == p > 0
    assert got[0]['loss_bbox'] == 0


def test_bbox_head_without_earl_roi_head_is_an_error():
    # an EARL bbox head under a stock RoI head cannot see c: it must not weigh 1 silently
    head = _build(StandardRoIHead, STANDARD)
    make_earl_head(head.bbox_head)
    with pytest.raises(RuntimeError, match='RoI head is not EARL'):
        _roi_run(head, eh.make_feats(batch=3), eh.make_samples(eh.BOXES, eh.LABELS, eh.ONES))


def _rpn_run(head: nn.Module, feats: list, samples: list) -> tuple[dict, list]:
    feats = [f.detach().clone().requires_grad_() for f in feats]
    outputs: list = []
    handles = _capture_outputs(head, outputs)
    head.zero_grad()
    torch.manual_seed(0)  # RPN's RandomSampler: the same anchors for every head
    try:
        losses = head.loss(tuple(feats), samples)
        eh.total_loss(losses).backward()
    finally:
        for h in handles:
            h.remove()
    ((cls_scores, bbox_preds),) = outputs
    return eh.flat_losses(losses), [(c.grad, b.grad) for c, b in zip(cls_scores, bbox_preds)]


def test_rpn_c0_box_has_no_positive_loss():
    kwargs = eh.rpn_kwargs()
    torch.manual_seed(0)
    stock = RPNHead(**kwargs)
    stock.init_weights()
    earl = eh.clone_into(EARLRPNHead, eh.rpn_kwargs(), stock, earl_cfg=dict())
    labels = [[0] * len(lab) for lab in eh.LABELS]  # TwoStageDetector gives the RPN label 0
    feats = eh.make_feats(batch=3)
    ref_losses, ref = _rpn_run(stock, feats, eh.make_samples(eh.BOXES, labels))
    ones_losses, _ = _rpn_run(earl, feats, eh.make_samples(eh.BOXES, labels, eh.ONES))
    eh.assert_same(ones_losses, ref_losses, rtol=0, atol=0)
    _, got = _rpn_run(earl, feats, eh.make_samples(eh.BOXES, labels, ZERO_FIRST))
    silenced = 0
    for (cls_g, bbox_g), (ref_cls_g, ref_bbox_g) in zip(got, ref):
        b, a4, h, w = ref_bbox_g.shape
        pos = ref_bbox_g.view(b, a4 // 4, 4, h, w).abs().sum(2) > 0  # (B, A, H, W)
        off = pos.clone()
        off[1:] = False  # image 0's positives: c = 0
        silenced += int(off.sum())
        assert torch.all(cls_g[off] == 0)
        assert torch.all(bbox_g.view(b, a4 // 4, 4, h, w).permute(0, 1, 3, 4, 2)[off] == 0)
        torch.testing.assert_close(cls_g[~off], ref_cls_g[~off], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(bbox_g[1:], ref_bbox_g[1:], rtol=1e-5, atol=1e-8)
    assert silenced > 0


@pytest.mark.parametrize(
    'stock_cls, kwargs, earl_cls',
    [
        (StandardRoIHead, STANDARD, EARLStandardRoIHead),
        (CascadeRoIHead, CASCADE, EARLCascadeRoIHead),
    ],
)
@pytest.mark.parametrize(
    'confidence, earl_cfg',
    [
        (eh.ONES, dict(policy='ignore')),
        (eh.CONFIDENCE, dict(policy='ignore', ignore_below=0.1)),  # c < 1, nothing ignored
    ],
)
def test_roi_ignore_equals_stock_when_nothing_is_ignored(
    stock_cls, kwargs, earl_cls, confidence, earl_cfg
):
    stock = _build(stock_cls, kwargs)
    earl = eh.clone_into(earl_cls, copy.deepcopy(kwargs), stock, earl_cfg=earl_cfg)
    feats = eh.make_feats(batch=3)
    ref = _roi_run(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    got = _roi_run(earl, feats, eh.make_samples(eh.BOXES, eh.LABELS, confidence))
    eh.assert_same(got[0], ref[0], rtol=0, atol=0)
    eh.assert_same(got[1], ref[1], rtol=1e-6, atol=1e-7)


def test_roi_ignored_box_is_neither_positive_nor_negative():
    # image 0's third box (c = 0.2) is an ignore region: the RoIs are those of the stock
    # head on the two kept boxes (not added as a proposal, no positive); the sampled
    # negatives in the region have no loss, and leave BBoxHead's cls normaliser
    stock = _build(StandardRoIHead, STANDARD)
    earl = eh.clone_into(
        EARLStandardRoIHead, copy.deepcopy(STANDARD), stock, earl_cfg=dict(policy='ignore')
    )
    feats = eh.make_feats(batch=3)
    kept = [eh.BOXES[0][:2], *eh.BOXES[1:]]
    kept_labels = [eh.LABELS[0][:2], *eh.LABELS[1:]]
    confidence = [[1.0, 1.0, 0.2], [1.0, 1.0], []]
    ref = _roi_run(stock, feats, eh.make_samples(kept, kept_labels))
    got = _roi_run(earl, feats, eh.make_samples(eh.BOXES, eh.LABELS, confidence))
    ((rois, cls_g, bbox_g),) = got[2]
    ((ref_rois, ref_cls_g, ref_bbox_g),) = ref[2]
    assert torch.equal(rois, ref_rois)  # same proposals, same sampled RoIs
    pos = ref_bbox_g.abs().sum(1) > 0
    region = torch.tensor([eh.BOXES[0][2]])
    iof = bbox_overlaps(rois[:, 1:], region, mode='iof')[:, 0]
    covered = (rois[:, 0] == 0) & (iof >= 0.5) & ~pos
    n, k = rois.shape[0], int(covered.sum())
    assert k > 0
    assert torch.all(cls_g[covered] == 0)
    # the rest: stock, the cls loss divided by n - k sampled RoIs with a weight instead of n
    torch.testing.assert_close(cls_g[~covered], ref_cls_g[~covered] * n / (n - k))
    torch.testing.assert_close(bbox_g, ref_bbox_g)
    torch.testing.assert_close(got[0]['loss_bbox'], ref[0]['loss_bbox'])


def test_roi_soft_is_refused_by_name():
    with pytest.raises(ValueError, match="policy 'soft' is not implemented for StandardRoIHead"):
        EARLStandardRoIHead(earl_cfg=dict(policy='soft'), **copy.deepcopy(STANDARD))
