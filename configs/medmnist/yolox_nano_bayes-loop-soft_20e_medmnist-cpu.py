# The detector in the loop (docs/bayes_raters.md): as yolox_nano_bayes-soft, and after 5
# epochs, every 2 epochs, the detector's boxes on the training images (score >= 0.3) join
# the raters as one more rater and the Bayesian fusion is refit (DetectorRaterHook).
_base_ = './yolox_nano_bayes-soft_20e_medmnist-cpu.py'
custom_hooks = [*_base_.custom_hooks, dict(type='DetectorRaterHook', warmup_epochs=5, interval=2)]
