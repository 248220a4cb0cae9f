# The paper's method with RTMDet-tiny on VinDr-CXR: WBF (iou 0.4) + EARL (c = T/R) on the
# positives' quality-focal and GIoU losses (docs/earl_heads.md, "RTMDet, ATSS and GFL").
#   tools/dist_train.sh configs/vindr/rtmdet_tiny_wbf-earl_8xb32-100e_vindr.py 8
_base_ = ['../_base_/models/rtmdet_tiny_8xb32-100e_vindr.py',
          '../_base_/datasets/vindr_multirater_rtmdet.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLRTMDetSepBNHead'))
