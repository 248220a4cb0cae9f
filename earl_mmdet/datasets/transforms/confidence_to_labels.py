"""First half of the confidence-carrying pair for ``MultiImageMixDataset`` pipelines."""

from __future__ import annotations

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from .keep_confidence import CONF_KEY, encode_confidence

__all__ = ['ConfidenceToLabels']


@TRANSFORMS.register_module()
class ConfidenceToLabels(BaseTransform):
    """Pack ``gt_confidences`` / ``gt_agreement`` into ``gt_bboxes_labels``.

    Put it last in the pipeline of the dataset inside a ``MultiImageMixDataset``, and
    :class:`ConfidenceFromLabels` after the mixing transforms of the wrapper's pipeline.
    Between the two, the labels carry the confidence (see
    :mod:`earl_mmdet.datasets.transforms.keep_confidence`), so ``Mosaic``, ``MixUp``,
    ``RandomAffine``, ``FilterAnnotations``... keep it aligned and keep their own type names
    for ``skip_type_keys``. Results without ``gt_confidences`` pass unchanged.

    Required Keys:

    - gt_bboxes_labels (np.int64)
    - gt_confidences (np.float32) (optional)
    - gt_agreement (np.int64) (optional)

    Modified Keys:

    - gt_bboxes_labels (packed int64; not usable as class labels until decoded)
    - gt_confidences, gt_agreement (removed)
    """

    def transform(self, results: dict) -> dict:
        """Pack in place and return ``results``."""
        if CONF_KEY in results:
            encode_confidence(results)
        return results
