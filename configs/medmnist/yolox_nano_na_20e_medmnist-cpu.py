# CPU-scale MED-MNIST (../_base_/datasets/medmnist_cpu_multirater.py): a 2.2 M-parameter YOLOX
# (CSPDarknet deepen 0.33 / widen 0.25), 128 px, batch 16, flips only, 20 epochs, no
# pretrained weights: ~0.5 s per iteration of 16 images on 2 CPU cores here, ~14 min for 20 epochs.
# This file is the NA baseline (every rater's box is a ground-truth box, c = 1); its
# siblings differ in the fusion (one line) and/or the head type only.
_base_ = [
    '../_base_/models/yolox_s_medmnist.py',
    '../_base_/datasets/medmnist_cpu_multirater.py',
]

max_epochs = 20

model = dict(
    backbone=dict(widen_factor=0.25),
    neck=dict(in_channels=[64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64),
)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.01 * 0.05,
        begin=1,
        end=max_epochs,
        T_max=max_epochs - 1,
        by_epoch=True,
        convert_to_iter_based=True,
    ),
]
