# The paper's method on a small two-stage detector: WBF-fused boxes + EARL (c = T/R) in the
# RPN (sampled positive anchors) and the RoI head (sampled positive RoIs).
_base_ = ['../_base_/models/faster-rcnn_r18_fpn_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(rpn_head=dict(type='EARLRPNHead'), roi_head=dict(type='EARLStandardRoIHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
