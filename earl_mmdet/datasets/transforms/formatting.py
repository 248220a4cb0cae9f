"""PackDetInputs that also packs the per-box confidence (and agreement)."""

from __future__ import annotations

import numpy as np
import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from .keep_confidence import AGREE_KEY, CONF_KEY, LABEL_KEY, LABEL_MASK, is_encoded

__all__ = ['PackMultiRaterInputs']


@TRANSFORMS.register_module()
class PackMultiRaterInputs(PackDetInputs):
    """Pack detection inputs plus the per-box confidence c of fused multi-rater boxes.

    ``gt_confidences`` (np.float32 (N,)) becomes ``data_sample.gt_instances.confidences``
    (torch.float32 (N,)), the field EARL heads read (weight 1 when absent);
    ``gt_agreement`` becomes ``gt_instances.agreement`` (int64) when
    ``pack_agreement=True`` (off by default: heads need only c, and each packed key costs
    time per image). Like the other per-box keys they are split by
    ``gt_ignore_flags`` into ``gt_instances`` / ``ignored_instances`` (the latter gets them
    only when some box is ignored).

    Before packing, it checks that every per-box key still has one entry per box: a
    transform that dropped or reordered boxes without :class:`KeepConfidence` is an error
    here, not a silent misalignment.

    Required Keys:

    - those of :class:`mmdet.datasets.transforms.PackDetInputs`
    - gt_confidences (np.float32) (optional)
    - gt_agreement (np.int64) (optional)

    Added Keys:

    - data_samples.gt_instances.confidences (torch.float32)
    - data_samples.gt_instances.agreement (torch.int64, if ``pack_agreement``)

    Args:
        pack_agreement (bool): also pack ``gt_agreement``. Defaults to False.
        **kwargs: :class:`PackDetInputs` arguments (``meta_keys``).
    """

    mapping_table = {
        **PackDetInputs.mapping_table,
        CONF_KEY: 'confidences',
        AGREE_KEY: 'agreement',
    }

    def __init__(self, pack_agreement: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pack_agreement = pack_agreement
        if not pack_agreement:
            self.mapping_table = {k: v for k, v in self.mapping_table.items() if k != AGREE_KEY}
        self._extra_keys = tuple(k for k in (CONF_KEY, AGREE_KEY) if k in self.mapping_table)

    def _check(self, results: dict) -> None:
        conf = results.get(CONF_KEY)
        labels = results.get(LABEL_KEY)
        # Packed labels come without gt_confidences (ConfidenceToLabels removes them), so
        # the (numpy-reduction) test runs only then; packed labels are >= 2**31 or < 0.
        if (
            conf is None
            and labels is not None
            and len(labels)
            and (labels.max() > LABEL_MASK or labels.min() < 0)
            and is_encoded(labels).any()
        ):
            raise ValueError(
                f'PackMultiRaterInputs: {self._where(results)}: {LABEL_KEY} still carry packed '
                'confidences: add ConfidenceFromLabels after the mixing transforms'
            )
        boxes = results.get('gt_bboxes')
        if boxes is None:
            return
        n = len(boxes)
        for key in (CONF_KEY, AGREE_KEY, LABEL_KEY, 'gt_ignore_flags'):
            value = results.get(key)
            if value is not None and len(value) != n:
                raise ValueError(
                    f'PackMultiRaterInputs: {self._where(results)}: {n} gt_bboxes but '
                    f'{len(value)} {key}: a transform dropped or reordered boxes without keeping '
                    'the confidences aligned; wrap it: dict(type="KeepConfidence", '
                    'transform=dict(type=...))'
                )
        if conf is not None and conf.dtype != np.float32:
            results[CONF_KEY] = conf.astype(np.float32)

    @staticmethod
    def _where(results: dict) -> str:
        return f'image id={results.get("img_id")!r} ({results.get("img_path")})'

    def transform(self, results: dict) -> dict:
        """Check alignment, then pack like :class:`PackDetInputs`.

        Args:
            results (dict): result dict of the pipeline.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        self._check(results)
        # The parent packs the stock keys; the per-box keys added here are set directly:
        # InstanceData.__setattr__ re-checks every field's length on each assignment, which
        # costs more per key than the rest of packing, and _check has verified the lengths.
        extra = {k: results.pop(k) for k in self._extra_keys if k in results}
        if not extra:
            return super().transform(results)
        try:
            packed = super().transform(results)
        finally:
            results.update(extra)  # leave the input dict as it came
        sample = packed['data_samples']
        flags = results.get('gt_ignore_flags')
        any_ignored = flags is not None and np.count_nonzero(flags) > 0  # 2x flags.any()
        for key, value in extra.items():
            name = self.mapping_table[key]
            if any_ignored:
                sample.gt_instances.set_field(torch.from_numpy(value[flags == 0]), name)
                sample.ignored_instances.set_field(torch.from_numpy(value[flags == 1]), name)
            else:
                # Usual case (no ignore region): no indexing, and ignored_instances (empty)
                # gets no confidences field - setting fields costs ~10 us each per image,
                # and nothing reads confidences of ignore regions.
                sample.gt_instances.set_field(torch.from_numpy(value), name)
        return packed

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(meta_keys={self.meta_keys}, '
            f'pack_agreement={self.pack_agreement})'
        )
