# NA baseline: every rater's box is a ground-truth box (c = 1), stock RetinaHead.
_base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
          '../_base_/datasets/vindr_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=None))
