# The paper's method with RetinaNet R50-FPN on VinDr-CXR: WBF (iou 0.4) + EARL (c = T/R; the
# EARL head's defaults are the paper's settings).
#   tools/dist_train.sh configs/vindr/retinanet_r50_fpn_wbf-earl_1x_vindr.py 2
_base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
          '../_base_/datasets/vindr_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLRetinaHead'))
