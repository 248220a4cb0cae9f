# WBF-fused VinDr-CXR boxes without EARL (stock YOLOX head): isolates the loss weighting.
_base_ = '../earl_yolo_vindr.py'
model = dict(bbox_head=dict(_delete_=True, type='YOLOXHead', num_classes=14, in_channels=128,
                            feat_channels=128))  # fmt: skip
