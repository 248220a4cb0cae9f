"""Evaluation: mAP@0.4 / mAP@[.5:.95] / Kaggle-mode metric."""

from . import metrics  # noqa: F401  (registration)
