# Faster R-CNN R50-FPN on VinDr-CXR with WBF-fused boxes (iou 0.4, c = T/R), stock heads;
# mmdet's model and 1x schedule (SGD lr 0.02 for 16 images per step). The base of the VinDr
# Faster R-CNN family: configs/earl_faster-rcnn_vindr.py adds EARL (RPN + RoI head).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/vindr_multirater.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(roi_head=dict(bbox_head=dict(num_classes=14)))
train_cfg = dict(val_interval=12)
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
