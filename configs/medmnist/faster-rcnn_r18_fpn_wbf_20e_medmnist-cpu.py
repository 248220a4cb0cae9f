# CPU-scale MED-MNIST (tools/make_medmnist.py --preset cpu) with a small two-stage
# detector: Faster R-CNN, ResNet-18 FPN (64 channels, 256-d box head) without pretrained
# weights, 128 px, batch 16, flips only, 20 epochs. Raters' boxes fused by WBF (iou 0.4,
# c = T/R), stock heads; faster-rcnn_r18_fpn_wbf-earl_20e_medmnist-cpu.py adds EARL.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

data_root = 'data/medmnist_cpu/'
img_size = 128
classes = tuple(str(d) for d in range(10))
metainfo = dict(classes=classes)
max_epochs = 20
batch_size = 16

model = dict(
    # from scratch: no frozen stem, BN statistics trained (mmdet's R-CNN configs freeze
    # both because they start from ImageNet weights)
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    # digits are 20-44 px: anchors of 16-256 px on strides 4-64
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=10),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128)),  # <= 4 objects per image: 128 RoIs suffice
    ),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='FuseAnnotations', method='wbf', iou_thr=0.4, score_mode='fraction'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackMultiRaterInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(
        _delete_=True,
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
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='test.json',
        data_prefix=dict(img='images/test/'),
        pipeline=test_pipeline,
    ),
)
val_evaluator = dict(_delete_=True, type='DetectionMAPMetric', ann_file=data_root + 'val.json')
test_evaluator = dict(_delete_=True, type='DetectionMAPMetric', ann_file=data_root + 'test.json')

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[16, 19],
         gamma=0.1),
]  # fmt: skip
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=1),
    logger=dict(interval=20),
)
auto_scale_lr = dict(base_batch_size=batch_size)
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False)
