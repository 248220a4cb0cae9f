"""The reusable mechanism: make_earl_head / earl_head_class on mmdet's heads."""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.models.dense_heads import (
    ATSSHead,
    FCOSHead,
    FreeAnchorRetinaHead,
    FSAFHead,
    GARetinaHead,
    GFLHead,
    PISARetinaHead,
    RetinaHead,
    RPNHead,
    SSDHead,
    YOLOXHead,
)
from mmengine.config import ConfigDict

from earl_mmdet.models.dense_heads import (
    EARLAnchorHeadMixin,
    EARLRetinaHead,
    EARLYOLOXHead,
    earl_head_class,
    is_earl_head,
    make_earl_head,
)

from .earl_head_utils import (
    BOXES,
    CHANNELS,
    LABELS,
    ONES,
    STRIDES,
    assert_same,
    build,
    clone_into,
    loss_and_grads,
    make_feats,
    make_samples,
    retina_kwargs,
    rpn_kwargs,
    yolox_kwargs,
)

CONF = [[0.2, 1.0, 0.6], [0.9, 0.4], []]


def _ssd_kwargs() -> dict:
    return dict(
        num_classes=3,
        in_channels=(CHANNELS,) * 3,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            strides=list(STRIDES),
            ratios=([2], [2], [2]),
            min_sizes=[12, 24, 40],
            max_sizes=[24, 40, 64],
        ),
        train_cfg=ConfigDict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.0,
                ignore_iof_thr=-1,
                gt_max_assign_all=False,
            ),
            sampler=dict(type='PseudoSampler'),
            smoothl1_beta=1.0,
            allowed_border=-1,
            pos_weight=-1,
            neg_pos_ratio=3,
            debug=False,
        ),
    )


@pytest.mark.parametrize(
    'cls, kwargs, rpn',
    [
        (RPNHead, rpn_kwargs(), True),  # RandomSampler: avg_factor counts negatives too
        (SSDHead, _ssd_kwargs(), False),  # hard-negative mining on label weights
    ],
)
def test_other_anchor_heads_convert(cls, kwargs, rpn):
    stock = build(cls, kwargs)
    earl = make_earl_head(clone_into(cls, kwargs, stock))
    assert type(earl).__name__ == f'EARL{cls.__name__}' and isinstance(earl, cls)
    labels = [[0] * len(lab) for lab in LABELS] if rpn else LABELS
    feats = make_feats(batch=3)
    ref_losses, ref_grads = loss_and_grads(stock, feats, make_samples(BOXES, labels))
    losses, grads = loss_and_grads(earl, feats, make_samples(BOXES, labels, ONES))
    assert_same(losses, ref_losses)
    assert_same(grads, ref_grads)
    # every box at c = 0: no box loss at all
    zeros = [[0.0] * len(lab) for lab in LABELS]
    bbox_key = 'loss_rpn_bbox' if rpn else 'loss_bbox'
    assert ref_losses[bbox_key] > 0
    assert loss_and_grads(earl, feats, make_samples(BOXES, labels, zeros))[0][bbox_key] == 0


@pytest.mark.parametrize(
    'cls, kwargs, earl_cls',
    [(RetinaHead, retina_kwargs(), EARLRetinaHead), (YOLOXHead, yolox_kwargs(), EARLYOLOXHead)],
)
def test_make_earl_head_runs_the_registered_class(cls, kwargs, earl_cls):
    # the converted instance must compute exactly what the registered EARL head computes
    head = build(cls, kwargs)
    reference = clone_into(earl_cls, kwargs, head, earl_cfg=dict(scale=2.0))
    state = {k: v.clone() for k, v in head.state_dict().items()}
    converted = make_earl_head(head, scale=2.0)
    assert converted is head and type(head) is earl_cls and is_earl_head(head)
    assert_same(head.state_dict(), state)  # parameters untouched
    feats = make_feats(batch=3)
    got = loss_and_grads(head, feats, make_samples(BOXES, LABELS, CONF))
    ref = loss_and_grads(reference, feats, make_samples(BOXES, LABELS, CONF))
    assert_same(got[0], ref[0])
    assert_same(got[1], ref[1])
    copy.deepcopy(head)  # EMAHook deep-copies the model
    # idempotent with the same options, refuses to silently change them
    assert make_earl_head(head, earl_cfg=dict(scale=2.0)) is head
    with pytest.raises(ValueError, match='already EARL'):
        make_earl_head(head, scale=3.0)


@pytest.mark.parametrize(
    'cls',
    [
        ATSSHead,  # own _get_targets_single (ATSS assignment, centerness)
        GFLHead,  # own targets and quality-focal loss
        FSAFHead,  # own _get_targets_single (anchor-free branch)
        FreeAnchorRetinaHead,  # bag-of-anchors likelihood, no per-anchor targets
        PISARetinaHead,  # re-weights label weights itself (ISR-P / CARL)
        GARetinaHead,  # guided anchoring: own loss_by_feat
        FCOSHead,  # anchor-free: not an AnchorHead
    ],
)
def test_unsupported_heads_are_refused_by_name(cls):
    with pytest.raises(TypeError, match=cls.__name__):
        earl_head_class(cls)


def test_refusal_leaves_instance_untouched():
    head = FCOSHead(
        num_classes=3, in_channels=CHANNELS, feat_channels=CHANNELS, stacked_convs=1, norm_cfg=None
    )
    with pytest.raises(TypeError, match='FCOSHead'):
        make_earl_head(head)
    assert type(head) is FCOSHead
    retina = build(RetinaHead, retina_kwargs())
    with pytest.raises(ValueError, match='obj'):  # RetinaNet has no objectness term
        make_earl_head(retina, terms=('cls', 'obj'))
    assert type(retina) is RetinaHead
    with pytest.raises(ValueError, match='not both'):
        make_earl_head(retina, earl_cfg=dict(scale=2.0), gamma=2.0)


def test_user_subclasses():
    class WiderRetinaHead(RetinaHead):  # changes layers only: supported
        pass

    class ReweightingRetinaHead(RetinaHead):  # own loss_by_feat: refused, by name
        def loss_by_feat(self, *args, **kwargs):
            return super().loss_by_feat(*args, **kwargs)

    earl = earl_head_class(WiderRetinaHead)
    assert earl.__name__ == 'EARLWiderRetinaHead' and issubclass(earl, WiderRetinaHead)
    assert earl_head_class(WiderRetinaHead) is earl  # cached
    with pytest.raises(TypeError, match='ReweightingRetinaHead'):
        earl_head_class(ReweightingRetinaHead)

    with pytest.raises(TypeError, match='first'):  # refused at class definition

        class BadOrder(RetinaHead, EARLAnchorHeadMixin):  # mixin must come first
            pass


def test_weights_follow_confidence_under_conversion():
    # sanity on a converted head: non-trivial c changes the losses, c = 1 does not
    head = make_earl_head(build(RetinaHead, retina_kwargs()))
    feats = make_feats(batch=3)
    ones = loss_and_grads(head, feats, make_samples(BOXES, LABELS, ONES))[0]
    some = loss_and_grads(head, feats, make_samples(BOXES, LABELS, CONF))[0]
    assert not torch.allclose(ones['loss_bbox'], some['loss_bbox'])
