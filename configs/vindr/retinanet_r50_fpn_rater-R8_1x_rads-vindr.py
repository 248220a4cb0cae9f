# One model on radiologist R8's boxes alone (Rads-VinDr-CXR: images read by R8, R9 and R10;
# tools/convert_vindr.py --raters R8 R9 R10 --out data/rads_vindr). The three per-rater models
# (rater-R{8,9,10}) are fused by tools/ensemble_predictions.py (the paper's Rads-ensemble).
_base_ = './retinanet_r50_fpn_wbf_1x_vindr.py'
data_root = 'data/rads_vindr/'
train_dataloader = dict(
    dataset=dict(data_root=data_root, fusion=dict(_delete_=True, method='rater:R8'))
)
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'test.json')
test_evaluator = val_evaluator
