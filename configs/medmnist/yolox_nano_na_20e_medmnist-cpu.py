# CPU-scale MED-MNIST (tools/make_medmnist.py --preset cpu): a 2.2 M-parameter YOLOX
# (CSPDarknet deepen 0.33 / widen 0.25), 128 px, batch 16, flips only, 20 epochs, no
# pretrained weights: ~0.5 s per iteration of 16 images on 2 CPU cores here, ~14 min for 20 epochs.
# This file is the NA baseline (every rater's box is a ground-truth box, c = 1); its
# siblings differ in the fusion method and/or the head type only.
_base_ = 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

data_root = 'data/medmnist_cpu/'
img_size = 128
classes = tuple(str(d) for d in range(10))
metainfo = dict(classes=classes)
max_epochs = 20
batch_size = 16

model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(deepen_factor=0.33, widen_factor=0.25),
    neck=dict(in_channels=[64, 128, 256], out_channels=64, num_csp_blocks=1),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64),
    test_cfg=dict(score_thr=0.001, nms=dict(type='nms', iou_threshold=0.65)),
)

fusion = dict(type='FuseAnnotations', method='na')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    fusion,
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='PackMultiRaterInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]

train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='MultiAnnotatorCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='val.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='test.json',
        data_prefix=dict(img='images/test/'),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
val_evaluator = dict(_delete_=True, type='DetectionMAPMetric', ann_file=data_root + 'val.json')
test_evaluator = dict(_delete_=True, type='DetectionMAPMetric', ann_file=data_root + 'test.json')

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
base_lr = 0.01
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=base_lr * 0.05,
        begin=1,
        end=max_epochs,
        T_max=max_epochs - 1,
        by_epoch=True,
        convert_to_iter_based=True,
    ),
]
# No YOLOXModeSwitchHook: there is no Mosaic to switch off in this short schedule.
custom_hooks = [
    dict(
        type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49
    ),
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None),
    logger=dict(interval=20),
)
auto_scale_lr = dict(base_batch_size=batch_size)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
