# WBF-fused boxes (iou 0.4, one list per rater), stock head: fusion without EARL.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
train_dataloader = dict(
    dataset=dict(
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='FuseAnnotations', method='wbf', iou_thr=0.4, score_mode='fraction'),
            dict(type='Resize', scale=(128, 128), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='Pad', size=(128, 128), pad_val=dict(img=(114.0, 114.0, 114.0))),
            dict(type='PackMultiRaterInputs'),
        ]
    )
)
