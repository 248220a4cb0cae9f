# Ablation (docs/study_v3_design.md): WBF + EARL with the weight-sum normaliser: every YOLOX
# loss divided by the sum of the positives' weights instead of their number (a weighted
# mean of the cls and box terms; objectness, unweighted, is scaled up by num_pos / sum w).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(normalize='weight_sum')))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
