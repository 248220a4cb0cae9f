# NA baseline: every rater's box is a ground-truth box (c = 1), stock RetinaHead.
_base_ = './retinanet_r50_fpn_wbf_1x_vindr.py'
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='FuseAnnotations', method='na'),
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackMultiRaterInputs'),
]))  # fmt: skip
