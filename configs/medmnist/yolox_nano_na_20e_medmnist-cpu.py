# CPU-scale MED-MNIST with a 2.2 M-parameter YOLOX (../_base_/models/yolox_nano_20e_medmnist-cpu.py),
# 128 px, batch 16, flips only, 20 epochs. This file is the NA baseline (every rater's box is a
# ground-truth box, c = 1); its siblings share its two bases and differ in the fusion (one line)
# and/or the head only.
_base_ = ['../_base_/models/yolox_nano_20e_medmnist-cpu.py',
          '../_base_/datasets/medmnist_cpu_multirater.py']  # fmt: skip
