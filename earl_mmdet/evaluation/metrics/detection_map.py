"""mAP@0.4 and mAP@[.5:.95] with per-class tables in one COCO evaluation (+ Kaggle mode)."""

from __future__ import annotations

import math
import os.path as osp
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import get_local_path, load
from mmengine.logging import MMLogger

from earl_core.io.safe_output import write_json
from earl_core.metrics.ap import (
    BACKENDS,
    COCO_AREA_RANGES,
    COMBINED_IOU_THRS,
    NO_FINDING_MODES,
    add_no_finding,
    coco_gt_from_instances,
    detections_to_coco,
    evaluate_coco,
    no_finding_score,
    prepare_coco_gt,
    summarize_precision,
    voc_map,
)
from earl_core.metrics.report import markdown_table


@METRICS.register_module()
class DetectionMAPMetric(CocoMetric):
    """COCO mAP@0.4, mAP@[.5:.95], AP50, AP75 and per-class tables from one evaluation.

    One COCOeval run with IoU thresholds ``[0.4, 0.5, 0.55, ..., 0.95]``; its precision
    array is sliced into mAP@0.4 (the paper's metric, COCO 101-point) and the standard COCO
    numbers. The slices equal separate pycocotools runs at ``iouThrs=[0.4]`` and at the
    default thresholds (``maxDets=100``, standard area ranges). Unlike mmdet's
    ``CocoMetric(iou_thrs=[0.4], classwise=True)`` (which indexes IoU positions 0 and 5 and
    crashes), the per-class tables always work.

    Returned (logged) keys, with the default prefix ``coco``: ``coco/mAP_40``, ``coco/mAP``,
    ``coco/mAP_50``, ``coco/mAP_75``, ``coco/mAP_s``, ``coco/mAP_m``, ``coco/mAP_l``
    (-1 when no class has ground truth, as in pycocotools), and ``coco/kaggle_mAP_40`` in
    Kaggle mode. ``coco/mAP_40`` comes first, so ``save_best='auto'`` tracks it.
    mmengine logs scalars only: the per-class tables are in ``self.report`` (see
    :mod:`earl_core.metrics.report`), logged as Markdown, and dumped to
    ``{outfile_prefix}.metric.json`` when ``outfile_prefix`` is set.

    Kaggle mode (``kaggle=True``) adds the VinBigData competition metric: PASCAL VOC 2010
    all-point AP at IoU > 0.4 (strict) per class, with 'No finding' as one more class
    (label ``len(classes)``, 14 on VinDr-CXR): an image without gt boxes has the gt
    ``14 1 0 0 1 1`` and each image gets the prediction ``14 s 0 0 1 1`` where ``s`` is set
    by ``no_finding`` (see :func:`earl_core.metrics.ap.no_finding_score`) or read from
    ``no_finding_scores``.

    Args:
        ann_file (str, optional): gold COCO file. None = convert the dataset's ground truth
            (data samples need ``instances``, as for mmdet's ``CocoMetric``).
        backend (str): ``'faster_coco_eval'`` (default, about 8x faster) or
            ``'pycocotools'`` (the reference).
        max_dets (int): detections per image and class kept by score. Defaults to 100.
        area_ranges (bool): also compute ``mAP_s``/``mAP_m``/``mAP_l`` (COCO area ranges).
            Defaults to True.
        kaggle (bool): add the Kaggle VinBigData metric. Defaults to False.
        kaggle_iou_thr (float): Defaults to 0.4.
        no_finding (str): ``'one_minus_max'`` (1 - the image's highest box score),
            ``'constant'`` or ``'none'``. Defaults to ``'one_minus_max'``.
        no_finding_constant (float): score for ``'constant'``. Defaults to 1.0.
        no_finding_scores (str | Mapping, optional): ``{img_id: score}`` (or a JSON file of
            it, keys as str) from an image classifier; overrides ``no_finding`` for every
            image, each evaluated image must be present. Defaults to None.
        format_only (bool): only dump predictions (needs ``outfile_prefix``).
        outfile_prefix (str, optional): dump ``{prefix}.bbox.json`` (mmdet's format) and
            ``{prefix}.metric.json`` (the report dict).
        backend_args (dict, optional): mmengine file backend arguments.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): key prefix. Defaults to ``'coco'``.
    """

    default_prefix: str | None = 'coco'

    def __init__(
        self,
        ann_file: str | None = None,
        metric: str | Sequence[str] = 'bbox',
        backend: str = 'faster_coco_eval',
        max_dets: int = 100,
        area_ranges: bool = True,
        kaggle: bool = False,
        kaggle_iou_thr: float = 0.4,
        no_finding: str = 'one_minus_max',
        no_finding_constant: float = 1.0,
        no_finding_scores: str | Mapping | None = None,
        format_only: bool = False,
        outfile_prefix: str | None = None,
        backend_args: dict | None = None,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        # The parent keeps process(), results2json() and the format_only checks; we load
        # the gold file ourselves (as a plain dict) so either COCO backend can use it.
        super().__init__(
            ann_file=None,
            metric='bbox',
            iou_thrs=list(COMBINED_IOU_THRS),
            format_only=format_only,
            outfile_prefix=outfile_prefix,
            backend_args=backend_args,
            collect_device=collect_device,
            prefix=prefix,
        )
        # Accepted so that a CocoMetric config becomes ours by changing only its type.
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['bbox']:
            raise ValueError(
                f"DetectionMAPMetric evaluates boxes only: metric must be 'bbox', got {metric!r}"
            )
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
        if no_finding not in NO_FINDING_MODES:
            raise ValueError(f'no_finding must be one of {NO_FINDING_MODES}, got {no_finding!r}')
        if int(max_dets) < 1:
            raise ValueError(f'max_dets must be >= 1, got {max_dets!r}')
        self.eval_backend = backend
        self.max_dets = int(max_dets)
        self.area_ranges = bool(area_ranges)
        self.kaggle = bool(kaggle)
        self.kaggle_iou_thr = float(kaggle_iou_thr)
        self.no_finding = no_finding
        self.no_finding_constant = float(no_finding_constant)
        self.no_finding_scores = self._load_scores(no_finding_scores, backend_args)
        self.ann_file = ann_file
        self._gold: dict | None = None
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=backend_args) as local_path:
                self._gold = prepare_coco_gt(load(local_path, file_format='json'))
            # The parent's process() keeps the data samples' `instances` only while
            # `_coco_api` is None; no COCO object is needed here, the gold dict stands in.
            self._coco_api = self._gold
        #: The last evaluation's report dict (metrics, per-class tables, settings).
        self.report: dict | None = None

    @property
    def last_tables(self) -> dict:
        """Per-class tables of the last evaluation (``self.report['tables']``; {} before)."""
        return dict(self.report['tables']) if self.report else {}

    @staticmethod
    def _load_scores(scores: str | Mapping | None, backend_args: dict | None) -> dict | None:
        if scores is None:
            return None
        if not isinstance(scores, Mapping):
            with get_local_path(scores, backend_args=backend_args) as local_path:
                scores = load(local_path, file_format='json')
            if not isinstance(scores, Mapping):
                raise ValueError(f'no_finding_scores file must hold a JSON object: {scores!r}')
        return {str(k): float(v) for k, v in scores.items()}

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Evaluate the processed results (see the class docstring for the keys).

        Args:
            results (list): ``(gt, pred)`` pairs from :meth:`process`.

        Returns:
            dict[str, float]: scalar metrics, unprefixed (mmengine adds the prefix).
        """
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        classes = list(self.dataset_meta['classes'])
        gold = self._gold if self._gold is not None else coco_gt_from_instances(gts, classes)
        by_name = {c['name']: c['id'] for c in gold['categories']}
        missing = [n for n in classes if n not in by_name]
        if missing:
            raise ValueError(
                f'classes {missing} of dataset_meta are not categories of the gold file '
                f'{self.ann_file or "<converted dataset gt>"} ({sorted(by_name)})'
            )
        self.cat_ids = [by_name[n] for n in classes]
        self.img_ids = [im['id'] for im in gold['images']]

        if self.outfile_prefix is not None:
            self.results2json(preds, self.outfile_prefix)  # mmdet's {prefix}.bbox.json
        if self.format_only:
            logger.info(f'results are saved in {osp.dirname(self.outfile_prefix)}')
            return OrderedDict()

        dets = detections_to_coco(
            [p['img_id'] for p in preds],
            [p['bboxes'] for p in preds],
            [p['scores'] for p in preds],
            [p['labels'] for p in preds],
            self.cat_ids,
        )
        precision = evaluate_coco(
            gold,
            dets,
            iou_thrs=COMBINED_IOU_THRS,
            max_dets=self.max_dets,
            area_ranges=COCO_AREA_RANGES if self.area_ranges else None,
            backend=self.eval_backend,
            img_ids=self.img_ids,
            cat_ids=self.cat_ids,
        )
        scalars, per_class = summarize_precision(precision, COMBINED_IOU_THRS)
        order = ['mAP_40', 'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']
        out: dict[str, float] = OrderedDict((k, scalars[k]) for k in order if k in scalars)

        cat_index = {c: i for i, c in enumerate(self.cat_ids)}
        num_gt = np.zeros(len(classes), np.int64)
        for ann in gold['annotations']:
            if not ann['iscrowd'] and ann['category_id'] in cat_index:
                num_gt[cat_index[ann['category_id']]] += 1
        tables = {
            'per_class': dict(
                columns=['class', 'num_gt', 'AP@0.4', 'AP@[.5:.95]', 'AP50', 'AP75'],
                rows=[
                    [name, int(num_gt[k])]
                    + [_num(per_class[key][k]) for key in ('AP_40', 'AP', 'AP_50', 'AP_75')]
                    for k, name in enumerate(classes)
                ],
            )
        }
        if self.kaggle:
            out['kaggle_mAP_40'], tables['kaggle_per_class'] = self._kaggle(gold, preds, classes)

        prefix = f'{self.prefix}/' if self.prefix else ''
        self.report = dict(
            metrics={prefix + k: v for k, v in out.items()},
            tables=tables,
            settings=dict(
                backend=self.eval_backend,
                max_dets=self.max_dets,
                iou_thrs=[round(float(t), 2) for t in COMBINED_IOU_THRS],
                kaggle=self.kaggle,
                no_finding=self.no_finding if self.kaggle else None,
                ann_file=self.ann_file,
                num_images=len(self.img_ids),
            ),
        )
        for name, table in tables.items():
            logger.info(f'{name}:\n' + markdown_table(table['columns'], table['rows']))
        if self.outfile_prefix is not None:
            write_json(f'{self.outfile_prefix}.metric.json', self.report, indent=1)
        return out

    def _kaggle(self, gold: dict, preds: Sequence[dict], classes: list[str]):
        """VOC2010 all-point mAP at IoU > thr with 'No finding' (label ``len(classes)``)."""
        cat_index = {c: i for i, c in enumerate(self.cat_ids)}
        row = {img_id: i for i, img_id in enumerate(self.img_ids)}
        n = len(self.img_ids)
        gt_boxes: list[list] = [[] for _ in range(n)]
        gt_labels: list[list] = [[] for _ in range(n)]
        for ann in gold['annotations']:
            # Crowd/ignored boxes and categories outside the dataset classes are not scored.
            if ann['iscrowd'] or ann['category_id'] not in cat_index:
                continue
            x, y, w, h = ann['bbox']
            gt_boxes[row[ann['image_id']]].append([x, y, x + w, y + h])
            gt_labels[row[ann['image_id']]].append(cat_index[ann['category_id']])
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
        det = [empty] * n
        for p in preds:
            if p['img_id'] in row:
                det[row[p['img_id']]] = (p['bboxes'], p['scores'], p['labels'])
        if self.no_finding_scores is not None:
            try:
                nf = [self.no_finding_scores[str(i)] for i in self.img_ids]
            except KeyError as e:
                raise ValueError(f'no_finding_scores has no score for image {e.args[0]}') from None
        else:
            nf = [no_finding_score(d[1], self.no_finding, self.no_finding_constant) for d in det]
        label = len(classes)
        gb, gl, db, ds, dl = add_no_finding(
            gt_boxes,
            gt_labels,
            [d[0] for d in det],
            [d[1] for d in det],
            [d[2] for d in det],
            no_finding_label=label,
            scores=nf,
        )
        res = voc_map(gb, gl, db, ds, dl, num_classes=label + 1, iou_thr=self.kaggle_iou_thr)
        names = classes + ['No finding']
        table = dict(
            columns=['class_id', 'class', 'num_gt', 'num_dets', f'AP@{self.kaggle_iou_thr:g}'],
            rows=[
                [c, names[c], int(res.num_gt[c]), int(res.num_dets[c]), _num(res.ap[c])]
                for c in range(label + 1)
            ],
        )
        return res.mAP, table


def _num(x: Any) -> float | None:
    """JSON-friendly float: NaN (class without ground truth) becomes None."""
    x = float(x)
    return None if math.isnan(x) else x
