# YOLOX-S (../_base_/models/yolox_s.py) set up for MED-MNIST's 10 digits, without data: no
# multi-scale batch augments (fixed-size canvases), test score threshold 0.001, SGD lr 0.01 for
# 16 images per step, EMA, seed 0. Configs add a dataset base and their epochs:
#   _base_ = ['../_base_/models/yolox_s_medmnist.py', '../_base_/datasets/medmnist_multirater.py']
_base_ = './yolox_s.py'

model = dict(
    data_preprocessor=dict(batch_augments=None),
    bbox_head=dict(num_classes=10),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65)),
)
base_lr = 0.01
optim_wrapper = dict(optimizer=dict(lr=base_lr))
# No YOLOXModeSwitchHook: there is no Mosaic to switch off.
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
