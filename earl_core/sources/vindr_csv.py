"""VinDr-CXR label CSVs: the class tables and the parser (pure python + numpy, no pandas).

Two sources are read (docs/vindr.md):

* Kaggle VinBigData ``train.csv``:
  ``image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max``; 'No finding' is class 14
  with empty coordinates.
* PhysioNet VinDr-CXR ``annotations/annotations_{train,test}.csv``:
  ``image_id,rad_id,class_name,x_min,y_min,x_max,y_max``; 'No finding' has a NaN box. The
  test file is the consensus of 5 radiologists and becomes a *gold* (plain COCO) file.

Rules (see docs/vindr.md):

* Categories are the 14 Kaggle findings (class_id 0-13, COCO ``category_id`` = class_id + 1).
  'No finding' is not a category: its row records that the radiologist read the image
  and found nothing there.
* An image's ``annotators`` are all rad_ids with a row for it, 'No finding' rows included,
  so images read by three radiologists without a box are kept as true negatives.
* A bad row is a :class:`ValueError` naming the file, the line and the field. The only
  repairs (``repair=True``, counted and logged) keep the box: swapping x_min/x_max or
  y_min/y_max given in the wrong order, and clipping a box that extends outside the image
  (:func:`earl_core.sources.vindr.build_coco`). Rows of findings outside the 14 categories
  (PhysioNet has 22 local labels) are an error unless ``unknown_classes`` is ``'drop'``
  (counted, logged; the rater still counts as having read the image) or ``'keep'`` (extra categories
  after the 14).

Also read here: the image size tables (:func:`read_size_table`) that stand in for the DICOM
headers with ``tools/convert_vindr.py --skip-images``.
"""

from __future__ import annotations

import collections
import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from earl_core.deprecation import renamed_attribute

__all__ = [
    'KAGGLE_COLUMNS',
    'NO_FINDING',
    'NO_FINDING_ID',
    'PHYSIONET_COLUMNS',
    'UNKNOWN_CLASS_MODES',
    'VINDR_CLASSES',
    'VindrBox',
    'VindrLabels',
    'detect_format',
    'parse_vindr_rows',
    'read_size_table',
    'read_vindr_csv',
]

# One logger for the whole VinDr conversion, parsing included (its name as before the split).
logger = logging.getLogger('earl_core.sources.vindr')

#: The 14 findings of the Kaggle competition, in class_id order (0-13).
VINDR_CLASSES: tuple[str, ...] = (
    'Aortic enlargement',
    'Atelectasis',
    'Calcification',
    'Cardiomegaly',
    'Consolidation',
    'ILD',
    'Infiltration',
    'Lung Opacity',
    'Nodule/Mass',
    'Other lesion',
    'Pleural effusion',
    'Pleural thickening',
    'Pneumothorax',
    'Pulmonary fibrosis',
)
NO_FINDING = 'No finding'
NO_FINDING_ID = 14
KAGGLE_COLUMNS = (
    'image_id',
    'class_name',
    'class_id',
    'rad_id',
    'x_min',
    'y_min',
    'x_max',
    'y_max',
)
PHYSIONET_COLUMNS = ('image_id', 'rad_id', 'class_name', 'x_min', 'y_min', 'x_max', 'y_max')
_COORDS = ('x_min', 'y_min', 'x_max', 'y_max')
_MISSING = {'', 'nan', 'na', 'none', 'null'}
UNKNOWN_CLASS_MODES = ('error', 'drop', 'keep')


@dataclass(frozen=True)
class VindrBox:
    """One radiologist's box, as read (original pixel coordinates).

    Args:
        image_id (str): VinDr image id (hex string).
        rater (str): the radiologist's id, the CSV's ``rad_id`` (``'R8'``); ``''`` in a
            consensus file without it.
        class_name (str): canonical category name.
        box (tuple[float, float, float, float]): xyxy in original pixels.
        line (int): line of the CSV file (header = line 1), for messages.
    """

    image_id: str
    rater: str
    class_name: str
    box: tuple[float, float, float, float]
    line: int

    rad_id = renamed_attribute('rater')


@dataclass
class VindrLabels:
    """Parsed label CSV.

    Args:
        raters (dict[str, list[str]]): image id -> the raters (radiologists) who read it,
            i.e. have a row for it, in order of first appearance ('No finding' rows
            included).
        boxes (list[VindrBox]): every finding box, in file order.
        classes (list[str]): category names in label order (the 14, then kept extras).
        source (str): file name, for messages.
        fmt (str): ``'kaggle'`` or ``'physionet'``.
        repairs (collections.Counter): repairs applied, by kind.
        dropped (collections.Counter): rows dropped by choice, by reason (class name).
    """

    raters: dict[str, list[str]]
    boxes: list[VindrBox]
    classes: list[str]
    source: str = '<rows>'
    fmt: str = 'kaggle'
    repairs: collections.Counter = field(default_factory=collections.Counter)
    dropped: collections.Counter = field(default_factory=collections.Counter)

    readers = renamed_attribute('raters')

    @property
    def image_ids(self) -> list[str]:
        """Sorted image ids."""
        return sorted(self.raters)

    def positives(self) -> set[str]:
        """Image ids with at least one box."""
        return {b.image_id for b in self.boxes}


def detect_format(columns: Sequence[str], source: str = '<rows>') -> str:
    """``'kaggle'`` if the header has ``class_id``, else ``'physionet'``; checks columns.

    Raises:
        ValueError: naming the file and the missing columns.
    """
    cols = [c.strip() for c in columns]
    fmt = 'kaggle' if 'class_id' in cols else 'physionet'
    _check_columns(cols, fmt, source)
    return fmt


def _check_columns(cols: Sequence[str], fmt: str, source: str, need_rad: bool = True) -> None:
    expected = KAGGLE_COLUMNS if fmt == 'kaggle' else PHYSIONET_COLUMNS
    missing = [c for c in expected if c not in cols and (need_rad or c != 'rad_id')]
    if missing:
        raise ValueError(
            f'{source}: line 1 (header): missing column(s) {missing} for the {fmt} format; '
            f'expected {list(expected)}, got {list(cols)}'
        )


def _canonical_classes() -> dict[str, str]:
    names = {c.lower(): c for c in VINDR_CLASSES}
    names[NO_FINDING.lower()] = NO_FINDING
    return names


def _parse_coord(value: str | None) -> float | None:
    """None for a missing value (empty / NaN), else the float (may be non-finite)."""
    if value is None or value.strip().lower() in _MISSING:
        return None
    return float(value)


def parse_vindr_rows(
    rows: Iterable[tuple[int, Mapping[str, str]]],
    fmt: str,
    source: str = '<rows>',
    *,
    gold: bool = False,
    repair: bool = False,
    unknown_classes: str = 'error',
) -> VindrLabels:
    """Parse VinDr label rows.

    Args:
        rows (Iterable[tuple[int, Mapping[str, str]]]): ``(line, row)`` pairs; ``row`` maps
            column name -> text (as :class:`csv.DictReader` yields).
        fmt (str): ``'kaggle'`` or ``'physionet'``.
        source (str): file name used in messages. Defaults to '<rows>'.
        gold (bool): consensus file (PhysioNet test): ``rad_id`` is not needed and ignored.
            Defaults to False.
        repair (bool): swap reversed corners instead of failing (counted in ``repairs``).
            Defaults to False.
        unknown_classes (str): what to do with a finding outside the 14 categories:
            ``'error'``, ``'drop'`` (counted in ``dropped``, logged) or ``'keep'``.
            Defaults to 'error'.

    Returns:
        VindrLabels: the raters who read each image and the boxes (original pixels, xyxy).

    Raises:
        ValueError: ``{source}: line {n}, field '{name}': {problem}`` for every bad row.

    Examples:
        >>> rows = [(2, dict(image_id='a', rad_id='R8', class_name='Nodule/Mass',
        ...                  x_min='1', y_min='2', x_max='5', y_max='9')),
        ...         (3, dict(image_id='b', rad_id='R9', class_name='No finding',
        ...                  x_min='', y_min='', x_max='', y_max=''))]
        >>> lab = parse_vindr_rows(rows, 'physionet')
        >>> lab.raters, lab.boxes[0].box
        ({'a': ['R8'], 'b': ['R9']}, (1.0, 2.0, 5.0, 9.0))
    """
    if fmt not in ('kaggle', 'physionet'):
        raise ValueError(f"fmt must be 'kaggle' or 'physionet', got {fmt!r}")
    if unknown_classes not in UNKNOWN_CLASS_MODES:
        raise ValueError(
            f'unknown_classes must be one of {UNKNOWN_CLASS_MODES}, got {unknown_classes!r}'
        )
    canonical = _canonical_classes()
    classes = list(VINDR_CLASSES)
    raters: dict[str, list[str]] = {}
    boxes: list[VindrBox] = []
    repairs: collections.Counter = collections.Counter()
    dropped: collections.Counter = collections.Counter()
    # (image, rater) -> line of the rater's first 'No finding' row / first finding row.
    no_finding_line: dict[tuple[str, str], int] = {}
    finding_line: dict[tuple[str, str], int] = {}

    def err(line: int, fld: str, msg: str) -> ValueError:
        return ValueError(f"{source}: line {line}, field '{fld}': {msg}")

    for line, row in rows:
        image_id = (row.get('image_id') or '').strip()
        if not image_id:
            raise err(line, 'image_id', 'empty image id')
        problem = _file_name_problem(image_id)
        if problem:
            raise err(
                line,
                'image_id',
                f'{image_id!r} cannot be used as a file name ({problem}); the converter reads '
                '<dicom-dir>/<image_id>.dicom and writes images/<split>/<image_id>.png, '
                "so an id must be a plain name such as '9a5094b2563a1ef3ff50dc5c7ff71345'",
            )
        rad_id = '' if gold else (row.get('rad_id') or '').strip()
        if not gold and not rad_id:
            raise err(line, 'rad_id', 'empty radiologist id')
        raw_name = (row.get('class_name') or '').strip()
        if not raw_name:
            raise err(line, 'class_name', 'empty class name')
        name = canonical.get(raw_name.lower())
        if fmt == 'kaggle':
            cid_text = (row.get('class_id') or '').strip()
            try:
                cid_float = float(cid_text)
            except ValueError:
                raise err(line, 'class_id', f'not an integer: {cid_text!r}') from None
            # 3.9 must not become 3, and int(inf) would raise OverflowError.
            if not math.isfinite(cid_float) or cid_float != int(cid_float):
                raise err(line, 'class_id', f'not an integer: {cid_text!r}')
            cid = int(cid_float)
            expected = (
                NO_FINDING
                if cid == NO_FINDING_ID
                else (VINDR_CLASSES[cid] if 0 <= cid < len(VINDR_CLASSES) else None)
            )
            if expected is None:
                raise err(line, 'class_id', f'{cid} is outside 0..14')
            if name != expected:
                raise err(
                    line,
                    'class_id',
                    f'class_id {cid} is {expected!r} but class_name is {raw_name!r}',
                )
        raters.setdefault(image_id, [])
        if rad_id not in raters[image_id] and not gold:
            raters[image_id].append(rad_id)
        try:
            coords = [_parse_coord(row.get(c)) for c in _COORDS]
        except ValueError:
            bad = next(c for c in _COORDS if not _is_float_or_missing(row.get(c)))
            raise err(line, bad, f'not a number: {row.get(bad)!r}') from None
        if name == NO_FINDING:
            present = [c for c, v in zip(_COORDS, coords) if v is not None]
            if present:
                raise err(
                    line,
                    present[0],
                    f"'No finding' row must have an empty box, got {[row.get(c) for c in _COORDS]}",
                )
            no_finding_line.setdefault((image_id, rad_id), line)
            continue
        if name is None:
            if unknown_classes == 'error':
                raise err(
                    line,
                    'class_name',
                    f'{raw_name!r} is not one of the 14 VinDr-CXR findings '
                    f'{list(VINDR_CLASSES)} or {NO_FINDING!r}; pass '
                    "unknown_classes='drop' (--unknown-classes drop) to skip such rows "
                    "(counted) or 'keep' to add them as extra categories",
                )
            if unknown_classes == 'drop':
                dropped[raw_name] += 1
                logger.debug(
                    '%s: line %d: dropped finding %r (not among the 14 classes)',
                    source,
                    line,
                    raw_name,
                )
                continue
            name = raw_name
            if name not in classes:
                classes.append(name)
        for c, v in zip(_COORDS, coords):
            if v is None:
                raise err(line, c, f'missing coordinate for finding {name!r}')
            if not math.isfinite(v):
                raise err(line, c, f'non-finite coordinate {row.get(c)!r}')
        x1, y1, x2, y2 = coords
        for lo, hi, a, b in ((x1, x2, 'x_min', 'x_max'), (y1, y2, 'y_min', 'y_max')):
            if hi < lo:
                if not repair:
                    raise err(line, b, f'{b}={hi:g} < {a}={lo:g} (pass --repair to swap)')
                repairs[f'swapped_{a[0]}'] += 1
                logger.debug('%s: line %d: swapped %s/%s', source, line, a, b)
            elif hi == lo:
                raise err(line, b, f'zero-size box: {b} == {a} == {hi:g}')
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        boxes.append(VindrBox(image_id, rad_id, name, box, line))
        finding_line.setdefault((image_id, rad_id), line)
    if not gold:
        _check_no_finding_with_boxes(no_finding_line, finding_line, source, repair, repairs)
    # Keep the 14 in class_id order, then extra categories in sorted order (deterministic).
    classes = list(VINDR_CLASSES) + sorted(set(classes) - set(VINDR_CLASSES))
    if dropped:
        logger.info(
            '%s: dropped %d finding rows outside the 14 classes: %s',
            source,
            sum(dropped.values()),
            dict(dropped),
        )
    return VindrLabels(raters, boxes, classes, source, fmt, repairs, dropped)


def _file_name_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name a file inside the output folder (None if it can)."""
    if image_id in ('.', '..'):
        return 'a relative path component'
    bad = sorted({c for c in image_id if c in '/\\:' or ord(c) < 32 or ord(c) == 127})
    if bad:
        return f'contains path separator or control character(s) {bad}'
    return None


def _check_no_finding_with_boxes(
    no_finding_line: Mapping[tuple[str, str], int],
    finding_line: Mapping[tuple[str, str], int],
    source: str,
    repair: bool,
    repairs: collections.Counter,
) -> None:
    """A radiologist who says 'No finding' on an image must not also draw a box there.

    With ``repair`` the boxes are kept (the 'No finding' row only recorded the reading,
    which the boxes record too) and each such (image, radiologist) is counted.
    """
    both = sorted(set(no_finding_line) & set(finding_line), key=lambda k: no_finding_line[k])
    for image_id, rad_id in both:
        if not repair:
            raise ValueError(
                f"{source}: line {no_finding_line[image_id, rad_id]}, field 'class_name': "
                f"radiologist {rad_id!r} gives 'No finding' for image {image_id!r} but also "
                f'a finding on line {finding_line[image_id, rad_id]} (pass --repair to keep '
                "the findings and ignore the 'No finding' row, counted)"
            )
        repairs['no_finding_with_boxes'] += 1
        logger.debug(
            "%s: line %d: 'No finding' of %s on %s ignored: it has findings (line %d)",
            source,
            no_finding_line[image_id, rad_id],
            rad_id,
            image_id,
            finding_line[image_id, rad_id],
        )


def _is_float_or_missing(value: str | None) -> bool:
    try:
        _parse_coord(value)
    except ValueError:
        return False
    return True


def read_vindr_csv(
    path: str | os.PathLike, fmt: str = 'auto', *, gold: bool = False, **options: Any
) -> VindrLabels:
    """Read a Kaggle or PhysioNet VinDr-CXR label CSV.

    Args:
        path (str | os.PathLike): the CSV file.
        fmt (str): ``'auto'`` (from the header: ``class_id`` -> Kaggle), ``'kaggle'`` or
            ``'physionet'``. Defaults to 'auto'.
        gold (bool): consensus (test) file; ``rad_id`` optional and ignored. Defaults to
            False.
        **options: ``repair`` and ``unknown_classes`` of :func:`parse_vindr_rows`.

    Returns:
        VindrLabels: the parsed labels.

    Raises:
        ValueError: missing file, empty file, missing columns, or a bad row (file, line,
            field).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise ValueError(f'{source}: label CSV not found')
    with io.StringIO(_read_utf8(source), newline='') as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f'{source}: empty file (no header line)')
        cols = [c.strip() for c in reader.fieldnames]
        reader.fieldnames = cols
        if fmt == 'auto':
            fmt = 'kaggle' if 'class_id' in cols else 'physionet'
        _check_columns(cols, fmt, source, need_rad=not gold)
        if gold and fmt == 'kaggle':
            # Kaggle published only the training labels: one row per radiologist's box.
            raise ValueError(
                f'{source}: line 1 (header): a Kaggle VinBigData CSV (class_id column) holds '
                "individual radiologists' boxes, not a consensus, so it cannot be a gold "
                '--split test file (its boxes would become the truth); use PhysioNet '
                'annotations_test.csv for the test split, or --split train'
            )

        def rows():
            for row in reader:
                if None in row:  # more fields than header columns
                    raise ValueError(
                        f'{source}: line {reader.line_num}: {len(cols)} columns in '
                        f'the header but more fields in this row: {row[None]!r}'
                    )
                yield reader.line_num, row

        labels = parse_vindr_rows(rows(), fmt, source, gold=gold, **options)
    if not labels.raters:
        raise ValueError(f'{source}: no data rows')
    return labels


def _read_utf8(source: str) -> str:
    """The text of a UTF-8 file (a leading BOM dropped); not UTF-8: an error naming the
    file and the line of the first bad byte."""
    with open(source, 'rb') as f:
        data = f.read()
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b'\n') + 1
        raise ValueError(
            f'{source}: line {line}: not UTF-8 text (byte {data[e.start : e.start + 1]!r} at '
            f'offset {e.start}); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)'
        ) from None


def read_size_table(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Image sizes from a CSV: ``image_id`` with ``width,height``, ``image_width,
    image_height``, or ``dim0,dim1`` (dim0 = rows = height, as in the popular Kaggle
    ``train_meta.csv``).

    Returns:
        dict[str, tuple[int, int]]: image id -> (width, height) in original pixels.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise ValueError(f'{source}: size table not found')
    sizes: dict[str, tuple[int, int]] = {}
    with io.StringIO(_read_utf8(source), newline='') as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = cols
        for wk, hk in (('width', 'height'), ('image_width', 'image_height'), ('dim1', 'dim0')):
            if wk in cols and hk in cols and 'image_id' in cols:
                break
        else:
            raise ValueError(
                f'{source}: line 1 (header): need image_id and width,height (or '
                f'image_width,image_height or dim0,dim1); got {cols}'
            )
        for row in reader:
            line = reader.line_num
            vals = []
            for k in (wk, hk):
                try:
                    v = float(row[k])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{source}: line {line}, field '{k}': not a number: {row[k]!r}"
                    ) from None
                if not (math.isfinite(v) and v >= 1 and v == int(v)):
                    raise ValueError(
                        f"{source}: line {line}, field '{k}': must be a positive "
                        f'integer, got {row[k]!r}'
                    )
                vals.append(int(v))
            image_id = row['image_id'].strip()
            if image_id in sizes and sizes[image_id] != tuple(vals):
                raise ValueError(
                    f"{source}: line {line}, field 'image_id': {image_id} listed "
                    f'twice with different sizes'
                )
            sizes[image_id] = (vals[0], vals[1])
    return sizes
