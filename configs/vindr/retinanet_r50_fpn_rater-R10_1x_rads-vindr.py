# One model on radiologist R10's boxes alone (Rads-VinDr-CXR); see the rater-R8 config.
_base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
          '../_base_/datasets/rads_vindr_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(_delete_=True, method='rater:R10')))
