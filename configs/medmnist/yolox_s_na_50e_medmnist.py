# Paper-scale MED-MNIST (../_base_/datasets/medmnist_multirater.py: 640 px, 5000/1000/1000
# images, 3 raters, p = 0.8): YOLOX-S, 640 px, 50 epochs, NA baseline (all raters' boxes).
# Meant for a GPU; not run yet (no GPU was available to the session that wrote it).
_base_ = ['../_base_/models/yolox_s_medmnist.py', '../_base_/datasets/medmnist_multirater.py']

max_epochs = 50

train_cfg = dict(max_epochs=max_epochs, val_interval=10)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=3, end=max_epochs,
         T_max=max_epochs - 3, by_epoch=True, convert_to_iter_based=True),
]  # fmt: skip
