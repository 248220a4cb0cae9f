# The paper's method on a two-stage detector: Faster R-CNN R50-FPN on VinDr-CXR, WBF (iou 0.4)
# + EARL (c = T/R; the heads' defaults are the paper's settings) in both stages: the RPN's
# sampled positive anchors and the RoI head's sampled positive RoIs are weighted by the
# confidence of their gt box.
#   tools/dist_train.sh configs/vindr/faster-rcnn_r50_fpn_wbf-earl_1x_vindr.py 2
# The same training from the stock config: custom_hooks += [dict(type='EARLLossHook')].
_base_ = ['../_base_/models/faster-rcnn_r50_fpn_1x_vindr.py',
          '../_base_/datasets/vindr_multirater.py']  # fmt: skip
model = dict(rpn_head=dict(type='EARLRPNHead'), roi_head=dict(type='EARLStandardRoIHead'))
