# The paper's method: WBF-fused boxes + EARL. c = T/R (agreement fraction; with the default
# 'num_pos' normalisation c = T would only rescale the learning rate by up to R).
# EARL weights cls and bbox (+L1) losses, not objectness (as the authors' code).
_base_ = './yolox_nano_wbf_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox'))))
