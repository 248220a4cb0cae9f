# Paper-scale MED-MNIST (tools/make_medmnist.py --out data/medmnist: 640 px, 5000/1000/1000
# images, 3 raters, p = 0.8): the CPU-scale set's settings, its pipelines at 640 px.
_base_ = './medmnist_cpu_multirater.py'

data_root = 'data/medmnist/'
img_size = 640

_sized = dict(Resize=dict(scale=(img_size, img_size)), Pad=dict(size=(img_size, img_size)))
train_pipeline = [dict(step, **_sized.get(step['type'], {})) for step in _base_.train_pipeline]
test_pipeline = [dict(step, **_sized.get(step['type'], {})) for step in _base_.test_pipeline]
del _sized

train_dataloader = dict(num_workers=4, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = dict(ann_file=data_root + 'test.json')
