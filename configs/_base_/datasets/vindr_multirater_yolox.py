# VinDr-CXR (./vindr_multirater.py: WBF-fused boxes, iou 0.4, c = T/R) at 640 px with the training
# augmentation of mmdet's YOLOX: Mosaic, RandomAffine, MixUp, flips, letterbox to a square;
# batch 8 per GPU. The last epochs switch Mosaic / RandomAffine / MixUp off by their type names
# (YOLOXModeSwitchHook in ../models/yolox_s_8xb8-50e_vindr.py).
_base_ = './vindr_multirater.py'

img_scale = (640, 640)

# ConfidenceToLabels (end of the inner pipeline) carries each box's c inside its label through
# Mosaic / RandomAffine / MixUp / FilterAnnotations (which re-index only the keys they know);
# ConfidenceFromLabels restores it. Their type names stay visible to YOLOXModeSwitchHook.
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
inner_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ConfidenceToLabels'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(_base_.train_dataloader.dataset, pipeline=inner_pipeline),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
