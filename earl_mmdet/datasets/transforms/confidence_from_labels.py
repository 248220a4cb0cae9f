"""Second half of the confidence-carrying pair for ``MultiImageMixDataset`` pipelines."""

from __future__ import annotations

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from .keep_confidence import decode_confidence

__all__ = ['ConfidenceFromLabels']


@TRANSFORMS.register_module()
class ConfidenceFromLabels(BaseTransform):
    """Unpack the labels packed by :class:`ConfidenceToLabels`.

    Put it after the last transform that drops or mixes boxes and before
    ``PackMultiRaterInputs``. Labels that were not packed pass unchanged.

    Required Keys:

    - gt_bboxes_labels (np.int64, packed)

    Modified Keys:

    - gt_bboxes_labels (class labels again)

    Added Keys:

    - gt_confidences (np.float32)
    - gt_agreement (np.int64)
    """

    def transform(self, results: dict) -> dict:
        """Unpack in place and return ``results``."""
        decode_confidence(results)
        return results
