# Paper-scale MED-MNIST (../_base_/datasets/medmnist_multirater.py: 640 px, 5000/1000/1000
# images, 3 raters, p = 0.8): YOLOX-S, 640 px, 50 epochs, NA baseline (all raters' boxes).
# Meant for a GPU; not run yet (no GPU was available to the session that wrote it).
_base_ = ['../_base_/models/yolox_s_50e_medmnist.py', '../_base_/datasets/medmnist_multirater.py']
