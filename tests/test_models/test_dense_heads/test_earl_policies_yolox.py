"""Loss policies 'soft' and 'ignore' on YOLOX, against mmdet's YOLOXHead (the oracle)."""

from __future__ import annotations

import pytest
import torch

from tests.test_models import earl_head_utils as eh
from tests.test_models.test_dense_heads.test_earl_yolox_head import _pair


@pytest.mark.parametrize(
    'confidence, earl_cfg, use_l1',
    [
        (eh.ONES, dict(policy='soft'), True),
        (None, dict(policy='soft', terms=('cls', 'bbox', 'obj')), False),
        (eh.ONES, dict(policy='soft', normalize='weight_sum'), False),
        (eh.ONES, dict(policy='ignore'), True),
        (eh.ONES, dict(policy='ignore', weight_kept=True, terms=('cls', 'bbox', 'obj')), False),
        # c < 1 but above the threshold: nothing ignored, kept boxes weigh 1
        (eh.CONFIDENCE, dict(policy='ignore', ignore_below=0.1), True),
    ],
)
def test_policies_equal_stock_when_nothing_is_uncertain(confidence, earl_cfg, use_l1):
    stock, earl = _pair(earl_cfg, use_l1)
    ref = eh.assert_equals_stock(stock, earl, confidence)
    assert all(v > 0 for v in ref.values())
    for attr in ('loss_cls', 'loss_bbox', 'loss_obj', 'loss_l1'):  # hooks removed again
        assert not getattr(earl, attr)._forward_pre_hooks


def _run(head, feats, samples):
    """Losses and the gradient of their sum w.r.t. each level's (cls, obj) outputs."""
    outs = head(tuple(f.detach() for f in feats))
    cls_scores = [c.detach().requires_grad_() for c in outs[0]]
    objectness = [o.detach().requires_grad_() for o in outs[2]]
    bbox_preds = [b.detach() for b in outs[1]]
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    losses = head.loss_by_feat(cls_scores, bbox_preds, objectness, gts, metas)
    eh.total_loss(losses).backward()
    cls_grad = torch.cat(
        [c.grad.permute(0, 2, 3, 1).reshape(-1, eh.NUM_CLASSES) for c in cls_scores]
    )
    obj_grad = torch.cat([o.grad.reshape(-1) for o in objectness])
    return eh.flat_losses(losses), cls_grad, obj_grad


def _cell_centres() -> torch.Tensor:
    """Oracle: the centre of every YOLOX grid cell, levels in order (row-major)."""
    out = []
    for s in eh.STRIDES:
        n = eh.IMG // s
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing='ij')
        out.append(torch.stack([xs.reshape(-1) * s + s / 2, ys.reshape(-1) * s + s / 2], 1))
    return torch.cat(out).float()


def _centres_in(box: list[float]) -> torch.Tensor:
    """Oracle: which cells' centres lie in ``box`` (borders included)."""
    c = _cell_centres()
    return (c[:, 0] >= box[0]) & (c[:, 0] <= box[2]) & (c[:, 1] >= box[1]) & (c[:, 1] <= box[3])


def test_ignored_box_is_neither_positive_nor_negative():
    # box A (c = 1) kept, box B (c = 0.2) an ignore region overlapping A: EARL = stock on A
    # alone, except that the non-foreground priors whose cell centre is in B have no
    # objectness loss (YOLOX's negatives are objectness-only)
    stock, earl = _pair(dict(policy='ignore'))
    feats = eh.make_feats(batch=1)
    box_a, box_b = [30.0, 26.0, 62.0, 58.0], [22.0, 20.0, 60.0, 60.0]
    ref, ref_cls_grad, ref_obj_grad = _run(stock, feats, eh.make_samples([[box_a]], [[0]]))
    got, cls_grad, obj_grad = _run(
        earl, feats, eh.make_samples([[box_a, box_b]], [[0, 1]], [[1.0, 0.2]])
    )
    for k in ('loss_cls', 'loss_bbox'):
        torch.testing.assert_close(got[k], ref[k])  # the same positives (A's)
    torch.testing.assert_close(cls_grad, ref_cls_grad)
    foreground = (ref_cls_grad != 0).any(dim=1)
    in_b = _centres_in(box_b)
    covered = in_b & ~foreground
    assert covered.sum() > 0 and (in_b & foreground).any()
    assert torch.count_nonzero(obj_grad[covered]) == 0  # no negative loss in the region
    torch.testing.assert_close(obj_grad[~covered], ref_obj_grad[~covered])
    assert got['loss_obj'] < ref['loss_obj']


def _capture_cls_targets(head, feats, samples):
    """The targets YOLOXHead hands its loss_cls, recorded by a forward pre-hook."""
    seen = []
    handle = head.loss_cls.register_forward_pre_hook(lambda m, a: seen.append(a[1].clone()))
    try:
        losses = eh.loss_and_grads(head, feats, samples)[0]
    finally:
        handle.remove()
    (target,) = seen
    return losses, target


def test_soft_targets_are_iou_times_q():
    # two boxes of different classes, q = (1, 0.5): the second box's positives' targets
    # (IoU x one-hot in YOLOX) are halved, the first box's are stock; cls loss unweighted
    stock, earl = _pair(dict(policy='soft'), use_l1=True)
    feats = eh.make_feats(batch=1)
    boxes, labels = [[[4.0, 6.0, 30.0, 30.0], [34.0, 30.0, 62.0, 62.0]]], [[0, 1]]
    ref, ref_target = _capture_cls_targets(stock, feats, eh.make_samples(boxes, labels))
    got, target = _capture_cls_targets(earl, feats, eh.make_samples(boxes, labels, [[1.0, 0.5]]))
    of_b = ref_target[:, 1] > 0
    assert of_b.any() and (ref_target[:, 0] > 0).any()
    expected = ref_target.clone()
    expected[of_b] *= 0.5
    torch.testing.assert_close(target, expected)
    # the cls loss is the sum of BCE(x, t) over the positives' rows / num_pos, by hand
    _, fg_grad, _ = _run(stock, feats, eh.make_samples(boxes, labels))
    rows = (fg_grad != 0).any(dim=1).nonzero().view(-1)  # foreground priors, in order
    assert rows.numel() == target.shape[0]
    with torch.no_grad():
        outs = stock(tuple(feats))
    pred = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, eh.NUM_CLASSES) for c in outs[0]])
    p = pred[rows].sigmoid()
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    torch.testing.assert_close(got['loss_cls'], bce.sum() / rows.numel(), rtol=1e-5, atol=1e-6)
    assert got['loss_cls'] != ref['loss_cls']
    torch.testing.assert_close(got['loss_obj'], ref['loss_obj'])  # not weighted by default


def test_soft_box_terms_weighted_by_w():
    stock, earl = _pair(dict(policy='soft'), use_l1=True)
    feats = eh.make_feats(batch=1)
    box, lab = [[[10.0, 12.0, 46.0, 50.0]]], [[2]]
    ref = eh.loss_and_grads(stock, feats, eh.make_samples(box, lab))[0]
    got = eh.loss_and_grads(earl, feats, eh.make_samples(box, lab, [[0.3]]))[0]
    for k in ('loss_bbox', 'loss_l1'):
        torch.testing.assert_close(got[k], 0.3 * ref[k])


def test_every_box_ignored_leaves_only_objectness_outside():
    stock, earl = _pair(dict(policy='ignore'), use_l1=True)
    feats = eh.make_feats(batch=1)
    box = [[[10.0, 12.0, 46.0, 50.0]]]
    got, cls_grad, obj_grad = _run(earl, feats, eh.make_samples(box, [[2]], [[0.1]]))
    _, _, ref_obj_grad = _run(stock, feats, eh.make_samples([[]], [[]]))  # no gt at all
    assert got['loss_cls'] == 0 and got['loss_bbox'] == 0 and got['loss_l1'] == 0
    in_box = _centres_in(box[0][0])
    assert in_box.any() and torch.count_nonzero(obj_grad[in_box]) == 0
    torch.testing.assert_close(obj_grad[~in_box], ref_obj_grad[~in_box])
