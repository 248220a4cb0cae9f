"""earl_convert: one EARL class per head class (earl_head_class), make_earl_head."""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.models.dense_heads import (
    FCOSHead,
    FreeAnchorRetinaHead,
    FSAFHead,
    GARetinaHead,
    PISARetinaHead,
    RetinaHead,
    RPNHead,
    SSDHead,
    TOODHead,
    YOLOXHead,
)
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from mmdet.models.task_modules.samplers import PseudoSampler

from earl_mmdet.models import dense_heads, roi_heads
from earl_mmdet.models.earl_convert import (
    EARLHeadMixin,
    RecordingSampler,
    earl_head_class,
    is_earl_head,
    make_earl_head,
    register_earl_variant,
)
from tests.test_models import earl_head_utils as eh


@pytest.mark.parametrize(
    'cls, kwargs, rpn',
    [
        (RPNHead, eh.rpn_kwargs(), True),  # RandomSampler: avg_factor counts negatives too
        (SSDHead, eh.ssd_kwargs(), False),  # hard-negative mining on label weights
    ],
)
def test_other_anchor_heads_convert(cls, kwargs, rpn):
    stock = eh.build(cls, kwargs)
    earl = make_earl_head(eh.clone_into(cls, kwargs, stock))
    assert type(earl).__name__ == f'EARL{cls.__name__}' and isinstance(earl, cls)
    labels = [[0] * len(lab) for lab in eh.LABELS] if rpn else eh.LABELS
    ref_losses = eh.assert_equals_stock(stock, earl, eh.ONES, labels)
    # every box at c = 0: no box loss at all
    zeros = [[0.0] * len(lab) for lab in eh.LABELS]
    bbox_key = 'loss_rpn_bbox' if rpn else 'loss_bbox'
    assert ref_losses[bbox_key] > 0
    samples = eh.make_samples(eh.BOXES, labels, zeros)
    assert eh.loss_and_grads(earl, eh.make_feats(batch=3), samples)[0][bbox_key] == 0


@pytest.mark.parametrize(
    'cls, kwargs, earl_cls',
    [
        (RetinaHead, eh.retina_kwargs(), dense_heads.EARLRetinaHead),
        (YOLOXHead, eh.yolox_kwargs(), dense_heads.EARLYOLOXHead),
    ],
)
def test_make_earl_head_runs_the_registered_class(cls, kwargs, earl_cls):
    # the converted instance must compute exactly what the registered EARL head computes
    head = eh.build(cls, kwargs)
    reference = eh.clone_into(earl_cls, kwargs, head, earl_cfg=dict(scale=2.0))
    state = {k: v.clone() for k, v in head.state_dict().items()}
    converted = make_earl_head(head, scale=2.0)
    assert converted is head and type(head) is earl_cls and is_earl_head(head)
    eh.assert_same(head.state_dict(), state)  # parameters untouched
    feats = eh.make_feats(batch=3)
    got = eh.loss_and_grads(head, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))
    ref = eh.loss_and_grads(reference, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))
    eh.assert_same(got[0], ref[0])
    eh.assert_same(got[1], ref[1])
    copy.deepcopy(head)  # EMAHook deep-copies the model
    # idempotent with the same options, refuses to silently change them
    assert make_earl_head(head, earl_cfg=dict(scale=2.0)) is head
    with pytest.raises(ValueError, match='already EARL'):
        make_earl_head(head, scale=3.0)


@pytest.mark.parametrize(
    'cls',
    [
        TOODHead,  # an ATSSHead with its own targets and task-aligned losses
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
        num_classes=3,
        in_channels=eh.CHANNELS,
        feat_channels=eh.CHANNELS,
        stacked_convs=1,
        norm_cfg=None,
    )
    with pytest.raises(TypeError, match='FCOSHead'):
        make_earl_head(head)
    assert type(head) is FCOSHead
    retina = eh.build(RetinaHead, eh.retina_kwargs())
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

        class BadOrder(RetinaHead, dense_heads.EARLAnchorHeadMixin):  # mixin must come first
            pass


def test_weights_follow_confidence_under_conversion():
    # sanity on a converted head: non-trivial c changes the losses, c = 1 does not
    head = make_earl_head(eh.build(RetinaHead, eh.retina_kwargs()))
    feats = eh.make_feats(batch=3)
    ones = eh.loss_and_grads(head, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.ONES))[0]
    some = eh.loss_and_grads(head, feats, eh.make_samples(eh.BOXES, eh.LABELS, eh.CONFIDENCE))[0]
    assert not torch.allclose(ones['loss_bbox'], some['loss_bbox'])


@pytest.mark.parametrize(
    'base, named',
    [
        (RetinaHead, dense_heads.EARLRetinaHead),
        (RPNHead, dense_heads.EARLRPNHead),
        (YOLOXHead, dense_heads.EARLYOLOXHead),
        (StandardRoIHead, roi_heads.EARLStandardRoIHead),
        (CascadeRoIHead, roi_heads.EARLCascadeRoIHead),
    ],
)
def test_config_types_are_the_classes_the_conversion_uses(base, named):
    # one implementation: the type a config names is earl_head_class of the stock head,
    # i.e. (family mixin, stock head) with no code of its own
    assert earl_head_class(base) is named
    assert named.__bases__[1] is base and issubclass(named.__bases__[0], EARLHeadMixin)
    assert not [k for k in vars(named) if not k.startswith('__') and k != '_abc_impl']
    assert earl_head_class(named) is named


def test_register_earl_variant_refuses_code_of_its_own():
    with pytest.raises(TypeError, match='docstring only'):

        @register_earl_variant(SSDHead)
        class EARLSSDHead(dense_heads.EARLAnchorHeadMixin, SSDHead):
            def init_weights(self):  # would differ from the hook's class
                super().init_weights()

    with pytest.raises(TypeError, match='EARLYOLOXHeadMixin'):  # wrong family mixin

        @register_earl_variant(YOLOXHead)
        class EARLYOLOX2(dense_heads.EARLAnchorHeadMixin, RetinaHead):
            pass

    assert earl_head_class(SSDHead).__module__ == 'earl_mmdet.models.earl_convert'


def test_recording_sampler_wraps_once_and_keeps_the_gts():
    sampler = RecordingSampler.wrap(PseudoSampler())
    assert RecordingSampler.wrap(sampler) is sampler and RecordingSampler.wrap(None) is None
    head = eh.build(dense_heads.EARLYOLOXHead, eh.yolox_kwargs())
    assert isinstance(head.sampler, RecordingSampler)
    samples = eh.make_samples(eh.BOXES[:1], eh.LABELS[:1])
    eh.loss_and_grads(head, eh.make_feats(batch=1), samples)
    assert head.sampler.last.earl_gt_instances is samples[0].gt_instances
