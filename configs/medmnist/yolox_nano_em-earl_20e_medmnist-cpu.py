# EM rater reliability (Dawid-Skene over class-agnostic clusters) + reliability-weighted
# fusion; c = posterior probability of the fused label; EARL head.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox'))))
train_dataloader = dict(
    dataset=dict(
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(
                type='FuseAnnotations',
                method='em',
                score_mode='posterior',
                fit_ann_file='data/medmnist_cpu/train.json',
            ),
            dict(type='Resize', scale=(128, 128), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='Pad', size=(128, 128), pad_val=dict(img=(114.0, 114.0, 114.0))),
            dict(type='PackMultiRaterInputs'),
        ]
    )
)
