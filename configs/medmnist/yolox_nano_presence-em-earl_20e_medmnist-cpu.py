# Presence-aware EM (per-rater sensitivity, false-positive propensity and label confusion,
# fitted on the training set when the dataset loads; docs/presence_em.md) + fusion of each
# cluster's boxes as 'em' does; c = presence, the posterior that the box is a real object;
# EARL head.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='presence_em', confidence='presence')))
