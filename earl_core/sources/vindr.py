"""VinDr-CXR label CSVs -> multi-rater / gold COCO (pure python + numpy, no pandas).

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
  y_min/y_max given in the wrong order, and clipping a box that extends outside the image.
  Rows of findings outside the 14 categories (PhysioNet has 22 local labels) are an error
  unless ``unknown_classes`` is ``'drop'`` (counted, logged; the rater still counts as a
  reader) or ``'keep'`` (extra categories after the 14).
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

import numpy as np

__all__ = [
    'KAGGLE_COLUMNS',
    'NO_FINDING',
    'PHYSIONET_COLUMNS',
    'VINDR_CLASSES',
    'VindrBox',
    'VindrLabels',
    'build_coco',
    'detect_format',
    'filter_raters',
    'parse_vindr_rows',
    'read_size_table',
    'read_vindr_csv',
    'resized_size',
    'split_train_val',
    'to_uint8',
]

logger = logging.getLogger(__name__)

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
        rad_id (str): radiologist id (``'R8'``); ``''`` in a consensus file without it.
        class_name (str): canonical category name.
        box (tuple[float, float, float, float]): xyxy in original pixels.
        line (int): line of the CSV file (header = line 1), for messages.
    """

    image_id: str
    rad_id: str
    class_name: str
    box: tuple[float, float, float, float]
    line: int


@dataclass
class VindrLabels:
    """Parsed label CSV.

    Args:
        readers (dict[str, list[str]]): image id -> radiologists with a row for it, in order
            of first appearance ('No finding' rows included).
        boxes (list[VindrBox]): every finding box, in file order.
        classes (list[str]): category names in label order (the 14, then kept extras).
        source (str): file name, for messages.
        fmt (str): ``'kaggle'`` or ``'physionet'``.
        repairs (collections.Counter): repairs applied, by kind.
        dropped (collections.Counter): rows dropped by choice, by reason (class name).
    """

    readers: dict[str, list[str]]
    boxes: list[VindrBox]
    classes: list[str]
    source: str = '<rows>'
    fmt: str = 'kaggle'
    repairs: collections.Counter = field(default_factory=collections.Counter)
    dropped: collections.Counter = field(default_factory=collections.Counter)

    @property
    def image_ids(self) -> list[str]:
        """Sorted image ids."""
        return sorted(self.readers)

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
        VindrLabels: readers per image and the boxes (original pixels, xyxy).

    Raises:
        ValueError: ``{source}: line {n}, field '{name}': {problem}`` for every bad row.

    Examples:
        >>> rows = [(2, dict(image_id='a', rad_id='R8', class_name='Nodule/Mass',
        ...                  x_min='1', y_min='2', x_max='5', y_max='9')),
        ...         (3, dict(image_id='b', rad_id='R9', class_name='No finding',
        ...                  x_min='', y_min='', x_max='', y_max=''))]
        >>> lab = parse_vindr_rows(rows, 'physionet')
        >>> lab.readers, lab.boxes[0].box
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
    readers: dict[str, list[str]] = {}
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
        readers.setdefault(image_id, [])
        if rad_id not in readers[image_id] and not gold:
            readers[image_id].append(rad_id)
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
    return VindrLabels(
        readers=readers,
        boxes=boxes,
        classes=classes,
        source=source,
        fmt=fmt,
        repairs=repairs,
        dropped=dropped,
    )


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
    path: str | os.PathLike,
    fmt: str = 'auto',
    *,
    gold: bool = False,
    repair: bool = False,
    unknown_classes: str = 'error',
) -> VindrLabels:
    """Read a Kaggle or PhysioNet VinDr-CXR label CSV.

    Args:
        path (str | os.PathLike): the CSV file.
        fmt (str): ``'auto'`` (from the header: ``class_id`` -> Kaggle), ``'kaggle'`` or
            ``'physionet'``. Defaults to 'auto'.
        gold (bool): consensus (test) file; ``rad_id`` optional and ignored. Defaults to
            False.
        repair (bool): see :func:`parse_vindr_rows`. Defaults to False.
        unknown_classes (str): see :func:`parse_vindr_rows`. Defaults to 'error'.

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

        labels = parse_vindr_rows(
            rows(), fmt, source, gold=gold, repair=repair, unknown_classes=unknown_classes
        )
    if not labels.readers:
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


def filter_raters(
    labels: VindrLabels, raters: Sequence[str], match: str = 'all'
) -> tuple[VindrLabels, dict[str, int]]:
    """Keep only the given radiologists (Rads-VinDr-CXR: R8, R9, R10; paper 4.1.3).

    Args:
        labels (VindrLabels): parsed training labels.
        raters (Sequence[str]): radiologist ids to keep.
        match (str): ``'all'`` keeps the images read by every listed radiologist (with 3
            readers per image and 3 ids, the images read only by them: the paper's
            sub-dataset); ``'any'`` keeps images read by at least one of them. Other
            radiologists' rows are removed either way. Defaults to 'all'.

    Returns:
        tuple: the filtered labels and counts (``images_kept``, ``images_removed``,
        ``boxes_kept``, ``boxes_removed``) to report, since boxes are removed on purpose.
    """
    if match not in ('all', 'any'):
        raise ValueError(f"match must be 'all' or 'any', got {match!r}")
    keep = [str(r) for r in raters]
    if not keep:
        raise ValueError('filter_raters needs at least one rater id')
    unknown = sorted(set(keep) - {r for rs in labels.readers.values() for r in rs})
    if unknown:
        raise ValueError(f'{labels.source}: rater(s) {unknown} never appear in the file')
    wanted = set(keep)
    readers: dict[str, list[str]] = {}
    for image_id, rs in labels.readers.items():
        present = [r for r in rs if r in wanted]
        ok = set(present) == wanted if match == 'all' else bool(present)
        if ok:
            readers[image_id] = present
    boxes = [b for b in labels.boxes if b.image_id in readers and b.rad_id in wanted]
    stats = dict(
        images_kept=len(readers),
        images_removed=len(labels.readers) - len(readers),
        boxes_kept=len(boxes),
        boxes_removed=len(labels.boxes) - len(boxes),
    )
    out = VindrLabels(
        readers=readers,
        boxes=boxes,
        classes=labels.classes,
        source=labels.source,
        fmt=labels.fmt,
        repairs=labels.repairs,
        dropped=labels.dropped,
    )
    return out, stats


def split_train_val(
    labels: VindrLabels, val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Seeded split of the images, stratified by positive (has a box) / negative.

    Args:
        labels (VindrLabels): parsed labels.
        val_fraction (float): fraction of images for validation, in [0, 1).
        seed (int): split seed.

    Returns:
        tuple[list[str], list[str]]: sorted train and val image ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must lie in [0, 1), got {val_fraction}')
    rng = np.random.default_rng(seed)
    pos = labels.positives()
    groups = (
        sorted(i for i in labels.readers if i in pos),
        sorted(i for i in labels.readers if i not in pos),
    )
    # Round half up (not to even) the total, then give the positives their share of it.
    n_val = int(math.floor(val_fraction * len(labels.readers) + 0.5))
    n_pos = min(n_val, int(math.floor(val_fraction * len(groups[0]) + 0.5)))
    train: list[str] = []
    val: list[str] = []
    for group, n in zip(groups, (n_pos, n_val - n_pos)):
        order = rng.permutation(len(group))
        val += [group[i] for i in order[:n]]
        train += [group[i] for i in order[n:]]
    return sorted(train), sorted(val)


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


def resized_size(width: int, height: int, longest: int | None) -> tuple[int, int]:
    """Size after resizing the longest side to ``longest`` (None: unchanged).

    Examples:
        >>> resized_size(2000, 2500, 1024)
        (819, 1024)
    """
    if longest is None:
        return int(width), int(height)
    if longest < 1:
        raise ValueError(f'resize target must be >= 1 pixel, got {longest}')
    s = longest / max(width, height)
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def build_coco(
    labels: VindrLabels,
    sizes: Mapping[str, tuple[int, int]],
    image_ids: Sequence[str] | None = None,
    *,
    resized: Mapping[str, tuple[int, int]] | None = None,
    gold: bool = False,
    repair: bool = False,
    id_of: Mapping[str, int] | None = None,
    info: Mapping | None = None,
) -> tuple[dict, collections.Counter]:
    """Multi-rater (or gold) COCO dict for ``image_ids``.

    Boxes are checked against the original image size (a box outside the image is an
    error naming the CSV line, or with ``repair`` clipped and counted), then scaled by the
    per-axis resize factor.

    Args:
        labels (VindrLabels): parsed labels.
        sizes (Mapping[str, tuple[int, int]]): image id -> original (width, height).
        image_ids (Sequence[str] | None): images to include. Defaults to all, sorted.
        resized (Mapping[str, tuple[int, int]] | None): image id -> written (width,
            height); None = original size.
        gold (bool): plain COCO (no ``annotators``/``annotator_id``). Defaults to False.
        repair (bool): clip boxes extending outside the image. Defaults to False.
        id_of (Mapping[str, int] | None): image id -> COCO image id. Defaults to
            1-based position in the sorted ids of ``labels`` (stable across train/val).
        info (Mapping | None): COCO ``info`` entry.

    Returns:
        tuple: the COCO dict and the repair counts.
    """
    ids = sorted(labels.readers) if image_ids is None else list(image_ids)
    if id_of is None:
        id_of = {k: i + 1 for i, k in enumerate(sorted(labels.readers))}
    missing = [i for i in ids if i not in sizes]
    if missing:
        raise ValueError(
            f'{labels.source}: no image size for {len(missing)} image(s), e.g. '
            f'{missing[:3]} (missing DICOM or size-table row)'
        )
    cat_id = {name: i + 1 for i, name in enumerate(labels.classes)}
    by_image: dict[str, list[VindrBox]] = collections.defaultdict(list)
    for b in labels.boxes:
        by_image[b.image_id].append(b)
    repairs: collections.Counter = collections.Counter()
    images, anns = [], []
    for image_id in ids:
        w0, h0 = sizes[image_id]
        w1, h1 = (resized or {}).get(image_id, (w0, h0))
        sx, sy = w1 / w0, h1 / h0
        rec = dict(
            id=id_of[image_id],
            file_name=f'{image_id}.png',
            width=int(w1),
            height=int(h1),
            orig_width=int(w0),
            orig_height=int(h0),
            vindr_id=image_id,
        )
        if not gold:
            rec['annotators'] = list(labels.readers[image_id])
        images.append(rec)
        for b in by_image.get(image_id, []):
            x1, y1, x2, y2 = b.box
            c = (
                min(max(x1, 0.0), w0),
                min(max(y1, 0.0), h0),
                min(max(x2, 0.0), w0),
                min(max(y2, 0.0), h0),
            )
            if c != (x1, y1, x2, y2):
                where = f"{labels.source}: line {b.line}, field '{_first_outside(b.box, w0, h0)}'"
                if c[2] <= c[0] or c[3] <= c[1]:
                    raise ValueError(
                        f'{where}: box {list(b.box)} lies outside the {w0}x{h0} image {image_id}'
                    )
                if not repair:
                    raise ValueError(
                        f'{where}: box {list(b.box)} extends outside the '
                        f'{w0}x{h0} image {image_id} (pass --repair to clip)'
                    )
                repairs['clipped_to_image'] += 1
                logger.debug('%s: clipped %s to the image', where, list(b.box))
            bx = [round(c[0] * sx, 3), round(c[1] * sy, 3)]
            bx += [round(c[2] * sx - bx[0], 3), round(c[3] * sy - bx[1], 3)]
            if not (bx[2] > 0 and bx[3] > 0):  # the loader would refuse it: say which line
                raise ValueError(
                    f'{labels.source}: line {b.line}, field '
                    f"'{'x_max' if bx[2] <= 0 else 'y_max'}': box {list(b.box)} is "
                    f'narrower than 0.001 px once written (image {image_id}, scale '
                    f'{sx:g} x {sy:g}); it cannot be stored'
                )
            ann = dict(
                id=len(anns) + 1,
                image_id=id_of[image_id],
                category_id=cat_id[b.class_name],
                bbox=bx,
                area=round(bx[2] * bx[3], 3),
                iscrowd=0,
            )
            if not gold:
                ann['annotator_id'] = b.rad_id
            anns.append(ann)
    categories = [dict(id=cat_id[n], name=n, supercategory='finding') for n in labels.classes]
    coco = dict(images=images, annotations=anns, categories=categories)
    if info is not None:
        coco['info'] = dict(info)
    if repairs:
        logger.info('%s: repairs: %s', labels.source, dict(repairs))
    return coco, repairs


def _first_outside(box: tuple[float, float, float, float], w: float, h: float) -> str:
    x1, y1, x2, y2 = box
    for name, bad in (
        ('x_min', x1 < 0 or x1 > w),
        ('y_min', y1 < 0 or y1 > h),
        ('x_max', x2 > w or x2 < 0),
        ('y_max', y2 > h or y2 < 0),
    ):
        if bad:
            return name
    return 'x_min'


def to_uint8(pixels: np.ndarray, photometric: str = 'MONOCHROME2') -> np.ndarray:
    """Scale a grey image (after the modality and VOI LUTs) to 8 bits, bright = dense.

    MONOCHROME1 images (low values displayed white) are inverted so that every output has
    MONOCHROME2 polarity; then the image is min-max scaled to 0..255.

    Args:
        pixels (np.ndarray): (H, W) numeric.
        photometric (str): DICOM PhotometricInterpretation. Defaults to 'MONOCHROME2'.

    Returns:
        np.ndarray: (H, W) uint8 (all zeros for a constant image).

    Examples:
        >>> to_uint8(np.array([[0, 10], [20, 40]]), 'MONOCHROME1').tolist()
        [[255, 191], [128, 0]]
    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f'expected a single-frame grey image (H, W), got shape {a.shape}')
    pi = str(photometric).strip().upper()
    if pi not in ('MONOCHROME1', 'MONOCHROME2'):
        raise ValueError(
            f'PhotometricInterpretation {photometric!r} is not a grey X-ray '
            '(MONOCHROME1 / MONOCHROME2)'
        )
    if pi == 'MONOCHROME1':
        a = a.max() - a
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
