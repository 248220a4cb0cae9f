# A 2.2 M-parameter YOLOX for CPU-scale MED-MNIST's 10 digits, without data: mmdet's YOLOX-S at a
# quarter width (CSPDarknet deepen 0.33 / widen 0.25, 64-channel neck and head), no pretrained
# weights, 20 epochs (1 warm-up, cosine decay), SGD lr 0.01 for 16 images per step, EMA, seed 0;
# no multi-scale batch augments (the canvases have one size) and no YOLOXModeSwitchHook (no
# Mosaic to switch off). ~0.5 s per iteration of 16 images on 2 CPU cores, ~14 min for 20 epochs.
#   _base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
#             '../_base_/datasets/medmnist_cpu_multirater.py']
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

# mmdet's COCO data settings go: ../datasets/medmnist_cpu_multirater.py brings MED-MNIST's
del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.img_scale
del _base_.train_pipeline, _base_.test_pipeline, _base_.train_dataset, _base_.train_dataloader
del _base_.val_dataloader, _base_.test_dataloader, _base_.val_evaluator, _base_.test_evaluator

max_epochs = 20

model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(widen_factor=0.25),
    neck=dict(in_channels=[64, 128, 256], out_channels=64),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65)),
)
base_lr = 0.01
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=1, end=max_epochs,
         T_max=max_epochs - 1, by_epoch=True, convert_to_iter_based=True),
]  # fmt: skip
custom_hooks = [
    dict(
        type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49
    ),
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None),
    logger=dict(interval=20),
)
auto_scale_lr = dict(base_batch_size=16)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
