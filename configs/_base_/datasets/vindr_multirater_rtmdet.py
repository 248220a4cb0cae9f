# VinDr-CXR (./vindr_multirater.py: WBF-fused boxes, iou 0.4, c = T/R) at 640 px with the training
# augmentation of mmdet's RTMDet-tiny: CachedMosaic, RandomResize, RandomCrop, HSV, flips,
# CachedMixUp; batch 32 per GPU. The last epochs switch to a pipeline without the cached mixes
# (train_pipeline_stage2 in ../models/rtmdet_tiny_8xb32-100e_vindr.py).
_base_ = './vindr_multirater.py'

img_scale = (640, 640)

# ConfidenceToLabels (right after loading) carries each box's c inside its label through
# CachedMosaic / RandomCrop / CachedMixUp (which re-index only the keys they know);
# ConfidenceFromLabels restores it before packing.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ConfidenceToLabels'),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20,
         random_pop=False),
    dict(type='RandomResize', scale=(1280, 1280), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0), max_cached_images=10,
         random_pop=False, pad_val=(114, 114, 114), prob=0.5),
    dict(type='ConfidenceFromLabels'),
    dict(type='PackMultiRaterInputs'),
]  # fmt: skip
# the base's, at 640 px and padded to a square
test_pipeline = [
    _base_.test_pipeline[0],
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    *_base_.test_pipeline[2:],
]
train_dataloader = dict(
    batch_size=32,
    num_workers=10,
    batch_sampler=None,
    pin_memory=True,
    dataset=dict(pipeline=train_pipeline),
)
val_dataloader = dict(batch_size=5, num_workers=10, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
