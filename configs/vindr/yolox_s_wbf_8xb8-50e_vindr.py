# YOLOX-S on VinDr-CXR, 640 px, 50 epochs, WBF-fused boxes (iou 0.4, c = T/R), stock head. Its
# twins differ in one token: -na- (all raters' boxes), -wbf-earl- (the paper's method, also at
# the design card's path configs/earl_yolo_vindr.py).
_base_ = ['../_base_/models/yolox_s_8xb8-50e_vindr.py',
          '../_base_/datasets/vindr_multirater_yolox.py']  # fmt: skip
