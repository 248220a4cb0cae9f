# Ablation (docs/study_v3_design.md): WBF + EARL with the objectness of each positive
# weighted by c too (terms cls, bbox, obj); the paper's method leaves objectness unweighted,
# so a box one rater drew is a full objectness target.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox', 'obj'))))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
