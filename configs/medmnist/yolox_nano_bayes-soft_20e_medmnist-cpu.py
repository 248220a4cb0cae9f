# Bayesian rater model (per-rater confusion with a background class and box precision,
# variational EM on the matched boxes when the dataset loads; docs/bayes_raters.md), fused
# once; c = q(z = fused label), trained as the soft class target (policy 'soft'), the
# positives' box and objectness losses weighted by c.
_base_ = './yolox_nano_wbf-soft_20e_medmnist-cpu.py'
model = dict(bbox_head=dict(earl_cfg=dict(terms=('cls', 'bbox', 'obj'), policy='soft')))
train_dataloader = dict(
    dataset=dict(fusion=dict(_delete_=True, method='bayes', confidence='posterior'))
)
