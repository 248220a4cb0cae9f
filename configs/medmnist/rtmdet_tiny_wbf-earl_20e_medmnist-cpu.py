# The paper's method on RTMDet-tiny: WBF-fused boxes + EARL (c = T/R). EARL multiplies the
# positives' quality-focal and GIoU losses by c (docs/earl_heads.md, "RTMDet, ATSS and GFL");
# earl_cfg=dict(policy='soft' or 'ignore') selects the other loss policies.
_base_ = ['../_base_/models/rtmdet_tiny_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLRTMDetSepBNHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
