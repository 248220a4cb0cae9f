"""EARLRetinaHead against mmdet's RetinaHead (the oracle)."""

from __future__ import annotations

import pytest
import torch
from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS

from earl_mmdet.models.dense_heads import EARLRetinaHead
from tests.test_models import earl_head_utils as eh


@pytest.mark.parametrize(
    'confidence, earl_cfg',
    [
        (eh.ONES, None),  # c = 1 everywhere, paper defaults
        (None, None),  # field absent (plain COCO)
        (eh.ONES, dict(normalize='weight_sum')),  # unit weights: weight sum = positive count
        (None, dict(terms=('bbox',), gamma=2.0)),  # absent c ignores every option
    ],
)
def test_equals_stock_retina_head(confidence, earl_cfg):
    kwargs = eh.retina_kwargs()
    stock = eh.build(RetinaHead, kwargs)
    earl = eh.clone_into(EARLRetinaHead, kwargs, stock, earl_cfg=earl_cfg)
    ref_losses = eh.assert_equals_stock(stock, earl, confidence)
    assert ref_losses['loss_bbox'] > 0 and ref_losses['loss_cls'] > 0


def test_registered_and_builds_from_config():
    head = MODELS.build(dict(type='EARLRetinaHead', earl_cfg=dict(scale=3.0), **eh.retina_kwargs()))
    assert isinstance(head, EARLRetinaHead) and isinstance(head, RetinaHead)
    assert head.earl_cfg.scale == 3.0
    with pytest.raises(ValueError, match='obj'):
        EARLRetinaHead(earl_cfg=dict(terms=('cls', 'obj')), **eh.retina_kwargs())


def _targets(head, samples, unmap_outputs=True):
    """Per-image anchor targets via the head's own _get_targets_single (all anchors)."""
    sizes = [(eh.IMG // s, eh.IMG // s) for s in (8, 16, 32)]
    metas = [s.metainfo for s in samples]
    anchors, valid = head.get_anchors(sizes, metas, device='cpu')
    out = []
    for i, s in enumerate(samples):
        out.append(
            head._get_targets_single(
                torch.cat(anchors[i]),
                torch.cat(valid[i]),
                s.gt_instances,
                metas[i],
                unmap_outputs=unmap_outputs,
            )
        )
    return out


def _expected_weights(stock_targets, confidence_by_label):
    """Stock weights with each positive's weight times the c of its gt (found by label)."""
    labels, label_w, _, bbox_w = stock_targets[:4]
    pos = labels < eh.NUM_CLASSES
    factor = torch.ones_like(label_w)
    factor[pos] = confidence_by_label[labels[pos]]
    return label_w * factor, bbox_w * factor[:, None]


@pytest.mark.parametrize('unmap_outputs', [True, False])
def test_border_trap_weight_lands_on_its_anchor(unmap_outputs):
    # allowed_border=0: the large anchors along the image edges are outside, so the inside
    # anchors' indices (pos_inds) differ from all anchors' indices. Two boxes of different
    # classes and confidence values: a weight put on the wrong anchor shows up as a mismatch.
    kwargs = eh.retina_kwargs(allowed_border=0)
    stock = eh.build(RetinaHead, kwargs)
    earl = eh.clone_into(EARLRetinaHead, kwargs, stock)
    boxes = [[[20.0, 18.0, 52.0, 50.0], [2.0, 30.0, 30.0, 62.0]]]
    confidence = torch.tensor([0.25, 0.75])
    (ref,) = _targets(stock, eh.make_samples(boxes, [[0, 1]]), unmap_outputs)
    (got,) = _targets(earl, eh.make_samples(boxes, [[0, 1]], [confidence.tolist()]), unmap_outputs)
    pos_inds = ref[4]
    assert pos_inds.numel() >= 2 and (ref[0] < eh.NUM_CLASSES).sum() == pos_inds.numel()
    confidence_by_label = torch.tensor([0.25, 0.75, 1.0])
    exp_label_w, exp_bbox_w = _expected_weights(ref, confidence_by_label)
    torch.testing.assert_close(got[1], exp_label_w)
    torch.testing.assert_close(got[3], exp_bbox_w)
    torch.testing.assert_close(got[0], ref[0])  # labels and targets untouched
    torch.testing.assert_close(got[2], ref[2])
    if unmap_outputs:
        # the construction defeats the naive index: weights at pos_inds of all anchors
        naive = ref[1].clone()
        naive[pos_inds] *= confidence_by_label[ref[6].pos_gt_labels]
        assert not torch.equal(naive, exp_label_w)
        assert (ref[1] == 0).any()  # some anchors really are outside


def test_zero_confidence_box_has_no_positive_loss():
    kwargs = eh.retina_kwargs()
    head = eh.build(EARLRetinaHead, kwargs)
    stock = eh.clone_into(RetinaHead, kwargs, head)
    boxes = [[[4.0, 6.0, 40.0, 44.0], [30.0, 20.0, 60.0, 50.0]]]
    samples = eh.make_samples(boxes, [[0, 1]], [[0.0, 1.0]])
    g = torch.Generator().manual_seed(3)
    sizes = [eh.IMG // s for s in (8, 16, 32)]
    a = head.num_base_priors
    cls = [torch.randn(1, a * eh.NUM_CLASSES, s, s, generator=g).requires_grad_() for s in sizes]
    reg = [torch.randn(1, a * 4, s, s, generator=g).requires_grad_() for s in sizes]
    losses = head.loss_by_feat(cls, reg, [x.gt_instances for x in samples], [samples[0].metainfo])
    (sum(losses['loss_cls']) + sum(losses['loss_bbox'])).backward()
    labels = _targets(stock, eh.make_samples(boxes, [[0, 1]]))[0][0]
    cls_grad = torch.cat([c.grad.permute(0, 2, 3, 1).reshape(-1, eh.NUM_CLASSES) for c in cls])
    reg_grad = torch.cat([r.grad.permute(0, 2, 3, 1).reshape(-1, 4) for r in reg])
    of_zero_box, of_one_box = labels == 0, labels == 1
    assert of_zero_box.any() and of_one_box.any()
    assert torch.count_nonzero(cls_grad[of_zero_box]) == 0
    assert torch.count_nonzero(reg_grad[of_zero_box]) == 0
    assert torch.count_nonzero(cls_grad[of_one_box]) > 0
    assert torch.count_nonzero(reg_grad[of_one_box]) > 0
    negatives = labels == eh.NUM_CLASSES
    assert torch.count_nonzero(cls_grad[negatives]) > 0  # background still learnt


def test_doubling_confidence_doubles_positive_terms():
    kwargs = eh.retina_kwargs()
    head = eh.build(EARLRetinaHead, kwargs)
    feats = eh.make_feats(batch=1)
    boxes, labels = [[[10.0, 12.0, 46.0, 50.0]]], [[2]]

    def losses(c):
        return eh.loss_and_grads(head, feats, eh.make_samples(boxes, labels, [[c]]))[0]

    l0, l1, l2 = losses(0.0), losses(0.3), losses(0.6)
    # the focal loss also sums negatives (untouched by c): isolate the positive part
    pos1 = l1['loss_cls'] - l0['loss_cls']
    pos2 = l2['loss_cls'] - l0['loss_cls']
    assert pos1.abs() > 1e-4
    torch.testing.assert_close(pos2, 2 * pos1)
    assert l0['loss_bbox'] == 0 and l1['loss_bbox'] > 0
    torch.testing.assert_close(l2['loss_bbox'], 2 * l1['loss_bbox'])


def test_weight_sum_avg_factor_and_scale_invariance():
    kwargs = eh.retina_kwargs()
    stock = eh.build(RetinaHead, kwargs)
    confidence = [[0.5, 2.0, 1.5], [0.25, 1.0], []]
    earl = eh.clone_into(EARLRetinaHead, kwargs, stock, earl_cfg=dict(normalize='weight_sum'))
    sizes = [(eh.IMG // s, eh.IMG // s) for s in (8, 16, 32)]
    samples = eh.make_samples(eh.BOXES, eh.LABELS, confidence)
    metas = [s.metainfo for s in samples]
    anchors, valid = earl.get_anchors(sizes, metas, device='cpu')
    gts = [s.gt_instances for s in samples]
    avg_factor = earl.get_targets(anchors, valid, gts, metas)[4]
    # oracle: stock positives, each counted with the c of its gt (labels unique per image)
    # (an image without positives keeps mmdet's per-image count of 1, so that unit
    # weights reproduce mmdet's avg_factor exactly)
    expected = 0.0
    for ref, c, lab in zip(
        _targets(stock, eh.make_samples(eh.BOXES, eh.LABELS)), confidence, eh.LABELS
    ):
        if ref[4].numel() == 0:
            expected += 1.0
        for cls_id, ci in zip(lab, c):
            expected += ci * float((ref[0] == cls_id).sum())
    assert avg_factor == pytest.approx(expected)
    # the box term is a weighted mean: a global rescaling of c leaves it unchanged (on
    # images that all have positives)
    feats = [f[:2] for f in eh.make_feats(batch=3)]
    ref_losses, _ = eh.loss_and_grads(stock, feats, eh.make_samples(eh.BOXES[:2], eh.LABELS[:2]))
    half = [[0.5] * len(c) for c in eh.LABELS[:2]]
    got, _ = eh.loss_and_grads(earl, feats, eh.make_samples(eh.BOXES[:2], eh.LABELS[:2], half))
    torch.testing.assert_close(got['loss_bbox'], ref_losses['loss_bbox'])
