# The paper's method with RTMDet-tiny on VinDr-CXR: WBF (iou 0.4) + EARL (c = T/R) on the
# positives' quality-focal and GIoU losses (docs/earl_heads.md, "RTMDet, ATSS and GFL").
#   tools/dist_train.sh configs/vindr/rtmdet_tiny_wbf-earl_8xb32-100e_vindr.py 8
_base_ = './rtmdet_tiny_wbf_8xb32-100e_vindr.py'
model = dict(
    bbox_head=dict(type='EARLRTMDetSepBNHead', earl_cfg=dict(terms=('cls', 'bbox'), policy='earl'))
)
