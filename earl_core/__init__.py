"""earl_core: truth inference from several raters' boxes, without a training framework.

The framework-free half of earl-mmdet (numpy and scipy only; importing it loads neither
torch nor mmdet), usable from a notebook, a Kaggle kernel or another detection framework:

- :mod:`earl_core.structures`: the one container, ``Detections``: the boxes of one image,
  every rater's (who drew each) or fused (with agreement T and confidence c), selected by
  masks with every field aligned.
- :mod:`earl_core.io`: multi-rater COCO files (:mod:`~earl_core.io.coco`: reading, with the
  checks of each record in :mod:`~earl_core.io.coco_checks`), atomic output files
  (:mod:`~earl_core.io.safe_output`).
- :mod:`earl_core.fusion`: fusion of the raters' boxes into fused boxes with agreement T and
  confidence c: WBF (:mod:`~earl_core.fusion.wbf`), the aggregators and their registry
  (:mod:`~earl_core.fusion.aggregators`, :mod:`~earl_core.fusion.base`), EM over raters
  (:mod:`~earl_core.fusion.em`, :mod:`~earl_core.fusion.presence_em`), the Bayesian rater
  model (:mod:`~earl_core.fusion.bayes`), box matching and clustering.
- :mod:`earl_core.metrics`: AP maths (:mod:`~earl_core.metrics.ap`), the COCO-eval bridge
  (:mod:`~earl_core.metrics.coco_eval`), rater statistics (the package
  :mod:`~earl_core.metrics.rater_report`), the Markdown mAP report.
- :mod:`earl_core.sources`: VinDr-CXR (:mod:`~earl_core.sources.vindr`, the sample walk) and
  the MED-MNIST simulator with its raters.
- :mod:`earl_core.study`: the benchmark study's bookkeeping and statistics, the regime map,
  the sequential design.
- :mod:`earl_core.boxes`: box arrays and IoU; :mod:`earl_core.cli`: what the tools share.

The mmdet adapter (datasets, transforms, EARL heads, hooks, metric) is the package
``earl_mmdet``, which registers its components when imported.
"""

from .version import __version__

__all__ = ['__version__']
