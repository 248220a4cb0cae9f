# The design card's entry: the paper's method on VinDr-CXR, YOLOX-S, 640 px, raters' boxes fused
# by WBF (iou 0.4), EARL-weighted cls and bbox losses (c = T/R), 50 epochs.
#   tools/dist_train.sh configs/earl_yolo_vindr.py 2
# It is configs/vindr/yolox_s_wbf-earl_8xb8-50e_vindr.py under the card's name: the same two
# bases and the same line (inheriting that file would make a fourth level of inheritance);
# tests/test_configs.py checks that the two build the same config.
# Data: tools/convert_vindr.py (docs/vindr.md) -> data/vindr/{train,test}.json + images/.
# Only the PhysioNet test set has gold boxes (consensus of 5 radiologists): validation runs
# on it once, at the end of training (no model selection on it).
_base_ = ['./_base_/models/yolox_s_8xb8-50e_vindr.py',
          './_base_/datasets/vindr_multirater_yolox.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
