# The paper's method on VinDr-CXR: YOLOX-S, 640 px, raters' boxes fused by WBF (iou 0.4),
# EARL-weighted cls and bbox losses (c = T/R), 50 epochs.
#   tools/dist_train.sh configs/earl_yolo_vindr.py 2
# Data: tools/convert_vindr.py (docs/vindr.md) -> data/vindr/{train,test}.json + images/.
# Only the PhysioNet test set has gold boxes (consensus of 5 radiologists): validation runs
# on it once, at the end of training (no model selection on it).
# Twins that differ by one token: vindr/yolox_s_na_8xb8-50e_vindr.py (all raters' boxes),
# vindr/yolox_s_wbf_8xb8-50e_vindr.py (fusion without EARL).
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

data_root = 'data/vindr/'
classes = (
    'Aortic enlargement', 'Atelectasis', 'Calcification', 'Cardiomegaly', 'Consolidation',
    'ILD', 'Infiltration', 'Lung Opacity', 'Nodule/Mass', 'Other lesion', 'Pleural effusion',
    'Pleural thickening', 'Pneumothorax', 'Pulmonary fibrosis',
)  # fmt: skip
metainfo = dict(classes=classes)
img_scale = (640, 640)
max_epochs = 50
num_last_epochs = 10

model = dict(
    bbox_head=dict(
        type='EARLYOLOXHead',
        num_classes=14,
        earl_cfg=dict(terms=('cls', 'bbox'), scale=1.0, gamma=1.0, floor=0.0, normalize='num_pos'),
    )
)

# ConfidenceToLabels carries each box's c inside its label through Mosaic / RandomAffine /
# MixUp / FilterAnnotations (which re-index only the keys they know); ConfidenceFromLabels
# restores it. Their type names stay visible to YOLOXModeSwitchHook.
train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(type='RandomAffine', scaling_ratio_range=(0.5, 1.5),
         border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type='MixUp', img_scale=img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='ConfidenceFromLabels'),
    dict(type='PackMultiRaterInputs'),
]  # fmt: skip
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip

train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        dataset=dict(
            _delete_=True,
            type='MultiAnnotatorCocoDataset',
            data_root=data_root,
            metainfo=metainfo,
            ann_file='train.json',
            data_prefix=dict(img='images/train/'),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='FuseAnnotations', method='wbf', iou_thr=0.4, score_mode='fraction'),
                dict(type='ConfidenceToLabels'),
            ],
        ),
        pipeline=train_pipeline,
    ),
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

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=3, T_max=max_epochs - num_last_epochs,
         end=max_epochs - num_last_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type='ConstantLR', by_epoch=True, factor=1, begin=max_epochs - num_last_epochs,
         end=max_epochs),
]  # fmt: skip
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=num_last_epochs, priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True,
         priority=49),
    dict(type='TrustOwnCheckpointsHook'),
    dict(type='RandomStateHook'),
]  # fmt: skip
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=64)
