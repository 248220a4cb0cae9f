# WBF-fused boxes (c = T/R) + EARL head with the 'soft' loss policy: a positive's
# classification target is IoU x q, q = min(1, w) = c, instead of IoU; its box losses are
# weighted by w as under EARL (docs/earl_heads.md).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(policy='soft')))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
