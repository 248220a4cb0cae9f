"""Multi-rater COCO dataset that fuses the raters' boxes once, and the packer of c.

The data path of one annotation, in this file:

1. :class:`MultiRaterCocoDataset` reads the multi-rater COCO file (``docs/data_format.md``)
   and fuses the raters' boxes of every image once, with the ``fuse_all`` of an aggregator
   (:func:`earl_core.fusion.base.build_aggregator`, ``fusion=dict(method='wbf', ...)``).
   Each data info holds the fused ``instances`` plus ``gt_confidence`` / ``gt_agreement``
   arrays in the same order.
2. mmdet's stock ``LoadAnnotations`` fills ``gt_bboxes`` / ``gt_bboxes_labels`` from
   ``instances`` in order, so ``gt_confidence`` stays aligned with them; order-keeping
   transforms (``Resize``, ``RandomFlip``, ``Pad``) keep it aligned.
3. :class:`PackMultiRaterInputs` checks the alignment and packs c into
   ``data_sample.gt_instances.confidence``, which the EARL heads turn into loss weights.

Transforms that drop or reorder boxes (``FilterAnnotations``, ``Mosaic``...) need
:mod:`earl_mmdet.datasets.transforms.keep_confidence`.
"""

from __future__ import annotations

import colorsys
import logging
import os.path as osp
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmdet.datasets import CocoDataset
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import DATASETS, TRANSFORMS
from mmengine.dataset import BaseDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from earl_core.deprecation import FUSION_METHOD_ALIASES, fusion_method, renamed_attributes
from earl_core.fusion.base import Aggregator, build_aggregator
from earl_core.io.coco import Detections, MultiRaterCoco, load_multirater_coco

__all__ = [
    'AGREEMENT_KEY',
    'CONFIDENCE_KEY',
    'LABEL_KEY',
    'MultiRaterCocoDataset',
    'PackMultiRaterInputs',
]

#: Pipeline results keys of the per-box confidence c, agreement T and class label.
CONFIDENCE_KEY = 'gt_confidence'
AGREEMENT_KEY = 'gt_agreement'
LABEL_KEY = 'gt_bboxes_labels'
#: ``CONF_KEY`` and ``AGREE_KEY``: the names until 0.2 (warned; removed in 0.3).
__getattr__ = renamed_attributes(
    __name__, globals(), CONF_KEY='CONFIDENCE_KEY', AGREE_KEY='AGREEMENT_KEY'
)

MIGRATION = 'docs/migration.md'


def _palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours, one per class (golden-ratio hue steps, deterministic)."""
    out = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _is_step(step: Any, name: str) -> bool:
    """Whether pipeline entry ``step`` is a config dict of transform ``name`` (any scope)."""
    return isinstance(step, Mapping) and str(step.get('type', '')).split('.')[-1] == name


def lift_fuse_step(pipeline: Sequence, fusion: Any, where: str) -> tuple[list, Any]:
    """Take a deprecated ``FuseAnnotations`` step out of ``pipeline`` into ``fusion``.

    The step is replaced by a ``LoadAnnotations`` when none comes before it (the old
    transform loaded the boxes itself), else removed. Warns with a DeprecationWarning.

    Args:
        pipeline (Sequence): the dataset's pipeline (config dicts or built transforms).
        fusion: the dataset's ``fusion`` argument (must be None when a step is lifted).
        where (str): the annotation file, for messages.

    Returns:
        tuple[list, Any]: the pipeline without the step, and the fusion to use.
    """
    steps = list(pipeline)
    found = [i for i, s in enumerate(steps) if _is_step(s, 'FuseAnnotations')]
    if not found:
        return steps, fusion
    if len(found) > 1 or fusion is not None:
        raise ValueError(
            f'{where}: the pipeline has {len(found)} FuseAnnotations step(s)'
            + (' and the dataset has fusion=' if fusion is not None else '')
            + f': fusion is a dataset step, give it once as fusion=dict(...) (see {MIGRATION})'
        )
    from .transforms.fuse_annotations import fusion_from_fuse_step  # a cycle at import time

    i = found[0]
    fusion = fusion_from_fuse_step(steps[i])
    if any(_is_step(s, 'LoadAnnotations') for s in steps[:i]):
        del steps[i]
    else:
        steps[i] = dict(type='LoadAnnotations', with_bbox=True)
    message = (
        f'{where}: the pipeline step FuseAnnotations is deprecated: fusion is a dataset step. '
        f'Use MultiRaterCocoDataset(fusion={fusion!r}) and a plain LoadAnnotations '
        f'(see {MIGRATION}).'
    )
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    # Python hides DeprecationWarnings raised outside __main__: say it in the log too.
    print_log(message, logger='current', level=logging.WARNING)
    return steps, fusion


def _instances(res: Detections) -> list[dict]:
    """The instance dicts of one image's fused boxes: float32 boxes and confidences as
    Python floats, labels and agreements as ints (``res`` holds them validated)."""
    # One tolist() per field rather than per box: the same Python floats and ints.
    boxes = res.boxes.astype(np.float32, copy=False).tolist()
    per_box = zip(boxes, res.labels.tolist(), res.confidence.tolist(), res.agreement.tolist())
    return [
        {'bbox': b, 'bbox_label': lab, 'ignore_flag': 0, 'confidence': c, 'agreement': t}
        for b, lab, c, t in per_box
    ]


def _check_fusion(fusion: Any) -> dict | None:
    if fusion is None:
        return None
    if isinstance(fusion, str):
        fusion = {'method': fusion}
    if not isinstance(fusion, Mapping) or 'method' not in fusion:
        raise ValueError(
            "fusion must be None, a method name or a dict with 'method' (e.g. "
            f"dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')), got {fusion!r}"
        )
    m = fusion['method']  # an old name warns; the usual path does not call into deprecation
    return {**fusion, 'method': fusion_method(m) if m in tuple(FUSION_METHOD_ALIASES) else m}


@DATASETS.register_module()
class MultiRaterCocoDataset(CocoDataset):
    """Multi-rater COCO dataset whose raters' boxes are fused once, when it loads.

    Reads the multi-rater COCO format (``docs/data_format.md``) through
    :func:`earl_core.io.coco.load_multirater_coco`, so a bad file fails with a
    ValueError naming the file, the record and the field, and safe repairs (box clipped to
    its image, a rater who drew a box added to the image's raters) are counted and logged.
    Unlike :class:`CocoDataset`, it never drops a box silently.

    Then it fuses each image's boxes with ``fusion``, an aggregator of
    :mod:`earl_core.fusion` (its ``fuse_all``: an aggregator that learns from the data,
    ``'em'``, ``'presence_em'``, ``'bayes'``, is fitted first on all images of the
    annotation file). So the pipeline is mmdet's ordinary one::

        LoadImageFromFile, LoadAnnotations, Resize, RandomFlip, ..., PackMultiRaterInputs

    Each data info gets, besides the stock keys (``img_path``, ``img_id``, ...):

    - ``instances`` (list[dict]): the fused boxes: ``bbox`` (xyxy pixels), ``bbox_label``,
      ``ignore_flag`` (0), ``confidence`` (c), ``agreement`` (T; -1 = unknown).
    - ``gt_confidence`` (np.float32 (M,)) / ``gt_agreement`` (np.int64 (M,)): c and T of
      ``instances``, in their order (added by :meth:`get_data_info`, so every pipeline
      starts with them). ``LoadAnnotations`` fills ``gt_bboxes`` from ``instances`` in
      order, so these stay aligned with the boxes.
    - ``raters`` (list[str]): who read the image; ``num_raters`` (int): R of the fusion.
    - ``rater_instances`` (list[dict]): the raw boxes (``bbox``, ``bbox_label``,
      ``ignore_flag``, ``rater_id``; ``score`` / ``agreement`` / ``num_raters`` when the
      file is pre-fused), for tools.

    Negative images: an image read by raters who drew nothing (or whose boxes the fusion
    dropped) is a true negative and is kept even with ``filter_cfg=dict(filter_empty_gt=
    True)``; that flag only drops images nobody read. Pass ``filter_cfg=dict(
    filter_empty_gt=True, keep_negatives=False)`` for the stock behaviour.

    A pipeline still holding the removed ``FuseAnnotations`` step is converted (its
    parameters become ``fusion``) with a DeprecationWarning, see ``docs/migration.md``.

    Args:
        fusion (str | dict | None): ``None`` (default): every rater's box is a ground-truth
            box with c = 1 (the ``'na'`` method). A dict ``dict(method=..., **params)``:
            ``method`` is ``'na'``, ``'rater:<id>'``, ``'mv'``, ``'wbf'``, ``'em'``,
            ``'presence_em'`` (or an aggregator config dict / object), ``params`` its
            parameters, among them ``confidence`` (``'agreement'`` = T,
            ``'agreement_ratio'`` = T/R, ``'fused_score'``, ``'posterior'``,
            ``'presence'``; the aggregator's default when absent).
            ``method='prefused'`` (0.1: ``'precomputed'``): a pre-fused file's boxes, c =
            ``score`` (``tools/fuse_annotations.py``). A string is ``dict(method=string)``.
        repair (bool): apply and count the safe repairs of ``load_multirater_coco``; if
            False each of them is an error. Defaults to True.
        normalize_rater_ids (bool): merge rater ids that differ only by case,
            surrounding whitespace, invisible format characters or Unicode form (counted
            as the repair ``rater_id_normalized``); False (default): such ids are an error
            naming them.
        merge_duplicate_images (bool): merge image records that name the same
            ``file_name`` (per-rater exports: one record per rater) into one image read by
            all their raters (counted as the repair ``image_merged``); False (default):
            such records are an error naming them.
        check_files (bool): check at load time that every image file exists (local files
            only) and raise a ValueError listing the missing ones. Defaults to False.
        **kwargs: :class:`mmdet.datasets.CocoDataset` arguments. If ``metainfo`` gives no
            ``classes``, the classes are the file's categories in file order.

    Attributes:
        aggregator (Aggregator | None): the fitted aggregator after loading; None for prefused.
    """

    METAINFO: dict = {'classes': (), 'palette': []}

    def __init__(
        self,
        *args: Any,
        fusion: str | Mapping | None = None,
        repair: bool = True,
        normalize_rater_ids: bool = False,
        merge_duplicate_images: bool = False,
        check_files: bool = False,
        **kwargs: Any,
    ):
        where = f'{type(self).__name__}({kwargs.get("ann_file", "")!r})'
        if kwargs.get('pipeline'):
            kwargs['pipeline'], fusion = lift_fuse_step(kwargs['pipeline'], fusion, where)
        self.fusion = _check_fusion(fusion)
        self.repair = repair
        self.normalize_rater_ids = normalize_rater_ids
        self.merge_duplicate_images = merge_duplicate_images
        self.check_files = check_files
        self.repairs: dict[str, int] = {}
        self.aggregator: Aggregator | None = None
        super().__init__(*args, **kwargs)

    def _load_coco(self) -> MultiRaterCoco:
        classes = self._metainfo.get('classes') or None
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            coco = load_multirater_coco(
                local_path,
                repair=self.repair,
                classes=classes,
                normalize_rater_ids=self.normalize_rater_ids,
                merge_duplicate_images=self.merge_duplicate_images,
            )
        # Name the configured file in messages rather than a temporary local copy.
        coco.source = str(self.ann_file)
        return coco

    # ------------------------------------------------------------------ fusion
    def _build_aggregator(self) -> Aggregator | None:
        spec = dict(self.fusion or {'method': 'na', 'confidence': 'agreement'})
        method = spec.pop('method')
        if method == 'prefused':
            if spec:
                raise ValueError(
                    f"{self.ann_file}: fusion method 'prefused' takes no parameters, got "
                    f'{sorted(spec)}'
                )
            return None
        return build_aggregator(method, **spec)

    def _prefused(self, coco: MultiRaterCoco) -> list[Detections]:
        if not coco.prefused:
            raise ValueError(
                f"{self.ann_file}: fusion method 'prefused' needs a pre-fused file (field "
                "'score' on every annotation, tools/fuse_annotations.py); this file has none"
            )
        out = []
        for image, anns in zip(coco.images, coco.annotations):
            r = [int(a['num_raters']) for a in anns if 'num_raters' in a]
            out.append(
                Detections.fused(
                    boxes=image.boxes.astype(np.float32),
                    labels=image.labels,
                    confidence=np.asarray([a['score'] for a in anns], np.float32),
                    agreement=np.asarray([a.get('agreement', -1) for a in anns], np.int64),
                    num_raters=r[0] if r else len(image.raters),
                    image=image,
                )
            )
        return out

    def _fuse(self, coco: MultiRaterCoco) -> list[Detections]:
        """Per image its fused boxes: the aggregator's (fitted on these images), or the file's."""
        agg = self.aggregator = self._build_aggregator()
        return self._prefused(coco) if agg is None else agg.fuse_all(coco.images)

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> list[dict]:
        """Load, validate and fuse the annotation file; one data info per image (file order).

        Returns:
            list[dict]: data infos with the fused ``instances``, ``raters``, ``num_raters``
            and ``rater_instances``.
        """
        coco = self._load_coco()
        if not self._metainfo.get('classes'):
            self._metainfo['classes'] = coco.classes
        if len(self._metainfo.get('palette') or []) < len(self._metainfo['classes']):
            self._metainfo['palette'] = _palette(len(self._metainfo['classes']))
        # Attributes CocoDataset users rely on (evaluation helpers, samplers).
        self.cat_ids = coco.cat_ids
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = {cid: [] for cid in self.cat_ids}
        self.repairs = dict(coco.repairs)
        if coco.repairs:
            print_log(
                f'{self.ann_file}: {sum(coco.repairs.values())} repair(s) applied while '
                f'loading: {dict(sorted(coco.repairs.items()))} (see docs/data_format.md)',
                logger='current',
                level=logging.WARNING,
            )
        fused = self._fuse(coco)
        data_list = []
        for info, anns, res in zip(coco.image_infos, coco.annotations, fused):
            raw_img_info = dict(info, img_id=info['id'])
            # The parent fills img_path, seg_map_path, sizes and the text keys; its box
            # parser (which drops small boxes) gets no annotation.
            data_info = super().parse_data_info({'raw_img_info': raw_img_info, 'raw_ann_info': []})
            data_info['instances'] = _instances(res)
            data_info['raters'] = list(info['annotators'])
            data_info['num_raters'] = int(res.num_raters)
            data_info['rater_instances'] = [self._rater_instance(a) for a in anns]
            for inst in data_info['instances']:  # one entry per box, as pycocotools' catToImgs
                self.cat_img_map[self.cat_ids[inst['bbox_label']]].append(info['id'])
            data_list.append(data_info)
        num_raw = sum(len(a) for a in coco.annotations)
        num_fused = sum(len(d['instances']) for d in data_list)
        print_log(
            f'{self.ann_file}: fusion {self.fusion!r} of {len(data_list)} images: '
            f'{num_raw} rater boxes -> {num_fused} boxes',
            logger='current',
            level=logging.INFO,
        )
        if self.check_files:
            self._check_files(data_list)
        return data_list

    def get_data_info(self, idx: int) -> dict:
        """The data info of image ``idx``, with ``gt_confidence`` / ``gt_agreement`` arrays.

        The arrays are built here from ``instances`` (a few us) rather than stored in the data
        list: unpickling two small arrays per image would cost more.

        Args:
            idx (int): image index.

        Returns:
            dict: a copy of the data info plus ``gt_confidence`` (np.float32 (M,)) and
            ``gt_agreement`` (np.int64 (M,)), in the order of ``instances``.
        """
        info = super().get_data_info(idx)
        instances = info['instances']
        info[CONFIDENCE_KEY] = np.array([i['confidence'] for i in instances], np.float32)
        info[AGREEMENT_KEY] = np.array([i['agreement'] for i in instances], np.int64)
        return info

    @staticmethod
    def _rater_instance(ann: dict) -> dict:
        x, y, w, h = ann['bbox']
        inst = {
            'bbox': [x, y, x + w, y + h],
            'bbox_label': ann['label'],
            'ignore_flag': 0,
            'rater_id': ann['annotator_id'],
        }
        for key in ('score', 'agreement', 'num_raters'):
            if key in ann:
                inst[key] = ann[key]
        return inst

    def _check_files(self, data_list: list[dict]) -> None:
        missing = [(d['img_id'], d['img_path']) for d in data_list if not osp.isfile(d['img_path'])]
        if missing:
            shown = ', '.join(f'image id={i!r}: {p}' for i, p in missing[:5])
            more = f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''
            raise ValueError(
                f'{self.ann_file}: {len(missing)} image file(s) not found, field '
                f"'file_name' under data_prefix {self.data_prefix.get('img')!r}: {shown}{more}"
            )

    # ------------------------------------------------------------------ refitting
    def rater_boxes(self) -> list[Detections]:
        """Every image's raters' boxes, in dataset order: what a refit of the fusion reads.

        Returns:
            list[Detections]: per image (after filtering) its ``rater_instances`` (xyxy
            pixels, labels, rater ids), the raters who read it, its size and its id.
        """
        out = []
        for idx in range(len(self)):
            info = BaseDataset.get_data_info(self, idx)
            anns = info['rater_instances']
            out.append(
                Detections.from_raters(
                    np.asarray([a['bbox'] for a in anns], np.float64).reshape(-1, 4),
                    np.asarray([a['bbox_label'] for a in anns], np.int64),
                    [str(a['rater_id']) for a in anns],  # as objects, not fixed-width
                    tuple(str(r) for r in info['raters']),
                    width=info['width'],
                    height=info['height'],
                    image_id=info['img_id'],
                )
            )
        return out

    def set_fused(self, fused: Sequence[Detections]) -> None:
        """Replace every image's fused boxes, in place (a refit, ``DetectorRaterHook``).

        ``instances`` and ``num_raters`` of each data info are rebuilt as when the dataset
        loaded (float32 boxes and confidences as Python floats); the serialized data list
        is rebuilt too. Data-loader workers hold copies of the dataset: persistent ones
        must be restarted to see the change (the hook does it). ``cat_img_map`` keeps the
        classes of the fusion at load time (``get_cat_ids`` reads the new ``instances``).

        Args:
            fused (Sequence[Detections]): the fused boxes, one per image, in dataset order.

        Raises:
            ValueError: when the number of results is not the number of images.
        """
        if len(fused) != len(self):
            raise ValueError(
                f'{self.ann_file}: set_fused got {len(fused)} results for {len(self)} images'
            )
        infos = []
        for idx, res in enumerate(fused):
            info = BaseDataset.get_data_info(self, idx)
            info.pop('sample_idx', None)
            info['instances'] = _instances(res)
            info['num_raters'] = int(res.num_raters)
            infos.append(info)
        self.data_list = infos
        if self.serialize_data:
            self.data_bytes, self.data_address = self._serialize_data()

    def filter_data(self) -> list[dict]:
        """Filter by ``filter_cfg``, keeping negative images (read, no box) by default.

        Returns:
            list[dict]: the kept data infos.
        """
        if self.test_mode or self.filter_cfg is None:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        keep_negatives = self.filter_cfg.get('keep_negatives', True)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = []
        for info in self.data_list:
            if filter_empty_gt and not info['instances']:
                # Nobody read it (or, for 'rater:<id>', not that rater): unlabelled, not
                # negative. Read by someone: a negative.
                unread = not info['raters'] or info['num_raters'] == 0
                if unread or not keep_negatives:
                    continue
            if min(info['width'], info['height']) >= min_size:
                kept.append(info)
        if not kept:
            # mmengine would fail later with 'need at least one array to concatenate'.
            raise ValueError(
                f'{self.ann_file}: filter_cfg={self.filter_cfg!r} leaves no image of '
                f'{len(self.data_list)} (empty dataset)'
            )
        return kept


@TRANSFORMS.register_module()
class PackMultiRaterInputs(PackDetInputs):
    """Pack detection inputs plus the per-box confidence c of fused multi-rater boxes.

    ``gt_confidence`` (np.float32 (N,)) becomes ``data_sample.gt_instances.confidence``
    (torch.float32 (N,)), the field EARL heads read (weight 1 when absent);
    ``gt_agreement`` becomes ``gt_instances.agreement`` (int64) when
    ``pack_agreement=True`` (off by default: heads need only c). Like the other per-box
    keys they are split by ``gt_ignore_flags`` into ``gt_instances`` /
    ``ignored_instances`` (the latter gets them only when some box is ignored).

    Before packing, it checks that every per-box key still has one entry per box: a
    transform that dropped or reordered boxes without ``KeepConfidence`` is an error here,
    not a silent misalignment.

    Required Keys:

    - those of :class:`mmdet.datasets.transforms.PackDetInputs`
    - gt_confidence (np.float32) (optional)
    - gt_agreement (np.int64) (optional)

    Added Keys:

    - data_samples.gt_instances.confidence (torch.float32)
    - data_samples.gt_instances.agreement (torch.int64, if ``pack_agreement``)

    Args:
        pack_agreement (bool): also pack ``gt_agreement``. Defaults to False.
        **kwargs: :class:`PackDetInputs` arguments (``meta_keys``).
    """

    mapping_table = {
        **PackDetInputs.mapping_table,
        CONFIDENCE_KEY: 'confidence',
        AGREEMENT_KEY: 'agreement',
    }

    def __init__(self, pack_agreement: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pack_agreement = pack_agreement
        if not pack_agreement:
            self.mapping_table = {k: v for k, v in self.mapping_table.items() if k != AGREEMENT_KEY}
        self._extra_keys = tuple(
            k for k in (CONFIDENCE_KEY, AGREEMENT_KEY) if k in self.mapping_table
        )

    @staticmethod
    def _where(results: dict) -> str:
        return f'image id={results.get("img_id")!r} ({results.get("img_path")})'

    def _check(self, results: dict) -> None:
        labels = results.get(LABEL_KEY)
        # ConfidenceToLabels removes gt_confidence and sets bit 31 of each label (or its sign
        # bit, through the float bits of c), so the (numpy-reduction) test runs only then.
        if (
            CONFIDENCE_KEY not in results
            and labels is not None
            and len(labels)
            and (labels.min() < 0 or labels.max() >= 1 << 31)
        ):
            raise ValueError(
                f'PackMultiRaterInputs: {self._where(results)}: {LABEL_KEY} still carry packed '
                'confidences: add ConfidenceFromLabels after the mixing transforms'
            )
        n = len(results['gt_bboxes'])
        for key in (CONFIDENCE_KEY, AGREEMENT_KEY, LABEL_KEY, 'gt_ignore_flags'):
            value = results.get(key)
            if value is not None and len(value) != n:
                raise ValueError(
                    f'PackMultiRaterInputs: {self._where(results)}: {n} gt_bboxes but '
                    f'{len(value)} {key}: a transform dropped or reordered boxes without keeping '
                    'the confidences aligned; wrap it: dict(type="KeepConfidence", '
                    'transform=dict(type=...))'
                )

    def transform(self, results: dict) -> dict:
        """Check alignment, then pack like :class:`PackDetInputs`.

        Args:
            results (dict): result dict of the pipeline.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        # Without gt_bboxes (no LoadAnnotations: a test pipeline) there is nothing to align.
        extra = {}
        if 'gt_bboxes' in results:
            self._check(results)
            extra = {k: results.pop(k) for k in self._extra_keys if k in results}
        if not extra:
            return super().transform(results)
        # The parent packs the stock keys; the per-box keys are set directly here:
        # InstanceData.__setattr__ re-checks every field's length on each assignment, which
        # costs more per key than the rest of packing, and _check has verified the lengths.
        try:
            packed = super().transform(results)
        finally:
            results.update(extra)  # leave the input dict as it came
        sample = packed['data_samples']
        flags = results.get('gt_ignore_flags')
        any_ignored = flags is not None and np.count_nonzero(flags) > 0  # 2x flags.any()
        for key, value in extra.items():
            name = self.mapping_table[key]
            value = np.asarray(value, np.float32 if key == CONFIDENCE_KEY else np.int64)
            if any_ignored:
                sample.gt_instances.set_field(torch.from_numpy(value[flags == 0]), name)
                sample.ignored_instances.set_field(torch.from_numpy(value[flags == 1]), name)
            else:
                # Usual case (no ignore region): no indexing, and ignored_instances (empty)
                # gets no confidence field - nothing reads the confidence of ignore regions.
                sample.gt_instances.set_field(torch.from_numpy(value), name)
        return packed

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(meta_keys={self.meta_keys}, '
            f'pack_agreement={self.pack_agreement})'
        )
