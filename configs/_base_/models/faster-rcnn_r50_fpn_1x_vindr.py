# Faster R-CNN R50-FPN for VinDr-CXR's 14 findings, without data: mmdet's model, 1x schedule
# (SGD lr 0.02 for 16 images per step) and runtime; validation once, at the end of training.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(roi_head=dict(bbox_head=dict(num_classes=14)))
train_cfg = dict(val_interval=12)
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
