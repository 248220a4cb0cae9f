# mmdet's RTMDet-tiny (model, AdamW schedule, EMA) without its COCO data settings, so that it
# sits beside a dataset base, as ./yolox_s.py does for YOLOX-S:
#   _base_ = ['../_base_/models/rtmdet_tiny.py', '../_base_/datasets/vindr_multirater.py']
# The backbone starts from scratch: mmdet's config downloads an ImageNet-pretrained CSPNeXt
# (the removed `checkpoint`); set model.backbone.init_cfg back to that to use it.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.checkpoint
del _base_.train_pipeline, _base_.train_pipeline_stage2, _base_.test_pipeline
del _base_.train_dataloader, _base_.val_dataloader, _base_.test_dataloader
del _base_.val_evaluator, _base_.test_evaluator

model = dict(backbone=dict(init_cfg=None))
# mmdet's EMA, without its PipelineSwitchHook (it names the COCO stage-2 pipeline; configs with
# CachedMosaic add their own)
custom_hooks = [
    _base_.custom_hooks[0],
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]
