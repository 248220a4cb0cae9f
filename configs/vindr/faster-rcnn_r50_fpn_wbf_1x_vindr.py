# Faster R-CNN R50-FPN on VinDr-CXR with WBF-fused boxes (iou 0.4, c = T/R), stock heads;
# mmdet's model and 1x schedule. Its twin -wbf-earl- adds EARL (RPN + RoI head).
_base_ = ['../_base_/models/faster-rcnn_r50_fpn_1x_vindr.py',
          '../_base_/datasets/vindr_multirater.py']  # fmt: skip
