# Majority vote (quorum > R/2, average box, c = T), stock head.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='mv', confidence='agreement')))
