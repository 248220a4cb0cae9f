# WBF-fused boxes (c = T/R) + EARL head with the 'ignore' loss policy: a box with c < 0.5
# (one rater of three) is an ignore region, its priors neither positive nor negative; the
# kept boxes weigh 1 (docs/earl_heads.md).
_base_ = './yolox_nano_wbf-earl_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(earl_cfg=dict(policy='ignore', ignore_below=0.5)))
