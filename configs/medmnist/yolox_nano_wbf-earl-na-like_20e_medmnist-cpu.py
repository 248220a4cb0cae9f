# Ablation (docs/study_v3_design.md): the WBF boxes weighted the way NA weights them
# implicitly (a box T raters drew is T targets): w = c = T (agreement count) on the cls, box
# and objectness terms of its positives, every loss divided by the sum of the weights.
_base_ = './yolox_nano_wbf-earl_20e_medmnist-cpu.py'
train_dataloader = dict(dataset=dict(fusion=dict(confidence='agreement')))
model = dict(bbox_head=dict(earl_cfg=dict(terms=('cls', 'bbox', 'obj'), normalize='weight_sum')))
