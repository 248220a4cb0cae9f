# WBF-fused boxes (iou 0.4, one list per rater, c = T/R), stock head: fusion without EARL.
_base_ = './yolox_nano_na_20e_medmnist-cpu.py'
train_dataloader = dict(
    dataset=dict(fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio'))
)
