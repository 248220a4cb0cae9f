# One model per rater (here R1; --cfg-options train_dataloader.dataset.fusion.method=rater:R2
# for R2): the per-rater baseline and the members of the Rads-ensemble
# (tools/ensemble_predictions.py).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='rater:R1')))
