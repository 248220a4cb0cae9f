# WBF-fused boxes (c = T/R) + EARL head with the 'soft' loss policy: a positive's
# classification target is IoU x q, q = min(1, w) = c, instead of IoU; its box losses are
# weighted by w as under EARL (docs/earl_heads.md).
_base_ = './yolox_nano_wbf-earl_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(earl_cfg=dict(policy='soft')))
