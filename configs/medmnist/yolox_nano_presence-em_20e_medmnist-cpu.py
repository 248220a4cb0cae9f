# Ablation (docs/study_v3_design.md): the boxes of presence-aware EM (the fusion of
# ./yolox_nano_presence-em-earl_20e_medmnist-cpu.py) on the stock head, every box weight 1:
# the quality of the truth without EARL's weighting.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
train_dataloader = dict(dataset=dict(fusion=dict(method='presence_em', confidence='presence')))
