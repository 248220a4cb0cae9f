# The paper's method on a two-stage detector: Faster R-CNN R50-FPN on VinDr-CXR, WBF
# (iou 0.4) + EARL (c = T/R) in both stages: the RPN's sampled positive anchors and the
# RoI head's sampled positive RoIs are weighted by the confidence of their gt box.
#   tools/dist_train.sh configs/earl_faster-rcnn_vindr.py 2
# Twin without EARL: vindr/faster-rcnn_r50_fpn_wbf_1x_vindr.py. The same training from an
# unchanged model config: custom_hooks += [dict(type='EARLLossHook', earl_cfg=dict())].
_base_ = './vindr/faster-rcnn_r50_fpn_wbf_1x_vindr.py'
earl_cfg = dict(terms=('cls', 'bbox'), scale=1.0, gamma=1.0, floor=0.0, normalize='num_pos')
model = dict(
    rpn_head=dict(type='EARLRPNHead', earl_cfg=earl_cfg),
    roi_head=dict(type='EARLStandardRoIHead', earl_cfg=earl_cfg),
)
