# RTMDet-tiny for CPU-scale MED-MNIST's 10 digits, without data: mmdet's RTMDet (model, AdamW, EMA)
# at RTMDet-tiny's size (4.9 M parameters) without pretrained weights, 20 epochs (1 warm-up,
# cosine decay), test score threshold 0.001, seed 0. The RTMDet twin of
# ./yolox_nano_20e_medmnist-cpu.py.
#   _base_ = ['../_base_/models/rtmdet_tiny_20e_medmnist-cpu.py',
#             '../_base_/datasets/medmnist_cpu_multirater.py']
_base_ = 'mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py'

# mmdet's COCO data settings go: the dataset base beside this file brings MED-MNIST's
del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.train_pipeline
del _base_.train_pipeline_stage2, _base_.test_pipeline, _base_.train_dataloader
del _base_.val_dataloader, _base_.test_dataloader, _base_.val_evaluator, _base_.test_evaluator

max_epochs = 20
# AdamW: mmdet's 0.004 for 256 images per step, scaled by sqrt(16 / 256) for 16
base_lr = 0.001

# RTMDet-tiny's widths (mmdet's rtmdet_tiny_8xb32-300e_coco.py); the backbone from scratch
# (mmdet's downloads an ImageNet-pretrained CSPNeXt)
model = dict(
    backbone=dict(deepen_factor=0.167, widen_factor=0.375, init_cfg=None),
    neck=dict(in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1),
    bbox_head=dict(in_channels=96, feat_channels=96, exp_on_reg=False, num_classes=10),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65), max_per_img=100),
)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=None)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=1, end=max_epochs,
         T_max=max_epochs - 1, by_epoch=True, convert_to_iter_based=True),
]  # fmt: skip
# mmdet's EMA; no PipelineSwitchHook (its stage-2 pipeline is COCO's, and nothing here caches
# mosaics to switch off)
custom_hooks = [
    _base_.custom_hooks[0],
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None),
    logger=dict(interval=20),
)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
