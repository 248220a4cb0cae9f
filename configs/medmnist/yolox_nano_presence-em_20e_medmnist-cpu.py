# Ablation (docs/study_v3_design.md): the boxes of presence-aware EM (the fusion of
# ./yolox_nano_presence-em-earl_20e_medmnist-cpu.py) on the stock head, every box weight 1:
# the quality of the truth without EARL's weighting.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='presence_em', confidence='presence')))
