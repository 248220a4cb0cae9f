# VinDr-CXR in the layout of tools/convert_vindr.py (docs/vindr.md): data/vindr/{train,test}.json
# + images/{train,test}/. Training on the radiologists' boxes fused by WBF (iou 0.4, c = T/R);
# validation and test on the PhysioNet test set's gold boxes (consensus of 5 radiologists).
# Another aggregator is one line in a config inheriting this file:
#   train_dataloader = dict(dataset=dict(fusion=dict(_delete_=True, method='mv')))
_base_ = './multirater_layout.py'

data_root = 'data/vindr/'
classes = (
    'Aortic enlargement', 'Atelectasis', 'Calcification', 'Cardiomegaly', 'Consolidation',
    'ILD', 'Infiltration', 'Lung Opacity', 'Nodule/Mass', 'Other lesion', 'Pleural effusion',
    'Pleural thickening', 'Pneumothorax', 'Pulmonary fibrosis',
)  # fmt: skip
metainfo = dict(classes=classes)
img_scale = (1024, 1024)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackMultiRaterInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
fusion = dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, fusion=fusion, pipeline=train_pipeline)
)
# Only the test set has gold boxes: validation runs on it, once at the end of training.
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline,
                 ann_file='test.json', data_prefix=dict(img='images/test/'))
)  # fmt: skip
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'test.json')
test_evaluator = val_evaluator
