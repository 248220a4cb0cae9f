# WBF-fused boxes (c = T/R) + EARL head with the 'ignore' loss policy: a box with c < 0.5
# (one rater of three) is an ignore region, its priors neither positive nor negative; the
# kept boxes weigh 1 (docs/earl_heads.md).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(policy='ignore', ignore_below=0.5)))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
