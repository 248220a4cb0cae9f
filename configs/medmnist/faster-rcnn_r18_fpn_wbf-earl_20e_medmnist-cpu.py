# The paper's method on a small two-stage detector: WBF-fused boxes + EARL (c = T/R) in the
# RPN (sampled positive anchors) and the RoI head (sampled positive RoIs).
_base_ = './faster-rcnn_r18_fpn_wbf_20e_medmnist-cpu.py'
model = dict(
    rpn_head=dict(type='EARLRPNHead', earl_cfg=dict(terms=('cls', 'bbox'))),
    roi_head=dict(type='EARLStandardRoIHead', earl_cfg=dict(terms=('cls', 'bbox'))),
)
