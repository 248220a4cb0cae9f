"""EARLYOLOXHead against mmdet's YOLOXHead (the oracle)."""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.models.dense_heads import YOLOXHead
from mmdet.registry import MODELS

from earl_mmdet.models.dense_heads import EARLYOLOXHead
from tests.test_models import earl_head_utils as eh


def _pair(earl_cfg=None, use_l1=False):
    kwargs = eh.yolox_kwargs()
    stock = eh.build(YOLOXHead, kwargs)
    earl = eh.clone_into(EARLYOLOXHead, kwargs, stock, earl_cfg=earl_cfg)
    stock.use_l1 = earl.use_l1 = use_l1
    return stock, earl


@pytest.mark.parametrize(
    'confidence, earl_cfg, use_l1',
    [
        (eh.ONES, None, False),  # c = 1, paper defaults
        (None, None, False),  # field absent (plain COCO)
        (eh.ONES, None, True),  # the L1 term of YOLOX's last epochs
        (eh.ONES, dict(terms=('cls', 'bbox', 'obj')), True),  # objectness weighted too
        (eh.ONES, dict(normalize='weight_sum', terms=('cls', 'bbox', 'obj')), True),
        (None, dict(normalize='weight_sum', gamma=3.0), False),
    ],
)
def test_equals_stock_yolox_head(confidence, earl_cfg, use_l1):
    stock, earl = _pair(earl_cfg, use_l1)
    ref_losses = eh.assert_equals_stock(stock, earl, confidence)
    assert ref_losses['loss_bbox'] > 0 and ref_losses['loss_cls'] > 0
    for attr in ('loss_cls', 'loss_bbox', 'loss_obj', 'loss_l1'):  # hooks removed again
        assert not getattr(earl, attr)._forward_pre_hooks


def test_registered_and_options():
    head = MODELS.build(dict(type='EARLYOLOXHead', earl_cfg=dict(scale=3.0), **eh.yolox_kwargs()))
    assert isinstance(head, EARLYOLOXHead) and isinstance(head, YOLOXHead)
    assert head.earl_cfg.terms == ('cls', 'bbox')  # authors' code: objectness unweighted
    copy.deepcopy(head)  # EMAHook deep-copies the model


def _single_box_losses(earl, c, feats):
    samples = eh.make_samples([[[10.0, 12.0, 46.0, 50.0]]], [[2]], [[c]])
    return eh.loss_and_grads(earl, feats, samples)[0]


def test_zero_confidence_box_has_no_positive_loss():
    stock, earl = _pair(use_l1=True)
    feats = eh.make_feats(batch=1)
    ref = eh.loss_and_grads(stock, feats, eh.make_samples([[[10.0, 12.0, 46.0, 50.0]]], [[2]]))[0]
    got = _single_box_losses(earl, 0.0, feats)
    assert ref['loss_cls'] > 0 and ref['loss_bbox'] > 0 and ref['loss_l1'] > 0
    assert got['loss_cls'] == 0 and got['loss_bbox'] == 0 and got['loss_l1'] == 0
    torch.testing.assert_close(got['loss_obj'], ref['loss_obj'])  # not weighted by default


def test_doubling_confidence_doubles_positive_terms():
    _, earl = _pair(use_l1=True)
    feats = eh.make_feats(batch=1)
    l1, l2 = _single_box_losses(earl, 0.3, feats), _single_box_losses(earl, 0.6, feats)
    for k in ('loss_cls', 'loss_bbox', 'loss_l1'):
        assert l1[k] > 0
        torch.testing.assert_close(l2[k], 2 * l1[k])
    torch.testing.assert_close(l2['loss_obj'], l1['loss_obj'])


def test_obj_term_is_affine_in_confidence():
    # with 'obj' weighted, only the positives' objectness BCE scales with c
    _, earl = _pair(dict(terms=('cls', 'bbox', 'obj')))
    stock, _ = _pair()
    feats = eh.make_feats(batch=1)
    l0, l1, l2 = (_single_box_losses(earl, c, feats)['loss_obj'] for c in (0.0, 0.3, 0.6))
    ref = eh.loss_and_grads(stock, feats, eh.make_samples([[[10.0, 12.0, 46.0, 50.0]]], [[2]]))[0]
    assert (l1 - l0).abs() > 1e-4
    torch.testing.assert_close(l2 - l0, 2 * (l1 - l0))
    torch.testing.assert_close(l0 + (l1 - l0) / 0.3, ref['loss_obj'])


def test_weight_sum_normalisation():
    # c = 0.5 for every box: cls and bbox are weighted means (unchanged); the unweighted
    # objectness is divided by the weight sum = half the positive count (doubled)
    stock, earl = _pair(dict(normalize='weight_sum'))
    feats = eh.make_feats(batch=3)
    ref, _ = eh.loss_and_grads(stock, feats, eh.make_samples(eh.BOXES, eh.LABELS))
    half = [[0.5] * len(lab) for lab in eh.LABELS]
    got, _ = eh.loss_and_grads(earl, feats, eh.make_samples(eh.BOXES, eh.LABELS, half))
    torch.testing.assert_close(got['loss_cls'], ref['loss_cls'])
    torch.testing.assert_close(got['loss_bbox'], ref['loss_bbox'])
    torch.testing.assert_close(got['loss_obj'], 2 * ref['loss_obj'])


def test_per_box_weights_follow_assignment():
    # two boxes with different c: each positive prior's cls loss is scaled by its own box's
    # c. Oracle: the stock loss restricted to one box equals the EARL loss with c = (1, 0).
    _, earl = _pair()
    feats = eh.make_feats(batch=1)
    boxes, labels = [[[4.0, 6.0, 30.0, 30.0], [34.0, 30.0, 62.0, 62.0]]], [[0, 1]]
    full = eh.loss_and_grads(earl, feats, eh.make_samples(boxes, labels, [[1.0, 1.0]]))[0]
    only_a = eh.loss_and_grads(earl, feats, eh.make_samples(boxes, labels, [[1.0, 0.0]]))[0]
    only_b = eh.loss_and_grads(earl, feats, eh.make_samples(boxes, labels, [[0.0, 1.0]]))[0]
    mix = eh.loss_and_grads(earl, feats, eh.make_samples(boxes, labels, [[0.2, 0.7]]))[0]
    for k in ('loss_cls', 'loss_bbox'):
        assert only_a[k] > 0 and only_b[k] > 0
        torch.testing.assert_close(only_a[k] + only_b[k], full[k])
        torch.testing.assert_close(mix[k], 0.2 * only_a[k] + 0.7 * only_b[k])
