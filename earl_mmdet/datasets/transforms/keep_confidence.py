"""Keep each box's confidence c and agreement T aligned through transforms that drop boxes.

mmdet's ``FilterAnnotations``, ``RandomCrop``, ``MinIoURandomCrop``, ``RandomShift``,
``Mosaic``, ``MixUp``, ``RandomAffine`` and ``CopyPaste`` re-index only the keys they know
(``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``, ``gt_masks``). None of them reads
the *values* of ``gt_bboxes_labels`` (checked in mmdet 3.3.0: they index it with a mask or
an index array, or concatenate it with the labels of other images). So the confidence c and
the agreement T of each box can ride inside its int64 label, bit-exact:

====== ============================================================================
bits   content
====== ============================================================================
0-23   the class label (0 <= label < 2**24)
24-30  agreement T + 1 (T in [-1, 126]; -1 = unknown)
31     marker: 1 = this label carries a packed confidence
32-63  the IEEE-754 float32 bits of the confidence c
====== ============================================================================

:class:`KeepConfidence` wraps one transform (or a list): it packs ``results`` and every
``results['mix_results']`` entry, runs the transform, and unpacks. For a
``MultiImageMixDataset`` whose ``skip_type_keys`` must see the real transform names (YOLOX's
``YOLOXModeSwitchHook`` switches off ``'Mosaic'``, ``'RandomAffine'``, ``'MixUp'``), use
the pair :class:`ConfidenceToLabels` (last step of the inner dataset's pipeline) and
:class:`ConfidenceFromLabels` (after the mixing transforms) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmdet.registry import TRANSFORMS

from ..multi_rater_coco import AGREEMENT_KEY, CONFIDENCE_KEY, LABEL_KEY

__all__ = [
    'ConfidenceFromLabels',
    'ConfidenceToLabels',
    'KeepConfidence',
    'decode_confidence',
    'encode_confidence',
    'is_encoded',
]

LABEL_BITS = 24
LABEL_MASK = (1 << LABEL_BITS) - 1
_AGREEMENT_SHIFT = 24
_AGREEMENT_MASK = 0x7F
_MARKER = np.uint64(1 << 31)
MAX_AGREEMENT = _AGREEMENT_MASK - 1


def is_encoded(labels: np.ndarray) -> np.ndarray:
    """Per label: whether it carries a packed confidence (marker bit set). (N,) bool."""
    u = np.ascontiguousarray(np.asarray(labels, np.int64)).view(np.uint64)
    return (u & _MARKER) != 0


def _where(results: dict) -> str:
    return f'image id={results.get("img_id")!r} ({results.get("img_path")})'


def encode_confidence(results: dict) -> None:
    """Pack ``gt_confidence`` (and ``gt_agreement``) of ``results`` into its labels.

    In place: ``gt_bboxes_labels`` becomes the packed int64 array, ``gt_confidence`` and
    ``gt_agreement`` are removed (so no stale copy can fall out of step).

    Args:
        results (dict): needs ``gt_bboxes_labels`` (int (N,)) and ``gt_confidence`` ((N,));
            ``gt_agreement`` ((N,) int) is optional (stored as -1 = unknown when absent).

    Raises:
        ValueError: lengths differ, labels already packed or out of [0, 2**24), or an
            agreement outside [-1, 126].
    """
    if LABEL_KEY not in results:
        raise ValueError(f'{_where(results)}: {CONFIDENCE_KEY} without {LABEL_KEY} to carry them')
    labels = np.asarray(results[LABEL_KEY], np.int64).reshape(-1)
    confidence = np.asarray(results[CONFIDENCE_KEY], np.float32).reshape(-1)
    n = len(labels)
    agreement = results.get(AGREEMENT_KEY)
    if agreement is None:
        agreement = np.full(n, -1, np.int64)
    agreement = np.asarray(agreement, np.int64).reshape(-1)
    if len(confidence) != n or len(agreement) != n:
        raise ValueError(
            f'{_where(results)}: {n} labels but {len(confidence)} {CONFIDENCE_KEY} and '
            f'{len(agreement)} {AGREEMENT_KEY}: a transform before this point dropped or reordered '
            'boxes without KeepConfidence'
        )
    # Negative labels first: -1 has every bit set, the marker included.
    if n and labels.min() >= 0 and is_encoded(labels).any():
        raise ValueError(f'{_where(results)}: {LABEL_KEY} already carry packed confidence values')
    if n and (labels.min() < 0 or labels.max() > LABEL_MASK):
        raise ValueError(
            f'{_where(results)}: labels must be in [0, {LABEL_MASK}] to carry a confidence, got '
            f'[{labels.min()}, {labels.max()}]'
        )
    if n and (agreement.min() < -1 or agreement.max() > MAX_AGREEMENT):
        raise ValueError(
            f'{_where(results)}: {AGREEMENT_KEY} must be in [-1, {MAX_AGREEMENT}], got '
            f'[{agreement.min()}, {agreement.max()}]'
        )
    packed = (
        (confidence.view(np.uint32).astype(np.uint64) << np.uint64(32))
        | _MARKER
        | ((agreement + 1).astype(np.uint64) << np.uint64(_AGREEMENT_SHIFT))
        | labels.astype(np.uint64)
    )
    results[LABEL_KEY] = packed.view(np.int64)
    results.pop(CONFIDENCE_KEY, None)
    results.pop(AGREEMENT_KEY, None)


def decode_confidence(results: dict) -> bool:
    """Unpack labels packed by :func:`encode_confidence` (in place).

    Sets ``gt_bboxes_labels`` (int64), ``gt_confidence`` (float32) and ``gt_agreement``
    (int64). An empty label array counts as packed (all three become empty).

    Args:
        results (dict): result dict whose ``gt_bboxes_labels`` may be packed.

    Returns:
        bool: True if the labels were packed (and are now decoded); False if no label was
        packed (``results`` untouched).

    Raises:
        ValueError: if only some labels are packed (boxes from a results dict that was not
            packed were mixed in).
    """
    if LABEL_KEY not in results:
        return False
    labels = np.ascontiguousarray(np.asarray(results[LABEL_KEY], np.int64).reshape(-1))
    flags = is_encoded(labels)
    if len(labels) and not flags.any():
        return False
    if not flags.all():
        raise ValueError(
            f'{_where(results)}: {int((~flags).sum())} of {len(labels)} boxes carry no '
            'confidence: an image without gt_confidence was mixed with images that have them'
        )
    u = labels.view(np.uint64)
    results[LABEL_KEY] = (u & np.uint64(LABEL_MASK)).astype(np.int64)
    results[AGREEMENT_KEY] = (
        (u >> np.uint64(_AGREEMENT_SHIFT)) & np.uint64(_AGREEMENT_MASK)
    ).astype(np.int64) - 1
    results[CONFIDENCE_KEY] = (u >> np.uint64(32)).astype(np.uint32).view(np.float32)
    return True


TransformSpec = Union[dict, Sequence[dict], Callable]


@TRANSFORMS.register_module()
class KeepConfidence(BaseTransform):
    """Run a transform that drops/reorders boxes and keep ``gt_confidence`` aligned.

    Packs each box's confidence and agreement into its label (module docstring), for
    ``results`` and every entry of ``results['mix_results']``, runs the wrapped
    transform(s), then unpacks. Attributes of the wrapped transform are forwarded, so
    ``MultiImageMixDataset`` finds ``get_indexes`` of a wrapped ``Mosaic``/``MixUp``/
    ``CopyPaste``. Results without ``gt_confidence`` pass through unchanged.

    Note:
        ``MultiImageMixDataset(skip_type_keys=...)`` matches the config ``type``, here
        ``'KeepConfidence'``: to switch a mixing transform off by name (YOLOX's last
        epochs), use :class:`ConfidenceToLabels` / :class:`ConfidenceFromLabels`.

    Required Keys:

    - gt_bboxes_labels (np.int64)
    - gt_confidence (np.float32) (optional)
    - gt_agreement (np.int64) (optional)
    - mix_results (list[dict]) (optional)

    Modified Keys:

    - those of the wrapped transform
    - gt_confidence, gt_agreement (re-indexed with the boxes)

    Args:
        transform (dict | list[dict] | Callable): the transform config (or a list of
            configs, run in order), e.g. ``dict(type='Mosaic', img_scale=(640, 640))``.
    """

    def __init__(self, transform: TransformSpec) -> None:
        if isinstance(transform, dict):
            inner = TRANSFORMS.build(transform)
        elif isinstance(transform, Sequence) and not isinstance(transform, str):
            inner = Compose(list(transform))
        elif callable(transform):
            inner = transform
        else:
            raise TypeError(
                'KeepConfidence(transform=...) takes a transform config dict, a list of them or '
                f'a callable, got {type(transform).__name__}'
            )
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes KeepConfidence lacks (e.g. get_indexes). Dunder names
        # and an unset `inner` (during unpickling) must fail normally.
        if name.startswith('__') or name == 'inner':
            raise AttributeError(name)
        inner = self.__dict__.get('inner')
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def transform(self, results: dict) -> dict | None:
        """Pack, run the wrapped transform, unpack.

        Args:
            results (dict): result dict.

        Returns:
            dict | None: the wrapped transform's output (None if it returned None).
        """
        dicts = [results, *results.get('mix_results', [])]
        has = [CONFIDENCE_KEY in d for d in dicts]
        if not any(has):
            return self.inner(results)
        if not all(has):
            missing = [i - 1 for i, h in enumerate(has) if not h]
            raise ValueError(
                f'KeepConfidence: {_where(results)}: {CONFIDENCE_KEY} present in results but not '
                f'in mix_results {missing} (is the inner dataset a MultiRaterCocoDataset?)'
            )
        for d in dicts:
            encode_confidence(d)
        out = self.inner(results)
        if out is None:
            return None
        if not decode_confidence(out):
            raise ValueError(
                f'KeepConfidence: {type(self.inner).__name__} returned labels without the '
                'packed confidence: it rebuilt the label array, which this mechanism cannot track'
            )
        for d in out.get('mix_results', []):
            decode_confidence(d)
        return out

    def __repr__(self) -> str:
        return f'{type(self).__name__}(transform={self.inner!r})'


@TRANSFORMS.register_module()
class ConfidenceToLabels(BaseTransform):
    """Pack ``gt_confidence`` / ``gt_agreement`` into ``gt_bboxes_labels``.

    The first half of the pair for ``MultiImageMixDataset``: put it last in the pipeline of
    the inner dataset, and :class:`ConfidenceFromLabels` after the mixing transforms of the
    wrapper's pipeline. Between the two the labels carry the confidence (module
    docstring), so ``Mosaic``, ``MixUp``, ``RandomAffine``, ``FilterAnnotations``... keep it
    aligned and keep their own type names for ``skip_type_keys``. Results without
    ``gt_confidence`` pass unchanged.

    Required Keys:

    - gt_bboxes_labels (np.int64)
    - gt_confidence (np.float32) (optional)
    - gt_agreement (np.int64) (optional)

    Modified Keys:

    - gt_bboxes_labels (packed int64; not usable as class labels until decoded)
    - gt_confidence, gt_agreement (removed)
    """

    def transform(self, results: dict) -> dict:
        """Pack in place and return ``results``."""
        if CONFIDENCE_KEY in results:
            encode_confidence(results)
        return results


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

    - gt_confidence (np.float32)
    - gt_agreement (np.int64)
    """

    def transform(self, results: dict) -> dict:
        """Unpack in place and return ``results``."""
        decode_confidence(results)
        return results
