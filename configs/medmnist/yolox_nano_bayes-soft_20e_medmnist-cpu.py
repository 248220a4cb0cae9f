# Bayesian rater model (per-rater confusion with a background class and box precision,
# variational EM on the matched boxes when the dataset loads; docs/bayes_raters.md), fused
# once; c = q(z = fused label), trained as the soft class target (policy 'soft'), the
# positives' box and objectness losses weighted by c.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox', 'obj'), policy='soft')))  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='bayes', confidence='posterior')))
