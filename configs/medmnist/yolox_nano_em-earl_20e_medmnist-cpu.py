# EM rater reliability (Dawid-Skene over class-agnostic clusters, fitted on the training set
# when the dataset loads) + reliability-weighted fusion; c = posterior probability of the
# fused label; EARL head.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox'))))
train_dataloader = dict(dataset=dict(fusion=dict(method='em', confidence='posterior')))
