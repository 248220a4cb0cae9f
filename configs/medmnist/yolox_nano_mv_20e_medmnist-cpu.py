# Majority vote (quorum > R/2, average box, c = T), stock head.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
train_dataloader = dict(dataset=dict(fusion=dict(method='mv', confidence='agreement')))
