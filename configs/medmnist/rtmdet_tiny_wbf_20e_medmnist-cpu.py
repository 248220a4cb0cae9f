# CPU-scale MED-MNIST with mmdet's RTMDet-tiny (../_base_/models/rtmdet_tiny_20e_medmnist-cpu.py),
# 128 px, batch 16, flips only, 20 epochs; WBF-fused boxes (iou 0.4, c = T/R), stock head. The
# RTMDet twin of yolox_nano_wbf_20e_medmnist-cpu.py; -wbf-earl- adds EARL.
_base_ = ['../_base_/models/rtmdet_tiny_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
