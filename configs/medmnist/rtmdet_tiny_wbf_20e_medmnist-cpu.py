# CPU-scale MED-MNIST (../_base_/datasets/medmnist_cpu_multirater.py) with mmdet's RTMDet-tiny
# (4.9 M parameters, no pretrained weights), 128 px, batch 16, flips only, 20 epochs; WBF-fused
# boxes (iou 0.4, c = T/R), stock head. The RTMDet twin of yolox_nano_wbf_20e_medmnist-cpu.py;
# rtmdet_tiny_wbf-earl_20e_medmnist-cpu.py adds EARL.
_base_ = [
    '../_base_/models/rtmdet_tiny.py',
    '../_base_/datasets/medmnist_cpu_multirater.py',
]

max_epochs = 20
# AdamW: mmdet's 0.004 for 256 images per step, scaled by sqrt(16 / 256) for 16
base_lr = 0.001

model = dict(
    bbox_head=dict(num_classes=10),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65), max_per_img=100),
)
train_dataloader = dict(
    dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio'))
)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=None)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0e-5,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True,
    ),
    dict(
        type='CosineAnnealingLR',
        eta_min=base_lr * 0.05,
        begin=1,
        end=max_epochs,
        T_max=max_epochs - 1,
        by_epoch=True,
        convert_to_iter_based=True,
    ),
]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None),
    logger=dict(interval=20),
)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
