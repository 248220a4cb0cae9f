# CPU-scale MED-MNIST (tools/make_medmnist.py --preset cpu --out data/medmnist_cpu): 128 px
# square canvases, 10 digit classes, 3 raters, batch 16; layout: ./multirater_layout.py.
# Training on every rater's box (no fusion: c = 1, the NA baseline); validation and test on
# the gold boxes. Another aggregator is one line in a config inheriting this file:
#   train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4)))
_base_ = './multirater_layout.py'

data_root = 'data/medmnist_cpu/'
img_size = 128
classes = tuple(str(d) for d in range(10))
metainfo = dict(classes=classes)

# Resize + Pad letterbox every image onto an img_size square (the canvases are square).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='PackMultiRaterInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='Pad', size=(img_size, img_size), pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
train_dataloader = dict(
    batch_size=16, dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline)
)
val_dataloader = dict(
    batch_size=32, dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline)
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = dict(ann_file=data_root + 'test.json')
