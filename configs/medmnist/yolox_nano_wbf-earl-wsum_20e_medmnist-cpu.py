# Ablation (docs/study_v3_design.md): WBF + EARL with the weight-sum normaliser: every YOLOX
# loss divided by the sum of the positives' weights instead of their number (a weighted
# mean of the cls and box terms; objectness, unweighted, is scaled up by num_pos / sum w).
_base_ = './yolox_nano_wbf-earl_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(earl_cfg=dict(normalize='weight_sum')))
