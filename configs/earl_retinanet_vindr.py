# The paper's method with RetinaNet R50-FPN on VinDr-CXR: WBF (iou 0.4) + EARL (c = T/R).
#   tools/dist_train.sh configs/earl_retinanet_vindr.py 2
# Twins: vindr/retinanet_r50_fpn_{na,wbf}_1x_vindr.py; per-rater models on Rads-VinDr-CXR:
# vindr/retinanet_r50_fpn_rater-R{8,9,10}_1x_rads-vindr.py.
_base_ = './vindr/retinanet_r50_fpn_wbf_1x_vindr.py'
model = dict(
    bbox_head=dict(
        type='EARLRetinaHead',
        earl_cfg=dict(terms=('cls', 'bbox'), scale=1.0, gamma=1.0, floor=0.0, normalize='num_pos'),
    )
)
