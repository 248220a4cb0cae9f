"""Markdown reports and Kaggle submissions from evaluation results (no mmdet needed).

The *report dict* is what :class:`~earl_mmdet.evaluation.metrics.DetectionMAPMetric`
leaves in ``metric.report`` (and dumps to ``{outfile_prefix}.metric.json``)::

    {
      'metrics': {'coco/mAP_40': 0.41, 'coco/mAP': 0.17, ...},      # scalars, as logged
      'tables': {                                                  # optional
        'per_class': {'columns': ['class', 'num_gt', 'AP@0.4', ...],
                      'rows': [['Nodule/Mass', 120, 0.31, ...], ...]},
        'kaggle_per_class': {...},
      },
      'settings': {'backend': 'faster_coco_eval', ...},           # optional
    }

Table cells are str, int, float or None (None / NaN = not defined: a class without
ground truth).
"""

from __future__ import annotations

import csv
import math
import os
import os.path as osp
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from earl_core.io.safe_output import atomic_open, atomic_write
from earl_core.metrics.ap import (
    NO_FINDING_BOX,
    format_prediction_string,
    no_finding_score,
)

__all__ = ['markdown_table', 'write_kaggle_submission', 'write_markdown_report']

#: Pretty names of the metric keys in the summary table.
_KEY_NAMES = {
    'mAP_40': 'mAP@0.4 (COCO 101-point)',
    'mAP': 'mAP@[.5:.95]',
    'mAP_50': 'AP50',
    'mAP_75': 'AP75',
    'mAP_s': 'AP small',
    'mAP_m': 'AP medium',
    'mAP_l': 'AP large',
    'kaggle_mAP_40': 'Kaggle mAP@0.4 (VOC all-point, IoU > 0.4, with No finding)',
}


def _cell(value: Any, float_fmt: str) -> str:
    if value is None:
        return '-'
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return '-' if math.isnan(value) else format(float(value), float_fmt)
    return str(value).replace('|', '\\|')


def markdown_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], float_fmt: str = '.4f'
) -> str:
    """Render a GitHub-flavoured Markdown table.

    Args:
        columns (Sequence[str]): header cells.
        rows (Iterable[Sequence]): one sequence per row, same length as ``columns``.
        float_fmt (str): format spec for floats. Defaults to ``'.4f'``.

    Returns:
        str: the table (no trailing newline). None / NaN cells print as ``-``.

    Examples:
        >>> print(markdown_table(['class', 'AP'], [['a', 0.5], ['b', None]]))
        | class | AP |
        | --- | ---: |
        | a | 0.5000 |
        | b | - |
    """
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != len(columns):
            raise ValueError(f'row {i} has {len(r)} cells, expected {len(columns)}: {r!r}')
    # Right-align columns that hold numbers only (after the first, the row label).
    align = ['---']
    for j in range(1, len(columns)):
        numeric = all(isinstance(r[j], (int, float, np.number)) or r[j] is None for r in rows)
        align.append('---:' if numeric else '---')
    lines = [
        '| ' + ' | '.join(_cell(c, float_fmt) for c in columns) + ' |',
        '| ' + ' | '.join(align) + ' |',
    ]
    lines += ['| ' + ' | '.join(_cell(v, float_fmt) for v in r) + ' |' for r in rows]
    return '\n'.join(lines)


def _pretty(key: str) -> str:
    short = key.rsplit('/', 1)[-1]
    return _KEY_NAMES.get(short, short)


#: Last line of every Markdown report: marks the file as one a tool may write again.
REPORT_MARKER = '<!-- earl-mmdet report: written by a tool, rewritten when rerun -->'


def is_own_report(path: str | os.PathLike) -> bool:
    """True if ``path`` is a Markdown report this package wrote (ends with the marker)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode('utf-8', 'replace')
    except OSError:
        return False
    return tail.rstrip().endswith(REPORT_MARKER)


def write_markdown_report(
    metrics: Mapping[str, Any],
    path: str | os.PathLike,
    title: str = 'Detection report',
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    notes: Sequence[str] = (),
    inputs: Iterable[str | os.PathLike | None] = (),
) -> str:
    """Write a Markdown report: a summary table, then one section per table.

    Args:
        metrics (Mapping): either a report dict (keys ``metrics``, optional ``tables`` and
            ``settings``; see the module docstring) or a flat dict of scalars such as
            ``runner.test()`` returns. Non-scalar values of a flat dict are skipped.
        path (str | PathLike): output ``.md`` file (parent folders are created).
        title (str): level-1 heading. Defaults to ``'Detection report'``.
        tables (Mapping | None): extra ``{name: {'columns': [...], 'rows': [[...]]}}``,
            added after those of a report dict. Defaults to None.
        notes (Sequence[str]): lines added as a bullet list under the summary.
        inputs (Iterable[str | PathLike | None]): files the run read; ``path`` must not
            be one of them. The file is written through a temporary file and a rename
            (:func:`earl_core.io.safe_output.atomic_write`).

    Returns:
        str: the Markdown text written.
    """
    if 'metrics' in metrics and isinstance(metrics['metrics'], Mapping):
        scalars = dict(metrics['metrics'])
        all_tables = dict(metrics.get('tables') or {})
        settings = dict(metrics.get('settings') or {})
    else:
        scalars = dict(metrics)
        all_tables, settings = {}, {}
    all_tables.update(tables or {})
    rows = [
        [_pretty(k), k, float(v)]
        for k, v in scalars.items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    ]
    parts = [f'# {title}', '', '## Summary', '', markdown_table(['metric', 'key', 'value'], rows)]
    bullets = list(notes) + [f'{k}: `{v}`' for k, v in settings.items()]
    if bullets:
        parts += [''] + [f'- {b}' for b in bullets]
    headings = {
        'per_class': 'Per-class AP (COCO 101-point)',
        'kaggle_per_class': 'Per-class AP, Kaggle VinBigData (VOC all-point, IoU > 0.4)',
    }
    for name, table in all_tables.items():
        parts += ['', f'## {headings.get(name, name)}', '']
        parts.append(markdown_table(table['columns'], table['rows']))
    parts += ['', REPORT_MARKER]
    text = '\n'.join(parts) + '\n'
    atomic_write(path, text, inputs=inputs)
    return text


def write_kaggle_submission(
    predictions: Iterable[Mapping[str, Any]],
    path: str | os.PathLike,
    no_finding: str = 'one_minus_max',
    no_finding_constant: float = 1.0,
    no_finding_label: int = 14,
    label_map: Mapping[int, int] | None = None,
    score_thr: float = 0.0,
    score_decimals: int = 4,
    box_decimals: int = 1,
    coord_scales: Mapping[str, Sequence[float]] | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> int:
    """Write a Kaggle VinBigData submission CSV ``image_id,PredictionString``.

    Each prediction mapping holds:

    * ``image_id`` (str): the Kaggle image id (DICOM file stem), written as is. Without it
      the stem of ``img_path`` is used (mmdet data samples carry ``img_path``).
    * ``bboxes`` ((N, 4) xyxy), ``scores`` ((N,)), ``labels`` ((N,) int): numpy arrays or
      torch tensors, at the top level or under ``pred_instances`` (so the data samples of
      mmdet's ``DumpDetResults`` / ``tools/test.py --out x.pkl`` can be passed as they are).
      Boxes are in the pixels of the image the detector was evaluated on, at its stored
      size (mmdet ``pred_instances`` with ``rescale=True``).
    * ``coord_scale`` (optional, ``(sx, sy)``): multipliers from those pixels to the
      ORIGINAL DICOM pixels Kaggle scores, ``x_dicom = x * sx``, ``y_dicom = y * sy``, i.e.
      ``sx = dicom_width / png_width`` when the dataset holds downsized PNGs. Note this is
      the inverse of mmdet's ``scale_factor``. ``coord_scales[image_id]`` gives the same
      from outside; neither = boxes already in DICOM pixels.
    * ``no_finding_score`` (optional float): the 'No finding' score from a classifier; it
      replaces the ``no_finding`` rule for this image.

    Every row ends with the 'No finding' line ``<no_finding_label> <score> 0 0 1 1`` unless
    the rule gives no score (``no_finding='none'`` and no ``no_finding_score``); a row can
    then be empty.

    Args:
        predictions (Iterable[Mapping]): one mapping per image (see above).
        path (str | PathLike): output CSV.
        no_finding (str): ``'one_minus_max'`` (1 - highest kept box score, 1 with no box),
            ``'constant'`` (``no_finding_constant``) or ``'none'``.
            Defaults to ``'one_minus_max'``.
        no_finding_constant (float): score for ``'constant'``. Defaults to 1.0.
        no_finding_label (int): Kaggle class id of 'No finding'. Defaults to 14.
        label_map (Mapping[int, int] | None): model label -> Kaggle class id; None =
            identity (VinDr-CXR class order 0-13). Defaults to None.
        score_thr (float): drop boxes with a lower score. Defaults to 0.0.
        score_decimals (int): Defaults to 4.
        box_decimals (int): Defaults to 1.
        coord_scales (Mapping[str, Sequence[float]] | None): ``{image_id: (sx, sy)}``, used
            for images whose mapping has no ``coord_scale``. Defaults to None.
        inputs (Iterable[str | PathLike | None]): files the run read; ``path`` must not
            be one of them. Written through a temporary file and a rename.

    Returns:
        int: number of rows written.

    Raises:
        ValueError: a missing ``image_id``, a repeated ``image_id``, inconsistent lengths;
            ``path`` is one of ``inputs``.
    """
    seen: set[str] = set()
    lines = []
    for k, pred in enumerate(predictions):
        if pred.get('image_id') is not None:
            img_id = str(pred['image_id'])
        elif pred.get('img_path'):
            img_id = osp.splitext(osp.basename(str(pred['img_path'])))[0]
        else:
            raise ValueError(
                f'prediction #{k} has no image_id and no img_path (keys: {sorted(pred)})'
            )
        if img_id in seen:
            raise ValueError(f'prediction #{k}: image_id {img_id!r} appears twice')
        seen.add(img_id)
        inst = pred.get('pred_instances', pred)
        boxes = _numpy(inst.get('bboxes', np.zeros((0, 4)))).astype(np.float64).reshape(-1, 4)
        scores = _numpy(inst.get('scores', np.zeros(0))).astype(np.float64).reshape(-1)
        labels = _numpy(inst.get('labels', np.zeros(0))).astype(np.int64).reshape(-1)
        if not boxes.shape[0] == scores.shape[0] == labels.shape[0]:
            raise ValueError(
                f'image {img_id!r}: {boxes.shape[0]} boxes, {scores.shape[0]} scores, '
                f'{labels.shape[0]} labels'
            )
        keep = scores >= score_thr
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        scale = pred.get('coord_scale')
        if scale is None and coord_scales is not None:
            scale = coord_scales.get(img_id)
        if scale is not None:
            sx, sy = (float(v) for v in scale)
            boxes = boxes * np.array([sx, sy, sx, sy])
        if label_map is not None:
            try:
                labels = np.array([label_map[int(v)] for v in labels], dtype=np.int64)
            except KeyError as e:
                raise ValueError(f'image {img_id!r}: label {e.args[0]} not in label_map') from None
        nf = pred.get('no_finding_score')
        if nf is None:
            nf = no_finding_score(scores, no_finding, no_finding_constant)
        if nf is not None:
            boxes = np.concatenate([boxes, [NO_FINDING_BOX]])
            scores = np.concatenate([scores, [float(nf)]])
            labels = np.concatenate([labels, [no_finding_label]])
        text = format_prediction_string(boxes, scores, labels, score_decimals, box_decimals)
        lines.append((img_id, text))
    with atomic_open(path, newline='', inputs=inputs) as f:
        writer = csv.writer(f)
        writer.writerow(['image_id', 'PredictionString'])
        writer.writerows(lines)
    return len(lines)


def _numpy(x: Any) -> np.ndarray:
    # torch tensors without importing torch here.
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
