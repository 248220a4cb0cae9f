# RetinaNet R50-FPN on VinDr-CXR, raters' boxes fused by WBF (iou 0.4, c = T/R), stock head;
# mmdet's model and 1x schedule. Its twins differ in one token: -na- (all raters' boxes),
# -wbf-earl- (the paper's method); -rater-R* train on one radiologist of Rads-VinDr-CXR.
_base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
          '../_base_/datasets/vindr_multirater.py']  # fmt: skip
