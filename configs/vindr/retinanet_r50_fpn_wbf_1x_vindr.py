# RetinaNet R50-FPN on VinDr-CXR with WBF-fused boxes (iou 0.4, c = T/R), stock head; mmdet's
# model and 1x schedule (SGD lr 0.01 for 16 images per step). The base of the VinDr RetinaNet
# family: configs/earl_retinanet_vindr.py adds EARL, retinanet_r50_fpn_na_1x_vindr.py trains on
# all raters' boxes, the rater-R* configs on one radiologist of Rads-VinDr-CXR.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/vindr_multirater.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
]
model = dict(bbox_head=dict(num_classes=14))
optim_wrapper = dict(optimizer=dict(lr=0.01))
train_cfg = dict(val_interval=12)
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
