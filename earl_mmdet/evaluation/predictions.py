"""Detections as ``{image_id: (boxes, scores, labels)}``: read, fused with WBF, evaluated.

Used by ``tools/ensemble_predictions.py`` (the paper's *Rads-ensemble*) and by the study
(``tools/benchmark_medmnist.py``). Prediction files are mmdet ``--out`` pickles
(``tools/test.py ... --out preds.pkl``) or COCO results JSON. Pickles are read with
:func:`load_prediction_pickle`, which builds only containers, numbers, strings, numpy
arrays and torch tensors: a pickle that names anything else is refused, so a planted file
cannot run code.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import os.path as osp
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from earl_core.study.benchmark import METRICS

#: Per image: (boxes (N, 4) float64 xyxy pixels, scores (N,) float64, labels (N,) int64).
Preds = dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _tensor_storage_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` without full unpickling (``weights_only=True``)."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


class _Refused(pickle.UnpicklingError):
    """A refusal of this module (its message names the file), told apart from the
    ``UnpicklingError`` of a malformed file."""


def _refuse(path: str, what: str) -> _Refused:
    return _Refused(f'{path}: {what}; not a prediction pickle written by mmdet')


def _safe_globals(path: str, limit: int) -> dict[tuple[str, str], Any]:
    """The globals a prediction pickle may name. Those that allocate check first that the
    size they are asked for fits in the ``limit`` bytes of the file: a file of a few
    bytes can declare a 2^40-element array, which would fail only after asking the
    system for terabytes (MemoryError, or worse, swapping)."""
    import torch

    multiarray = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        # numpy pickles an empty array here and fills it from the file's bytes afterwards.
        if math.prod(int(n) for n in shape) > limit:
            raise _refuse(path, f'declares a numpy array of shape {tuple(shape)}')
        return multiarray(subtype, shape, dtype)

    def dtype(*args: Any) -> np.dtype:
        d = np.dtype(*args)
        if d.hasobject:
            raise _refuse(path, f'declares a numpy array of Python objects ({d})')
        return d

    def rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *rest: Any) -> Any:
        need = 0 if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
        raw = getattr(storage, '_untyped_storage', storage)  # a TypedStorage wraps one
        item = torch.empty(0, dtype=getattr(storage, 'dtype', torch.uint8)).element_size()
        have = raw.nbytes() // item
        if need > have:
            raise _refuse(
                path, f'declares a tensor of size {tuple(size)} on a storage of {have} elements'
            )
        return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, *rest)

    allowed: dict[tuple[str, str], Any] = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('_codecs', 'encode'): __import__('codecs').encode,  # bytes, pickle protocol 2
        ('torch._utils', '_rebuild_tensor_v2'): rebuild_tensor,
        ('torch.storage', '_load_from_bytes'): _tensor_storage_from_bytes,
        ('torch', 'Size'): torch.Size,
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): dtype,
    }
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[module, '_reconstruct'] = reconstruct
        allowed[module, 'scalar'] = np.float64(0).__reduce__()[0]
    for name in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType', 'BoolDType'):
        dtype_class = getattr(np.dtypes, name, None) if hasattr(np, 'dtypes') else None
        if dtype_class is not None:
            allowed['numpy.dtypes', name] = dtype_class
    return allowed


class _PredictionUnpickler(pickle.Unpickler):
    """Builds only the globals of :func:`_safe_globals`; anything else is an error."""

    def __init__(self, file: Any, path: str, limit: int) -> None:
        super().__init__(file)
        self._path = path
        self._allowed = _safe_globals(path, limit)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise _Refused(
                f'{self._path}: refusing to unpickle {module}.{name}: a prediction pickle '
                'holds containers, numbers, strings, numpy arrays and tensors only (loading '
                'other objects could run code from the file). Convert it to a COCO results '
                '.json if it comes from elsewhere.'
            ) from None


def load_prediction_pickle(path: str) -> Any:
    """Read an mmdet ``--out`` pickle without running code from it.

    Raises:
        pickle.UnpicklingError: the file names a global outside containers, numbers,
            strings, numpy arrays and torch tensors, or declares an array larger than the
            file can hold (the message names the file).
        ValueError: naming the file, for a pickle that is truncated, malformed or asks
            for more memory than there is.
    """
    with open(path, 'rb') as f:
        limit = os.fstat(f.fileno()).st_size
        try:
            return _PredictionUnpickler(f, path, limit).load()
        except _Refused:
            raise
        except MemoryError:
            raise ValueError(
                f'{path}: unreadable prediction pickle: it declares more data than fits in memory'
            ) from None
        except RecursionError:
            raise ValueError(f'{path}: unreadable prediction pickle: nested too deeply') from None
        except Exception as e:  # EOFError, torch's RuntimeError, ValueError, ... from the data
            raise ValueError(
                f'{path}: unreadable prediction pickle: {type(e).__name__}: '
                f'{str(e).splitlines()[0] if str(e) else ""}'
            ) from e


def _np(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def load_predictions(path: str, gold: Mapping) -> Preds:
    """Read one model's predictions (mmdet ``.pkl`` or COCO results ``.json``).

    Args:
        path (str): prediction file; a pickle is read with :func:`load_prediction_pickle`.
        gold (Mapping): gold COCO dict (its categories give the label order).

    Returns:
        Preds: ``{image_id: (boxes, scores, labels)}``; labels index the gold categories.
    """
    cat_ids = [c['id'] for c in gold['categories']]
    label_of = {c: i for i, c in enumerate(cat_ids)}
    out: Preds = {}
    if path.endswith('.json'):
        from earl_core.io.coco import read_json

        dets = read_json(path)
        if not isinstance(dets, list):
            raise ValueError(f'{path}: a COCO results file must hold a list, got {type(dets)}')
        grouped: dict[Any, list] = {}
        for k, d in enumerate(dets):
            if d.get('category_id') not in label_of:
                raise ValueError(
                    f'{path}: result #{k}: category_id {d.get("category_id")!r} is not a gold '
                    f'category ({cat_ids})'
                )
            x, y, w, h = (float(v) for v in d['bbox'])
            grouped.setdefault(d['image_id'], []).append(
                (x, y, x + w, y + h, float(d['score']), label_of[d['category_id']])
            )
        for img_id, rows in grouped.items():
            a = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
            out[img_id] = (a[:, :4], a[:, 4], a[:, 5].astype(np.int64))
        return out
    if path.endswith(('.pkl', '.pickle')):
        samples = load_prediction_pickle(path)
        if not isinstance(samples, list):
            raise ValueError(f'{path}: an mmdet --out pickle holds a list, got {type(samples)}')
        for k, s in enumerate(samples):
            if not isinstance(s, Mapping) or 'img_id' not in s or 'pred_instances' not in s:
                raise ValueError(f'{path}: entry #{k} is not a dict with img_id/pred_instances')
            p = s['pred_instances']
            if not isinstance(p, Mapping) or not {'bboxes', 'scores', 'labels'} <= set(p):
                raise ValueError(
                    f'{path}: entry #{k}: pred_instances must hold bboxes, scores and labels'
                )
            labels = _np(p['labels']).astype(np.int64).reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= len(cat_ids)):
                raise ValueError(
                    f'{path}: image {s["img_id"]!r}: label {int(labels.max())} outside the '
                    f'{len(cat_ids)} gold categories'
                )
            out[s['img_id']] = (
                _np(p['bboxes']).astype(np.float64).reshape(-1, 4),
                _np(p['scores']).astype(np.float64).reshape(-1),
                labels,
            )
        return out
    raise ValueError(f'{path}: unknown prediction format (expected .pkl or .json)')


def fuse_predictions(
    models: Sequence[Preds],
    gold: Mapping,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = 'avg',
) -> Preds:
    """WBF of several models' predictions, image by image, in pixel coordinates.

    Args:
        models (Sequence[Preds]): one prediction dict per model.
        gold (Mapping): gold COCO dict; its images (and their width/height) are fused.
        weights (Sequence[float] | None): per-model weight. Defaults to None (all 1).
        iou_thr (float): WBF match threshold (IoU > thr). Defaults to 0.55.
        skip_box_thr (float): drop boxes with a lower score first. Defaults to 0.0.
        conf_type (str): WBF confidence rule. Defaults to ``'avg'``.

    Returns:
        Preds: fused boxes per gold image (images where every model is empty are omitted).
    """
    from earl_core.fusion.wbf import weighted_boxes_fusion

    if weights is not None and len(weights) != len(models):
        raise ValueError(f'{len(weights)} weights for {len(models)} prediction files')
    fused: Preds = {}
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    for im in gold['images']:
        w, h = float(im.get('width') or 0), float(im.get('height') or 0)
        if w <= 0 or h <= 0:
            raise ValueError(f'gold image {im["id"]!r} needs a positive width and height')
        per = [m.get(im['id'], empty) for m in models]
        if not any(p[0].shape[0] for p in per):
            continue
        scale = np.array([w, h, w, h])
        boxes, scores, labels = weighted_boxes_fusion(
            [np.clip(p[0] / scale, 0.0, 1.0) for p in per],
            [p[1] for p in per],
            [p[2] for p in per],
            weights=None if weights is None else list(weights),
            iou_thr=iou_thr,
            skip_box_thr=skip_box_thr,
            conf_type=conf_type,
        )
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
        fused[im['id']] = (
            boxes,
            np.asarray(scores, np.float64).reshape(-1),
            np.asarray(labels).astype(np.int64).reshape(-1),
        )
    return fused


def evaluate(preds: Preds, gt_path: str, gold: Mapping, **metric_kwargs: Any):
    """Evaluate predictions with :class:`DetectionMAPMetric` (the same numbers as training).

    Returns:
        tuple[dict, dict]: the unprefixed scalar metrics and the metric's report dict.
    """
    from earl_mmdet.evaluation.metrics import DetectionMAPMetric

    metric = DetectionMAPMetric(ann_file=gt_path, **metric_kwargs)
    metric.dataset_meta = dict(classes=[c['name'] for c in gold['categories']])
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    results = []
    for im in gold['images']:
        b, s, lab = preds.get(im['id'], empty)
        results.append(({}, dict(img_id=im['id'], bboxes=b, scores=s, labels=lab)))
    scalars = metric.compute_metrics(results)
    return dict(scalars), metric.report


def to_coco_results(preds: Preds, gold: Mapping) -> list[dict]:
    """Fused predictions as a COCO results list (gold category ids, xywh boxes)."""
    from earl_core.metrics.ap import detections_to_coco

    ids = list(preds)
    return detections_to_coco(
        ids,
        [preds[i][0] for i in ids],
        [preds[i][1] for i in ids],
        [preds[i][2] for i in ids],
        [c['id'] for c in gold['categories']],
    )


# Scoring for the study tool (tools/benchmark_medmnist.py): the same metric as training.


def _quiet_metric_log() -> None:
    """The metric logs its per-class tables at INFO: keep the study's output to its lines."""
    import logging

    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel(logging.WARNING)


def score_predictions(preds: Preds, gold_path: str, gold: dict) -> dict[str, float]:
    """mAP@0.4 / mAP@[.5:.95] (and the rest of the metric's scalars) of one prediction set."""
    _quiet_metric_log()
    scalars, _ = evaluate(preds, gold_path, gold)
    return {k: float(v) for k, v in scalars.items()}


def bootstrap_scores(
    preds_by_method: dict[str, Preds],
    gold: dict,
    num: int,
    seed: int = 0,
    baseline: str = 'na',
) -> dict[str, dict[str, dict]]:
    """Bootstrap over gold test images: SE of each method's metrics and of its diff to NA.

    The same resampled image sets are used for every method (paired).
    """
    _quiet_metric_log()
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix='earl_boot_')
    images = gold['images']
    by_img: dict[Any, list] = {}
    for a in gold['annotations']:
        by_img.setdefault(a['image_id'], []).append(a)
    draws: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in METRICS} for m in preds_by_method
    }
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    for _ in range(num):
        pick = rng.integers(0, len(images), len(images))
        new_images, new_anns, remap = [], [], []
        for new_id, i in enumerate(pick.tolist(), start=1):
            im = dict(images[i], id=new_id)
            new_images.append(im)
            remap.append((new_id, images[i]['id']))
            for a in by_img.get(images[i]['id'], []):
                new_anns.append(dict(a, id=len(new_anns) + 1, image_id=new_id))
        sample = dict(gold, images=new_images, annotations=new_anns)
        sample_path = osp.join(tmp, 'sample.json')
        with open(sample_path, 'w') as f:
            json.dump(sample, f)
        for method, preds in preds_by_method.items():
            resampled = {new: preds.get(old, empty) for new, old in remap}
            scalars, _ = evaluate(resampled, sample_path, sample)
            for k in METRICS:
                draws[method][k].append(float(scalars[k]))
    out: dict[str, dict[str, dict]] = {}
    for method, d in draws.items():
        out[method] = {}
        for k in METRICS:
            entry = dict(se=float(np.std(d[k], ddof=1)), num=num)
            if baseline in draws and method != baseline:
                diff = np.asarray(d[k]) - np.asarray(draws[baseline][k])
                entry['diff_se'] = float(np.std(diff, ddof=1))
            out[method][k] = entry
    return out
