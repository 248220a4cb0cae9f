# One model on radiologist R10's boxes alone (Rads-VinDr-CXR); see the rater-R8 config.
_base_ = './retinanet_r50_fpn_rater-R8_1x_rads-vindr.py'
train_dataloader = dict(dataset=dict(fusion=dict(method='rater:R10')))
