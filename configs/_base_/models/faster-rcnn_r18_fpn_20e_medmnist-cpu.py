# A small two-stage detector for CPU-scale MED-MNIST's 10 digits, without data: Faster R-CNN,
# ResNet-18 FPN (64 channels, 256-d box head) without pretrained weights, mmdet's runtime and SGD
# (lr 0.02 for 16 images per step), 20 epochs (steps at 16 and 19), validation at the end.
#   _base_ = ['../_base_/models/faster-rcnn_r18_fpn_20e_medmnist-cpu.py',
#             '../_base_/datasets/medmnist_cpu_multirater.py']
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

max_epochs = 20

model = dict(
    # from scratch: no frozen stem, BN statistics trained (mmdet's R-CNN configs freeze
    # both because they start from ImageNet weights)
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    # digits are 20-44 px: anchors of 16-256 px on strides 4-64
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=10),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128)),  # <= 4 objects per image: 128 RoIs suffice
    ),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)),
)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[16, 19],
         gamma=0.1),
]  # fmt: skip
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1),
    logger=dict(interval=20),
)
auto_scale_lr = dict(base_batch_size=16)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
