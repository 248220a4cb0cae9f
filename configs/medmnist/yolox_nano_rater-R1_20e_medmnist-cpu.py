# One model per rater (here R1; --cfg-options train_dataloader.dataset.fusion.method=rater:R2
# for R2): the per-rater baseline and the members of the Rads-ensemble
# (tools/ensemble_predictions.py).
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
train_dataloader = dict(dataset=dict(fusion=dict(method='rater:R1')))
