# RetinaNet-R50-FPN trained with WBF-fused multi-rater boxes and EARL-weighted losses.
# Differs from mmdet's config only in: the head type, the training dataset (multi-rater COCO,
# fused once when it loads) and the last step of its pipeline (multi-rater packing).
# Paper (Pham et al.): L = c*Lcls + c*beta*I(t)*Lloc, c = fused WBF confidence (T/R for
# unit rater scores); beta = loss_bbox.loss_weight; I(t) = the assigner's positives.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

# the EARL head's defaults are the paper's settings (EARLConfig, docs/earl_heads.md); state
# earl_cfg=dict(...) only to change them
model = dict(bbox_head=dict(type='EARLRetinaHead'))

train_dataloader = dict(
    dataset=dict(
        type='MultiRaterCocoDataset',
        ann_file='annotations/instances_train2017_multirater.json',
        # c = the WBF score of each fused box (= T/R with unit rater scores); the authors'
        # code used c = T (confidence='agreement')
        fusion=dict(method='wbf', iou_thr=0.4, confidence='fused_score'),
        # mmdet's pipeline, packing c as well
        pipeline=[*_base_.train_pipeline[:-1], dict(type='PackMultiRaterInputs')],
    )
)
