# Paper-scale MED-MNIST, the paper's method: WBF (iou 0.4, c = T/R) + EARL, YOLOX-S 640 px.
_base_ = './yolox_s_na_50e_medmnist.py'
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox'))))
train_dataloader = dict(
    dataset=dict(
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='FuseAnnotations', method='wbf', iou_thr=0.4, score_mode='fraction'),
            dict(type='Resize', scale=(640, 640), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='Pad', size=(640, 640), pad_val=dict(img=(114.0, 114.0, 114.0))),
            dict(type='PackMultiRaterInputs'),
        ]
    )
)
