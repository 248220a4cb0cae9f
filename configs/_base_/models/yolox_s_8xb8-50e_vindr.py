# YOLOX-S for VinDr-CXR's 14 findings, without data: mmdet's YOLOX-S (model, SGD lr 0.01 for 64
# images per step, EMA / sync-norm / mode-switch hooks) on 50 epochs: 3 warm-up epochs, cosine
# decay to epoch 40, the last 10 at a constant rate and without Mosaic / RandomAffine / MixUp
# (YOLOXModeSwitchHook); validation once, at the end of training.
#   _base_ = ['../_base_/models/yolox_s_8xb8-50e_vindr.py',
#             '../_base_/datasets/vindr_multirater_yolox.py']
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

# mmdet's COCO data settings go: the dataset base beside this file brings VinDr-CXR's
del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.img_scale
del _base_.train_pipeline, _base_.test_pipeline, _base_.train_dataset, _base_.train_dataloader
del _base_.val_dataloader, _base_.test_dataloader, _base_.val_evaluator, _base_.test_evaluator

max_epochs = 50
num_last_epochs = 10

model = dict(bbox_head=dict(num_classes=14))

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
