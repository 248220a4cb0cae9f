"""Small heads, random features and gt for the EARL head tests (64 px images, 8 channels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

IMG = 64
CHANNELS = 8
STRIDES = (8, 16, 32)
NUM_CLASSES = 3


def _anchor_train_cfg(assigner: dict, sampler: dict, **extra) -> ConfigDict:
    """An anchor head's ``train_cfg``: MaxIoUAssigner options, sampler, whole image."""
    return ConfigDict(
        assigner=dict(type='MaxIoUAssigner', ignore_iof_thr=-1, **assigner),
        sampler=sampler,
        allowed_border=extra.pop('allowed_border', -1),
        pos_weight=-1,
        debug=False,
        **extra,
    )


_DELTA_CODER = dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4)


def retina_kwargs(allowed_border: int = -1) -> dict:
    """RetinaHead arguments as in mmdet's RetinaNet config, at toy width."""
    return dict(
        num_classes=NUM_CLASSES,
        in_channels=CHANNELS,
        feat_channels=CHANNELS,
        stacked_convs=1,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=list(STRIDES),
        ),
        bbox_coder=_DELTA_CODER,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
        train_cfg=_anchor_train_cfg(
            dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
            dict(type='PseudoSampler'),
            allowed_border=allowed_border,
        ),
    )


def rpn_kwargs() -> dict:
    """RPNHead arguments as in mmdet's Faster R-CNN config, at toy width."""
    return dict(
        in_channels=CHANNELS,
        feat_channels=CHANNELS,
        anchor_generator=dict(
            type='AnchorGenerator', scales=[4], ratios=[0.5, 1.0, 2.0], strides=list(STRIDES)
        ),
        bbox_coder=_DELTA_CODER,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
        train_cfg=_anchor_train_cfg(
            dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True),
            dict(type='RandomSampler', num=64, pos_fraction=0.5, add_gt_as_proposals=False),
        ),
    )


def ssd_kwargs() -> dict:
    """SSDHead arguments as in mmdet's SSD300 config, at toy width."""
    return dict(
        num_classes=NUM_CLASSES,
        in_channels=(CHANNELS,) * 3,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            strides=list(STRIDES),
            ratios=([2], [2], [2]),
            min_sizes=[12, 24, 40],
            max_sizes=[24, 40, 64],
        ),
        train_cfg=_anchor_train_cfg(
            dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0, gt_max_assign_all=False),
            dict(type='PseudoSampler'),
            smoothl1_beta=1.0,
            neg_pos_ratio=3,
        ),
    )


def yolox_kwargs() -> dict:
    """YOLOXHead arguments as in mmdet's YOLOX-S config, at toy width."""
    return dict(
        num_classes=NUM_CLASSES,
        in_channels=CHANNELS,
        feat_channels=CHANNELS,
        stacked_convs=1,
        strides=STRIDES,
        train_cfg=ConfigDict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    )


def build(cls: type, kwargs: dict, seed: int = 0, **extra) -> nn.Module:
    torch.manual_seed(seed)
    head = cls(**kwargs, **extra)
    head.init_weights()
    head.train()
    return head


def clone_into(cls: type, kwargs: dict, source: nn.Module, **extra) -> nn.Module:
    """A head of ``cls`` with ``source``'s parameters and buffers."""
    head = cls(**kwargs, **extra)
    head.load_state_dict(source.state_dict())
    head.train()
    return head


def make_feats(batch: int, seed: int = 1) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, CHANNELS, IMG // s, IMG // s, generator=g).requires_grad_()
        for s in STRIDES
    ]


def make_samples(
    boxes: Sequence[Sequence[Sequence[float]]],
    labels: Sequence[Sequence[int]],
    confidence: Sequence[Sequence[float]] | None = None,
) -> list[DetDataSample]:
    """One DetDataSample per image; ``confidence=None`` leaves the field out."""
    samples = []
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        gt = InstanceData(
            bboxes=torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor(lab, dtype=torch.long),
        )
        if confidence is not None:
            gt.confidence = torch.tensor(confidence[i], dtype=torch.float32)
        s = DetDataSample(
            metainfo=dict(
                img_shape=(IMG, IMG),
                pad_shape=(IMG, IMG),
                batch_input_shape=(IMG, IMG),
                scale_factor=(1.0, 1.0),
            )
        )
        s.gt_instances = gt
        samples.append(s)
    return samples


# Several boxes on a batch of three images, the last one empty (a true negative).
BOXES = [
    [[4.0, 6.0, 40.0, 44.0], [30.0, 20.0, 60.0, 50.0], [10.0, 40.0, 28.0, 62.0]],
    [[0.0, 0.0, 34.0, 30.0], [20.0, 8.0, 58.0, 60.0]],
    [],
]
LABELS = [[0, 2, 1], [1, 0], []]
ONES = [[1.0, 1.0, 1.0], [1.0, 1.0], []]
CONFIDENCE = [[0.2, 1.0, 0.6], [0.9, 0.4], []]


def total_loss(losses: dict) -> Tensor:
    out = 0.0
    for v in losses.values():
        out = out + (sum(v) if isinstance(v, (list, tuple)) else v)
    return out


def flat_losses(losses: dict) -> dict[str, Tensor]:
    """Loss dict with per-level lists summed (comparison-friendly)."""
    return {k: (sum(v) if isinstance(v, (list, tuple)) else v).detach() for k, v in losses.items()}


def loss_and_grads(head: nn.Module, feats: list[Tensor], samples: list) -> tuple[dict, dict]:
    """Losses and the gradients of their sum w.r.t. the head's parameters and the inputs."""
    feats = [f.detach().clone().requires_grad_() for f in feats]
    head.zero_grad()
    torch.manual_seed(0)  # RPN's RandomSampler: the same samples for every head
    losses = head.loss(tuple(feats), samples)
    total_loss(losses).backward()
    grads = {n: p.grad.detach().clone() for n, p in head.named_parameters() if p.grad is not None}
    grads.update({f'feat{i}': f.grad.detach().clone() for i, f in enumerate(feats)})
    return flat_losses(losses), grads


def assert_equals_stock(
    stock: nn.Module, earl: nn.Module, confidence: list | None, labels: list = LABELS
) -> dict:
    """The EARL head on ``BOXES`` with ``confidence`` has the stock head's losses and
    gradients (the stock head gets no confidence); returns the stock losses."""
    feats = make_feats(batch=3)
    ref_losses, ref_grads = loss_and_grads(stock, feats, make_samples(BOXES, labels))
    losses, grads = loss_and_grads(earl, feats, make_samples(BOXES, labels, confidence))
    assert_same(losses, ref_losses)
    assert_same(grads, ref_grads)
    return ref_losses


def assert_same(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=lambda m, k=k: f'{k}: {m}', **tol)
