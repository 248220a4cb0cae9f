# One model on radiologist R8's boxes alone (Rads-VinDr-CXR: images read by R8, R9 and R10;
# tools/convert_vindr.py --raters R8 R9 R10 --out data/rads_vindr). The three per-rater models
# (rater-R{8,9,10}) are fused by tools/ensemble_predictions.py (the paper's Rads-ensemble).
_base_ = ['../_base_/models/retinanet_r50_fpn_1x_vindr.py',
          '../_base_/datasets/rads_vindr_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(_delete_=True, method='rater:R8')))
