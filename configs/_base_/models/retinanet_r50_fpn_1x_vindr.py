# RetinaNet R50-FPN for VinDr-CXR's 14 findings, without data: mmdet's model, 1x schedule (SGD
# lr 0.01 for 16 images per step) and runtime; validation once, at the end of training.
#   _base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
#             '../_base_/datasets/vindr_multirater.py']
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
]
model = dict(bbox_head=dict(num_classes=14))
optim_wrapper = dict(optimizer=dict(lr=0.01))
train_cfg = dict(val_interval=12)
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
