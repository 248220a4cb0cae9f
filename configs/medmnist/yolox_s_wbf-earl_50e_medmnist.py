# Paper-scale MED-MNIST, the paper's method: WBF (iou 0.4, c = T/R) + EARL, YOLOX-S 640 px.
_base_ = './yolox_s_na_50e_medmnist.py'
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox'))))
train_dataloader = dict(
    dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio'))
)
