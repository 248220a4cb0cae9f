# Paper-scale MED-MNIST (tools/make_medmnist.py --out data/medmnist: 640 px, 5000/1000/1000
# images, 3 raters, p = 0.8): YOLOX-S, 640 px, 50 epochs, NA baseline (all raters' boxes).
# Meant for a GPU; not run yet (no GPU was available to the session that wrote it).
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'

data_root = 'data/medmnist/'
img_size = 640
max_epochs = 50
batch_size = 16

model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1),
    bbox_head=dict(in_channels=128, feat_channels=128),
)
resize_pad = [
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    dataset=dict(
        data_root=data_root,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='FuseAnnotations', method='na'),
            *resize_pad,
            dict(type='PackMultiRaterInputs'),
        ],
    ),
)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = dict(ann_file=data_root + 'test.json')
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
param_scheduler = [
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=3, end=max_epochs,
         T_max=max_epochs - 3, by_epoch=True, convert_to_iter_based=True),
]  # fmt: skip
auto_scale_lr = dict(base_batch_size=batch_size)
