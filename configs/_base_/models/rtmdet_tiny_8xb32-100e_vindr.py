# RTMDet-tiny for VinDr-CXR's 14 findings, without its data loaders: mmdet's RTMDet (model, AdamW
# lr 0.004 for 8 GPUs x 32 images, EMA) at RTMDet-tiny's size, backbone from scratch, 100 epochs
# (cosine decay over the second half); the last 10 epochs train on the stage-2 pipeline below
# (no CachedMosaic / CachedMixUp); validation once, at the end of training.
#   _base_ = ['../_base_/models/rtmdet_tiny_8xb32-100e_vindr.py',
#             '../_base_/datasets/vindr_multirater_rtmdet.py']
_base_ = 'mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py'

# mmdet's COCO data settings go: the dataset base beside this file brings VinDr-CXR's
del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.train_pipeline
del _base_.train_pipeline_stage2, _base_.test_pipeline, _base_.train_dataloader
del _base_.val_dataloader, _base_.test_dataloader, _base_.val_evaluator, _base_.test_evaluator

max_epochs = 100
stage2_num_epochs = 10
base_lr = 0.004

# RTMDet-tiny's widths (mmdet's rtmdet_tiny_8xb32-300e_coco.py); the backbone from scratch
# (set init_cfg to mmdet's ImageNet-pretrained CSPNeXt to start from it)
model = dict(
    backbone=dict(deepen_factor=0.167, widen_factor=0.375, init_cfg=None),
    neck=dict(in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1),
    bbox_head=dict(in_channels=96, feat_channels=96, exp_on_reg=False, num_classes=14),
)

# The dataset base's training pipeline without CachedMosaic / CachedMixUp, at 640 px; each box's
# c travels inside its label through RandomCrop (ConfidenceToLabels / ConfidenceFromLabels).
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ConfidenceToLabels'),
    dict(type='RandomResize', scale=(640, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(640, 640)),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(640, 640), pad_val=dict(img=(114, 114, 114))),
    dict(type='ConfidenceFromLabels'),
    dict(type='PackMultiRaterInputs'),
]

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
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]  # fmt: skip
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
