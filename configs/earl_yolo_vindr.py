# The paper's method on VinDr-CXR: YOLOX-S, 640 px, raters' boxes fused by WBF (iou 0.4),
# EARL-weighted cls and bbox losses (c = T/R), 50 epochs.
#   tools/dist_train.sh configs/earl_yolo_vindr.py 2
# Data: tools/convert_vindr.py (docs/vindr.md) -> data/vindr/{train,test}.json + images/.
# Only the PhysioNet test set has gold boxes (consensus of 5 radiologists): validation runs
# on it once, at the end of training (no model selection on it).
# Twins without EARL: vindr/yolox_s_wbf_8xb8-50e_vindr.py (this file's base: fusion, stock
# head), vindr/yolox_s_na_8xb8-50e_vindr.py (all raters' boxes).
_base_ = './vindr/yolox_s_wbf_8xb8-50e_vindr.py'
model = dict(
    bbox_head=dict(
        type='EARLYOLOXHead',
        earl_cfg=dict(terms=('cls', 'bbox'), scale=1.0, gamma=1.0, floor=0.0, normalize='num_pos'),
    )
)
