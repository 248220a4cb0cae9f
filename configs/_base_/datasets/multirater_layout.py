# Data loading shared by this repository's multi-rater datasets, in the layout their tools
# write (tools/convert_vindr.py, tools/make_medmnist.py): <data_root>/train.json (multi-rater
# COCO, docs/data_format.md) and val.json / test.json (gold boxes), images under
# <data_root>/images/{train,val,test}/. The dataset bases beside this file add the data root,
# the classes, the pipelines and the fusion.
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='MultiRaterCocoDataset',
        ann_file='train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=False),
    ),
)
_gold = dict(type='CocoDataset', test_mode=True, backend_args=None)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_gold, ann_file='val.json', data_prefix=dict(img='images/val/')),
)
test_dataloader = dict(
    val_dataloader, dataset=dict(_gold, ann_file='test.json', data_prefix=dict(img='images/test/'))
)
del _gold
val_evaluator = dict(type='DetectionMAPMetric')
test_evaluator = dict(type='DetectionMAPMetric')
