# YOLOX-S for paper-scale MED-MNIST's 10 digits (640 px), without data: mmdet's YOLOX-S set up as
# ./yolox_nano_20e_medmnist-cpu.py is (no batch augments, test score threshold 0.001, SGD lr 0.01
# for 16 images per step, EMA, seed 0) at mmdet's width, 50 epochs (3 warm-up, cosine decay),
# validation every 10. Meant for a GPU. (It repeats those settings rather than inheriting them:
# a third level under mmdet's YOLOX-S would make its configs four levels deep.)
#   _base_ = ['../_base_/models/yolox_s_50e_medmnist.py',
#             '../_base_/datasets/medmnist_multirater.py']
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

# mmdet's COCO data settings go: ../datasets/medmnist_multirater.py brings MED-MNIST's
del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.img_scale
del _base_.train_pipeline, _base_.test_pipeline, _base_.train_dataset, _base_.train_dataloader
del _base_.val_dataloader, _base_.test_dataloader, _base_.val_evaluator, _base_.test_evaluator

max_epochs = 50

model = dict(
    data_preprocessor=dict(batch_augments=None),
    bbox_head=dict(num_classes=10),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65)),
)
base_lr = 0.01
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=3, end=max_epochs,
         T_max=max_epochs - 3, by_epoch=True, convert_to_iter_based=True),
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
