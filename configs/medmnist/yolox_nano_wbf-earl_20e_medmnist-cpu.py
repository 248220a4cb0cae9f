# The paper's method: WBF-fused boxes + EARL. c = T/R (agreement fraction; with the default
# 'num_pos' normalisation c = T would only rescale the learning rate by up to R). The EARL head's
# defaults are the paper's settings: cls and bbox (+L1) losses weighted, not objectness (as the
# authors' code).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
train_dataloader = dict(dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')))  # fmt: skip
