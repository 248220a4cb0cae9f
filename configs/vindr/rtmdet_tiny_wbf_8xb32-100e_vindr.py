# RTMDet-tiny on VinDr-CXR, 640 px, 100 epochs (the last 10 without CachedMosaic / MixUp), WBF-
# fused boxes (iou 0.4, c = T/R), stock head; mmdet's pipeline and AdamW schedule (lr 0.004 for
# 8 GPUs x 32 images), backbone from scratch (../_base_/models/rtmdet_tiny.py). The base of the
# VinDr RTMDet family: rtmdet_tiny_wbf-earl_8xb32-100e_vindr.py adds EARL.
_base_ = ['../_base_/models/rtmdet_tiny.py', '../_base_/datasets/vindr_multirater.py']

img_scale = (640, 640)
max_epochs = 100
stage2_num_epochs = 10
base_lr = 0.004

model = dict(bbox_head=dict(num_classes=14))

# ConfidenceToLabels (right after loading) carries each box's c inside its label through
# CachedMosaic / RandomCrop / CachedMixUp (which re-index only the keys they know);
# ConfidenceFromLabels restores it before packing.
_load = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ConfidenceToLabels'),
]
_pack = [dict(type='ConfidenceFromLabels'), dict(type='PackMultiRaterInputs')]
train_pipeline = _load + [
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20,
         random_pop=False),
    dict(type='RandomResize', scale=(1280, 1280), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0), max_cached_images=10,
         random_pop=False, pad_val=(114, 114, 114), prob=0.5),
] + _pack  # fmt: skip
train_pipeline_stage2 = _load + [
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
] + _pack  # fmt: skip
# the dataset base's, at 640 px and padded to a square
test_pipeline = [
    _base_.test_pipeline[0],
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    *_base_.test_pipeline[2:],
]
del _load, _pack
train_dataloader = dict(
    batch_size=32,
    num_workers=10,
    batch_sampler=None,
    pin_memory=True,
    dataset=dict(pipeline=train_pipeline),
)
val_dataloader = dict(batch_size=5, num_workers=10, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2,
         end=max_epochs, T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]  # fmt: skip
custom_hooks = [
    _base_.custom_hooks[0],  # EMA
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs,
         switch_pipeline=train_pipeline_stage2),
    *_base_.custom_hooks[1:],
]  # fmt: skip
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
