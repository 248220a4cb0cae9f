# Paper-scale MED-MNIST, the paper's method: WBF (iou 0.4, c = T/R) + EARL, YOLOX-S 640 px.
_base_ = ['../_base_/models/yolox_s_50e_medmnist.py', '../_base_/datasets/medmnist_multirater.py']
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
