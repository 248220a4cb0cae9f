# RetinaNet R50-FPN on VinDr-CXR with WBF-fused boxes (iou 0.4, c = T/R), stock head.
# The base of the VinDr RetinaNet family: configs/earl_retinanet_vindr.py adds EARL,
# retinanet_r50_fpn_na_1x_vindr.py trains on all raters' boxes, the rater-R* configs on one
# radiologist of Rads-VinDr-CXR. Data: tools/convert_vindr.py (docs/vindr.md).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

data_root = 'data/vindr/'
classes = (
    'Aortic enlargement', 'Atelectasis', 'Calcification', 'Cardiomegaly', 'Consolidation',
    'ILD', 'Infiltration', 'Lung Opacity', 'Nodule/Mass', 'Other lesion', 'Pleural effusion',
    'Pleural thickening', 'Pneumothorax', 'Pulmonary fibrosis',
)  # fmt: skip
metainfo = dict(classes=classes)
img_scale = (1024, 1024)

model = dict(
    bbox_head=dict(
        num_classes=14,
    )
)
fusion = dict(type='FuseAnnotations', method='wbf', iou_thr=0.4, score_mode='fraction')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    fusion,
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackMultiRaterInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiAnnotatorCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline,
    )
)
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='test.json',
        data_prefix=dict(img='images/test/'),
        pipeline=test_pipeline,
    )
)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DetectionMAPMetric', ann_file=data_root + 'test.json')
test_evaluator = val_evaluator
train_cfg = dict(val_interval=12)
custom_hooks = [dict(type='TrustOwnCheckpointsHook'), dict(type='RandomStateHook')]
