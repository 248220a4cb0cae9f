# mmdet's YOLOX-S (model, 300-epoch SGD schedule, EMA / mode-switch / sync-norm hooks) without
# its COCO data settings, so that it sits beside a dataset base, as mmdet's RetinaNet and
# Faster R-CNN model bases do:
#   _base_ = ['../_base_/models/yolox_s.py', '../_base_/datasets/vindr_multirater.py']
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

del _base_.data_root, _base_.dataset_type, _base_.backend_args, _base_.img_scale
del _base_.train_pipeline, _base_.test_pipeline, _base_.train_dataset
del _base_.train_dataloader, _base_.val_dataloader, _base_.test_dataloader
del _base_.val_evaluator, _base_.test_evaluator
