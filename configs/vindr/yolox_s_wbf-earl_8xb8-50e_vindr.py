# The paper's method on VinDr-CXR: YOLOX-S, 640 px, raters' boxes fused by WBF (iou 0.4),
# EARL-weighted cls and bbox losses (c = T/R; the EARL head's defaults are the paper's settings),
# 50 epochs. The design card runs it as configs/earl_yolo_vindr.py (the same config).
#   tools/dist_train.sh configs/vindr/yolox_s_wbf-earl_8xb8-50e_vindr.py 2
_base_ = ['../_base_/models/yolox_s_8xb8-50e_vindr.py',
          '../_base_/datasets/vindr_multirater_yolox.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
