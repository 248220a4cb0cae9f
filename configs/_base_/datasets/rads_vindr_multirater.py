# Rads-VinDr-CXR: the VinDr-CXR images read by radiologists R8, R9 and R10, in the layout of
#   tools/convert_vindr.py --raters R8 R9 R10 --out data/rads_vindr
# (docs/vindr.md); everything else as ./vindr_multirater.py (WBF-fused boxes, test-set gold).
_base_ = './vindr_multirater.py'

data_root = 'data/rads_vindr/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'test.json')
test_evaluator = val_evaluator
