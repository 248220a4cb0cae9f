# Ablation (docs/study_v3_design.md): WBF + EARL with the objectness of each positive
# weighted by c too (terms cls, bbox, obj); the paper's method leaves objectness unweighted,
# so a box one rater drew is a full objectness target.
_base_ = './yolox_nano_wbf-earl_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(earl_cfg=dict(terms=('cls', 'bbox', 'obj'))))
