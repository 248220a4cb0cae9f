# Presence-aware EM (per-rater sensitivity, false-positive propensity and label confusion,
# fitted on the training set when the dataset loads; docs/presence_em.md) + fusion of each
# cluster's boxes as 'em' does; c = presence, the posterior that the box is a real object;
# EARL head.
_base_ = './yolox_nano_em-earl_20e_medmnist-cpu.py'
train_dataloader = dict(dataset=dict(fusion=dict(method='presence_em', confidence='presence')))
