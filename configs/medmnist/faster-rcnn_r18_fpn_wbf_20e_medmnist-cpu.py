# CPU-scale MED-MNIST with a small two-stage detector (Faster R-CNN, ResNet-18 FPN from scratch;
# ../_base_/models/faster-rcnn_r18_fpn_20e_medmnist-cpu.py), 128 px, batch 16, flips only, 20
# epochs. Raters' boxes fused by WBF (iou 0.4, c = T/R), stock heads; -wbf-earl- adds EARL.
_base_ = ['../_base_/models/faster-rcnn_r18_fpn_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
