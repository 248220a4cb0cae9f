# NA baseline: every rater's box is a ground-truth box (c = 1), stock RetinaHead.
_base_ = './retinanet_r50_fpn_wbf_1x_vindr.py'
train_dataloader = dict(dataset=dict(fusion=None))
