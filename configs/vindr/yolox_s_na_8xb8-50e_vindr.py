# NA baseline: every rater's box is a ground-truth box (c = 1), stock YOLOX head.
_base_ = './yolox_s_wbf_8xb8-50e_vindr.py'
train_dataloader = dict(dataset=dict(dataset=dict(fusion=None)))
