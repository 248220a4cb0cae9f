# YOLOX-S trained with WBF-fused multi-rater boxes and EARL-weighted losses.
# Differs from mmdet's config only in: the head type, the training dataset (multi-rater COCO,
# fused once when it loads) and the confidence carried through the mixing transforms.
# Paper (Pham et al.): L = c*Lcls + c*beta*I(t)*Lloc, c = fused WBF confidence; beta =
# loss_bbox.loss_weight (5.0); I(t) = SimOTA's positives. Objectness is not weighted
# (the authors' code), terms=('cls', 'bbox', 'obj') weights it too.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

# Mosaic / RandomAffine / MixUp / FilterAnnotations drop and reorder boxes but only
# re-index the keys they know. ConfidenceToLabels (end of the inner pipeline) carries each
# box's c inside its label through them; ConfidenceFromLabels restores it. Unlike wrapping
# each in KeepConfidence, this keeps their type names, so YOLOXModeSwitchHook's
# skip_type_keys=('Mosaic', 'RandomAffine', 'MixUp') still switches them off for the last
# 15 epochs.
train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            type='MultiRaterCocoDataset',
            ann_file='annotations/instances_train2017_multirater.json',
            fusion=dict(method='wbf', iou_thr=0.4, confidence='fused_score'),
            pipeline=[*_base_.train_dataset.dataset.pipeline, dict(type='ConfidenceToLabels')],
        ),
        pipeline=[
            *_base_.train_pipeline[:-1],
            dict(type='ConfidenceFromLabels'),
            dict(type='PackMultiRaterInputs'),
        ],
    )
)

# the EARL head's defaults are the paper's settings (EARLConfig, docs/earl_heads.md)
model = dict(bbox_head=dict(type='EARLYOLOXHead'))
