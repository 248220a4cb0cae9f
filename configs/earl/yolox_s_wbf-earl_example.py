# YOLOX-S trained with WBF-fused multi-rater boxes and EARL-weighted losses.
# Differs from mmdet's config only in: the head type, the training dataset (multi-rater
# COCO) and its pipelines (fusion after LoadAnnotations, confidence carried through the
# mixing transforms, multi-rater packing).
# Paper (Pham et al.): L = c*Lcls + c*beta*I(t)*Lloc, c = fused WBF confidence; beta =
# loss_bbox.loss_weight (5.0); I(t) = SimOTA's positives. Objectness is not weighted
# (the authors' code), terms=('cls', 'bbox', 'obj') weights it too.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

img_scale = (640, 640)  # width, height

model = dict(
    bbox_head=dict(
        type='EARLYOLOXHead',
        earl_cfg=dict(terms=('cls', 'bbox'), scale=1.0, gamma=1.0, floor=0.0, normalize='num_pos'),
    )
)

# Mosaic / RandomAffine / MixUp / FilterAnnotations drop and reorder boxes but only
# re-index the keys they know. ConfidenceToLabels (end of the inner pipeline) carries each
# box's c inside its label through them; ConfidenceFromLabels restores it. Unlike wrapping
# each in KeepConfidence, this keeps their type names, so YOLOXModeSwitchHook's
# skip_type_keys=('Mosaic', 'RandomAffine', 'MixUp') still switches them off for the last
# 15 epochs.
train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(
        type='RandomAffine',
        scaling_ratio_range=(0.1, 2),
        border=(-img_scale[0] // 2, -img_scale[1] // 2),
    ),
    dict(type='MixUp', img_scale=img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='ConfidenceFromLabels'),
    dict(type='PackMultiRaterInputs'),
]

train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            type='MultiAnnotatorCocoDataset',
            ann_file='annotations/instances_train2017_multirater.json',
            pipeline=[
                dict(type='LoadImageFromFile', backend_args=None),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='FuseAnnotations', method='wbf', score_mode='wbf', iou_thr=0.4),
                dict(type='ConfidenceToLabels'),
            ],
        ),
        pipeline=train_pipeline,
    )
)
