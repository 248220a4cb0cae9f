# The detector in the loop (docs/bayes_raters.md): yolox_nano_bayes-soft, and after 5 epochs,
# every 2 epochs, the detector's boxes on the training images (score >= 0.3) join the raters
# as one more rater and the Bayesian fusion is refit (DetectorRaterHook).
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
model = dict(bbox_head=dict(type='EARLYOLOXHead', earl_cfg=dict(terms=('cls', 'bbox', 'obj'), policy='soft')))  # fmt: skip
train_dataloader = dict(dataset=dict(fusion=dict(method='bayes', confidence='posterior')))
custom_hooks = [*_base_.custom_hooks, dict(type='DetectorRaterHook', warmup_epochs=5, interval=2)]
