# RTMDet-tiny on VinDr-CXR, 640 px, 100 epochs (the last 10 without CachedMosaic / MixUp), WBF-
# fused boxes (iou 0.4, c = T/R), stock head; mmdet's pipeline and AdamW schedule (lr 0.004 for
# 8 GPUs x 32 images), backbone from scratch. Its twin -wbf-earl- adds EARL.
_base_ = ['../_base_/models/rtmdet_tiny_8xb32-100e_vindr.py',
          '../_base_/datasets/vindr_multirater_rtmdet.py']  # fmt: skip
