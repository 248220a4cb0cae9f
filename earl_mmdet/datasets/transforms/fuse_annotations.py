"""Fuse the raters' boxes of an image in the data pipeline (cached per image per worker)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from earl_mmdet.core.aggregators import Aggregator, build_aggregator
from earl_mmdet.core.coco_io import load_multirater_coco
from earl_mmdet.core.types import FusionResult, ImageAnnotations

__all__ = ['FuseAnnotations']

#: Aggregators fitted on a whole annotation file, shared by every FuseAnnotations of the
#: process: (file, mtime, size, classes, spec) -> fitted aggregator. Fitting happens in the
#: main process when the pipeline is built, so forked dataloader workers inherit it.
_FITTED: dict[tuple, Aggregator] = {}

#: Keys set by geometric transforms: the raw ``instances`` are in original-image pixels, so
#: fusing after any of them would put the fused boxes in the wrong frame.
_GEOMETRIC_KEYS = ('scale_factor', 'homography_matrix', 'flip')


class _Fused(NamedTuple):
    """The fusion of one image, as cached (never handed out: results get copies)."""

    num_raw: int  # raw instances it was computed from (a changed count refuses the hit)
    boxes: np.ndarray  # float32 (M, 4) xyxy pixels
    boxes_tensor: torch.Tensor  # the same memory: HorizontalBoxes takes it 4 us faster
    labels: np.ndarray  # int64 (M,)
    confidences: np.ndarray  # float32 (M,)
    agreement: np.ndarray  # int64 (M,)
    num_raters: int
    instances: list[dict]  # the fused instances


def _needs_fit(agg: Aggregator) -> bool:
    return type(agg).fit is not Aggregator.fit


@TRANSFORMS.register_module()
class FuseAnnotations(BaseTransform):
    """Fuse all raters' boxes of an image into boxes with a per-box confidence c.

    Runs an aggregator of :mod:`earl_mmdet.core.aggregators` (``'na'``, ``'rater:<id>'``,
    ``'mv'``, ``'wbf'``, ``'em'``) on the raw per-rater instances that
    :class:`MultiAnnotatorCocoDataset` provides, or, with ``method='precomputed'``, takes a
    pre-fused file's boxes with their ``score`` as c. Place it right after the loading
    transforms, before any geometric transform; ``LoadAnnotations`` may come before or after
    it (the fused instances replace ``instances``, so a later ``LoadAnnotations`` loads the
    fused boxes; one right before it does nothing that lasts, see :meth:`supersedes`, and
    :class:`MultiAnnotatorCocoDataset` skips it).

    The fusion of an image is cached in the transform (so per dataloader worker), keyed by
    image id, image path and the method parameters; it runs once per image per worker, not
    every epoch (with ``persistent_workers=True``, as in mmdet's configs; otherwise once per
    image per epoch).

    Required Keys:

    - instances (list[dict]): per raw box ``bbox`` (xyxy pixels, original image),
      ``bbox_label``, ``annotator_id`` (``score`` for ``'precomputed'``)
    - annotators (list[str]): raters who read the image (not for ``'precomputed'``)
    - img_id, img_path (optional, cache key)
    - width, height (optional, used by aggregators that need the image size)

    Modified Keys:

    - instances: replaced by the fused instances (``bbox``, ``bbox_label``,
      ``ignore_flag``, ``confidence``, ``agreement``)
    - gt_bboxes (HorizontalBoxes[torch.float32] or np.float32 (M, 4) if a
      ``LoadAnnotations(box_type=None)`` ran before)
    - gt_bboxes_labels (np.int64 (M,))
    - gt_ignore_flags (bool (M,), all False)

    Added Keys:

    - rater_instances (list[dict]): the raw per-rater instances
    - gt_confidences (np.float32 (M,)): the confidence c of each fused box
    - gt_agreement (np.int64 (M,)): T, raters behind each fused box (-1 = unknown, for
      ``'precomputed'`` files without ``agreement``)
    - num_raters (int): R, raters who read the image

    Args:
        method (str | dict): aggregator name or config (``build_aggregator``), or
            ``'precomputed'``. Defaults to ``'wbf'``.
        score_mode (str | None): the aggregator's score mode (``'count'`` = T,
            ``'fraction'`` = T/R, ``'wbf'``, ``'posterior'`` for ``em``); None = the
            aggregator's default. Ignored by ``'precomputed'``. Defaults to ``'count'``.
        fit_ann_file (str | None): annotation file to fit a dataset-level aggregator
            (``em``) on, once per process (cached by file, modification time and
            parameters), when the transform is built - in the main process, so forked
            dataloader workers inherit the fit. Required for such aggregators. A path as
            given (not joined with the dataset's ``data_root``).
        fit_classes (Sequence[str] | None): class names in label order for the fit; must
            match the dataset's ``metainfo['classes']`` if that reorders the file's
            categories. Defaults to None (file order).
        fit_normalize_rater_ids (bool): load ``fit_ann_file`` with
            ``normalize_rater_ids=True`` (give the dataset's setting). Defaults to False.
        cache (bool): cache the fusion per image. Defaults to True.
        **params: aggregator parameters (e.g. ``iou_thr=0.4``).
    """

    def __init__(
        self,
        method: str | Mapping = 'wbf',
        score_mode: str | None = 'count',
        fit_ann_file: str | None = None,
        fit_classes: Sequence[str] | None = None,
        fit_normalize_rater_ids: bool = False,
        cache: bool = True,
        **params: Any,
    ) -> None:
        self.method = method
        self.score_mode = score_mode
        self.params = dict(params)
        self.fit_ann_file = fit_ann_file
        self.fit_classes = tuple(fit_classes) if fit_classes is not None else None
        self.fit_normalize_rater_ids = bool(fit_normalize_rater_ids)
        self.use_cache = cache
        self._cache: dict[tuple, _Fused] = {}
        self.num_fused = 0  # aggregator calls, for tests and benchmarks
        self.precomputed = method == 'precomputed'
        if self.precomputed:
            if params or fit_ann_file:
                raise ValueError(
                    "FuseAnnotations(method='precomputed') takes no aggregator parameters, "
                    f'got {sorted(params)}' + (' and fit_ann_file' if fit_ann_file else '')
                )
            self.aggregator = None
        else:
            kwargs = dict(params)
            if score_mode is not None:
                kwargs['score_mode'] = score_mode
            self.aggregator = build_aggregator(method, **kwargs)
            if _needs_fit(self.aggregator):
                if fit_ann_file is None:
                    raise ValueError(
                        f'FuseAnnotations(method={method!r}) learns from the whole dataset: '
                        'give fit_ann_file= (the training annotation file)'
                    )
                self.aggregator = self._fitted(self.aggregator)

    def _fitted(self, agg: Aggregator) -> Aggregator:
        path = os.path.abspath(os.fspath(self.fit_ann_file))
        if not os.path.isfile(path):
            raise ValueError(f'FuseAnnotations: fit_ann_file {self.fit_ann_file!r} not found')
        st = os.stat(path)
        key = (
            path,
            st.st_mtime_ns,
            st.st_size,
            self.fit_classes,
            self.fit_normalize_rater_ids,
            repr(agg.get_params()),
        )
        if key not in _FITTED:
            coco = load_multirater_coco(
                path, classes=self.fit_classes, normalize_rater_ids=self.fit_normalize_rater_ids
            )
            _FITTED[key] = agg.fit(coco.images)
        return _FITTED[key]

    # ------------------------------------------------------------------ fusion
    def _image(self, results: dict, instances: list[dict]) -> ImageAnnotations:
        img_id = results.get('img_id')
        if 'annotators' not in results:
            raise ValueError(
                f'FuseAnnotations: image id={img_id!r} ({results.get("img_path")}) has no '
                "'annotators' key: load it with MultiAnnotatorCocoDataset"
            )
        rater_ids = []
        for k, inst in enumerate(instances):
            if 'annotator_id' not in inst:
                raise ValueError(
                    f'FuseAnnotations: image id={img_id!r}, instance {k} has no '
                    "'annotator_id': load the data with MultiAnnotatorCocoDataset"
                )
            rater_ids.append(str(inst['annotator_id']))
        return ImageAnnotations(
            boxes=np.asarray([i['bbox'] for i in instances], np.float64).reshape(-1, 4),
            labels=np.asarray([i['bbox_label'] for i in instances], np.int64),
            rater_ids=np.asarray(rater_ids, dtype=str),
            raters=tuple(str(r) for r in results['annotators']),
            width=results.get('width'),
            height=results.get('height'),
            image_id=img_id,
        )

    def _precomputed(self, results: dict, instances: list[dict]) -> FusionResult:
        scores, agreement = [], []
        for k, inst in enumerate(instances):
            if 'score' not in inst:
                raise ValueError(
                    f"FuseAnnotations(method='precomputed'): image id={results.get('img_id')!r}"
                    f", instance {k} has no 'score': use a pre-fused file "
                    '(tools/fuse_annotations.py) or an aggregator'
                )
            scores.append(inst['score'])
            agreement.append(inst.get('agreement', -1))
        r = [i['num_raters'] for i in instances if 'num_raters' in i]
        num_raters = int(r[0]) if r else len(results.get('annotators', ()))
        n = len(instances)
        return FusionResult(
            boxes=np.asarray([i['bbox'] for i in instances], np.float32).reshape(-1, 4),
            labels=np.asarray([i['bbox_label'] for i in instances], np.int64),
            confidences=np.asarray(scores, np.float32),
            agreement=np.asarray(agreement, np.int64),
            num_raters=num_raters,
            members=[np.asarray([k]) for k in range(n)],
        )

    def _fuse(self, results: dict, instances: list[dict]) -> _Fused:
        for k, inst in enumerate(instances):
            if inst.get('ignore_flag', 0):
                raise ValueError(
                    f'FuseAnnotations: image id={results.get("img_id")!r}, instance {k} is '
                    'an ignore region (ignore_flag=1); fusion supports plain boxes only'
                )
        if self.precomputed:
            res = self._precomputed(results, instances)
        else:
            res = self.aggregator(self._image(results, instances))
        self.num_fused += 1
        # An own, writable C-order copy: torch.from_numpy below shares its memory.
        boxes = np.array(res.boxes, np.float32, order='C').reshape(-1, 4)
        labels = np.asarray(res.labels, np.int64).reshape(-1)
        conf = np.asarray(res.confidences, np.float32).reshape(-1)
        agree = np.asarray(res.agreement, np.int64).reshape(-1)
        if not (len(boxes) == len(labels) == len(conf) == len(agree)):
            raise ValueError(
                f'FuseAnnotations: aggregator {self.method!r} returned {len(boxes)} boxes, '
                f'{len(labels)} labels, {len(conf)} confidences, {len(agree)} agreements'
            )
        # One tolist() per array rather than per row: the same Python floats and ints.
        fused = [
            {'bbox': b, 'bbox_label': lab, 'ignore_flag': 0, 'confidence': c, 'agreement': t}
            for b, lab, c, t in zip(boxes.tolist(), labels.tolist(), conf.tolist(), agree.tolist())
        ]
        return _Fused(
            len(instances),
            boxes,
            torch.from_numpy(boxes),
            labels,
            conf,
            agree,
            int(res.num_raters),
            fused,
        )

    def supersedes(self, transform: Any) -> bool:
        """Whether ``transform``, run right before this one, has no effect on the output.

        True for a plain ``LoadAnnotations`` that loads boxes (as ``HorizontalBoxes``) and/or
        labels only: everything it sets (``gt_bboxes``, ``gt_bboxes_labels``,
        ``gt_ignore_flags``) is replaced here by the fused ground truth, in the same types.
        :class:`MultiAnnotatorCocoDataset` drops such a transform from its pipeline.

        Args:
            transform: a pipeline transform.

        Returns:
            bool: True if this transform overwrites all that ``transform`` sets.
        """
        if type(transform) is not LoadAnnotations:  # a subclass may do more
            return False
        extras = ('with_mask', 'with_seg', 'with_keypoints')
        if any(getattr(transform, k, False) for k in extras):
            return False
        # box_type=None leaves gt_bboxes as a numpy array, which this transform then keeps.
        return not transform.with_bbox or transform.box_type in ('hbox', HorizontalBoxes)

    def transform(self, results: dict) -> dict:
        """Fuse the raw instances of ``results`` (see the class docstring for the keys).

        Args:
            results (dict): result dict of the pipeline.

        Returns:
            dict: ``results`` with the fused ground truth.
        """
        if 'scale_factor' in results or 'homography_matrix' in results or 'flip' in results:
            done = [k for k in _GEOMETRIC_KEYS if k in results]
            raise ValueError(
                f'FuseAnnotations must run before geometric transforms (found {done} in the '
                'results): put it right after LoadImageFromFile / LoadAnnotations'
            )
        if 'rater_instances' in results:
            raise ValueError('FuseAnnotations: the instances of this image are already fused')
        instances = results.get('instances', [])
        # The cache belongs to this transform, so its parameters need not be in the key.
        key = (results.get('img_id'), results.get('img_path'))
        hit = self._cache.get(key)
        if hit is None or hit.num_raw != len(instances):
            hit = self._fuse(results, instances)
            if self.use_cache:
                self._cache[key] = hit
        # Copies, never the cached arrays: later transforms modify boxes in place.
        # HorizontalBoxes clones its input by default.
        if isinstance(results.get('gt_bboxes'), np.ndarray):
            results['gt_bboxes'] = hit.boxes.copy()
        else:
            results['gt_bboxes'] = HorizontalBoxes(hit.boxes_tensor)
        results['gt_bboxes_labels'] = hit.labels.copy()
        results['gt_ignore_flags'] = np.zeros(len(hit.labels), dtype=bool)
        results['gt_confidences'] = hit.confidences.copy()
        results['gt_agreement'] = hit.agreement.copy()
        results['num_raters'] = hit.num_raters
        results['rater_instances'] = instances
        # A new list of the cached dicts: no mmdet transform writes into instance dicts.
        results['instances'] = list(hit.instances)
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(method={self.method!r}, score_mode={self.score_mode!r}, '
            f'fit_ann_file={self.fit_ann_file!r}, params={self.params!r})'
        )
