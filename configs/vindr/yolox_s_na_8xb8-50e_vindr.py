# NA baseline: every rater's box is a ground-truth box (c = 1), stock YOLOX head.
_base_ = ['../_base_/models/yolox_s_8xb8-50e_vindr.py',
          '../_base_/datasets/vindr_multirater_yolox.py']  # fmt: skip
train_dataloader = dict(dataset=dict(dataset=dict(fusion=None)))
