# The design card's RetinaNet entry: configs/vindr/retinanet_r50_fpn_wbf-earl_1x_vindr.py (the
# paper's method with RetinaNet R50-FPN on VinDr-CXR: WBF, iou 0.4, + EARL, c = T/R).
#   tools/dist_train.sh configs/earl_retinanet_vindr.py 2
_base_ = './vindr/retinanet_r50_fpn_wbf-earl_1x_vindr.py'
