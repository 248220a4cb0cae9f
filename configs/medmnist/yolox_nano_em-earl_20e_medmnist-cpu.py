# EM rater reliability (Dawid-Skene over class-agnostic clusters, fitted on the training set
# when the dataset loads) + reliability-weighted fusion; c = posterior probability of the
# fused label; EARL head.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='em', confidence='posterior')))
