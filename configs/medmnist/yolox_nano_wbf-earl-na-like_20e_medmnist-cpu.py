# Ablation (docs/study_v3_design.md): the WBF boxes weighted the way NA weights them
# implicitly (a box T raters drew is T targets): w = c = T (agreement count) on the cls, box
# and objectness terms of its positives, every loss divided by the sum of the weights.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox', 'obj'), normalize='weight_sum')))  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement')))  # fmt: skip
