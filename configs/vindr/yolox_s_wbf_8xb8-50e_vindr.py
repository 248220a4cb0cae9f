# YOLOX-S on VinDr-CXR, 640 px, 50 epochs, WBF-fused boxes (iou 0.4, c = T/R), stock head.
# The base of the VinDr YOLOX family: configs/earl_yolo_vindr.py adds EARL (the paper's
# method), yolox_s_na_8xb8-50e_vindr.py trains on all raters' boxes.
_base_ = ['../_base_/models/yolox_s.py', '../_base_/datasets/vindr_multirater.py']

img_scale = (640, 640)
max_epochs = 50
num_last_epochs = 10

model = dict(bbox_head=dict(num_classes=14))

# ConfidenceToLabels (end of the inner pipeline) carries each box's c inside its label through
# Mosaic / RandomAffine / MixUp / FilterAnnotations (which re-index only the keys they know);
# ConfidenceFromLabels restores it. Their type names stay visible to YOLOXModeSwitchHook.
train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(type='RandomAffine', scaling_ratio_range=(0.5, 1.5),
         border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type='MixUp', img_scale=img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='ConfidenceFromLabels'),
    dict(type='PackMultiRaterInputs'),
]  # fmt: skip
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
inner_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ConfidenceToLabels'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(_base_.train_dataloader.dataset, pipeline=inner_pipeline),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=3, T_max=max_epochs - num_last_epochs,
         end=max_epochs - num_last_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type='ConstantLR', by_epoch=True, factor=1, begin=max_epochs - num_last_epochs,
         end=max_epochs),
]  # fmt: skip
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=num_last_epochs, priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True,
         priority=49),
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]  # fmt: skip
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
