"""The per-record rules of a multi-rater COCO file (what ``docs/data_format.md`` tabulates).

:func:`~earl_core.io.coco.load_multirater_coco` walks the file and calls these checks on
its categories, image records, ids, rater ids and boxes. Each problem is a
:class:`ValueError` naming the file, the record and the field (:meth:`Context.error`), or -
where the fix is unambiguous and keeps every box - a repair counted and logged on the logger
``earl_core.io.coco`` (:meth:`Context.fix`).
"""

from __future__ import annotations

import collections
import logging
import math
import posixpath
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    'DEFAULT_RATER',
    'Context',
    'IdTable',
    'check_bbox',
    'check_categories',
    'check_images',
    'check_prefused_fields',
    'checked_rater_id',
    'is_id',
    'one_record_per_file',
    'rater_renames',
    'register_record',
]

# The reader's logger: repairs are logged where the file is read (docs/data_format.md).
logger = logging.getLogger('earl_core.io.coco')

#: Rater id given to every box of a plain COCO file (no ``annotators``/``annotator_id``).
DEFAULT_RATER = 'default'


class Context:
    """Formats error messages and records repairs for one file."""

    def __init__(self, source: str, repair: bool) -> None:
        self.source = source
        self.repair = repair
        self.repairs: collections.Counter = collections.Counter()

    def error(self, record: str, fld: str | None, msg: str) -> ValueError:
        where = f'{self.source}: {record}'
        if fld is not None:
            where += f", field '{fld}'"
        return ValueError(f'{where}: {msg}')

    def fix(self, kind: str, record: str, fld: str, msg: str) -> None:
        self.repairs[kind] += 1
        logger.debug('%s: %s, field %r: repaired (%s): %s', self.source, record, fld, kind, msg)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _as_float(x: Any) -> float:
    """A number as float: NaN for a non-number, +-inf for an int too large for a float (a
    400-digit JSON integer), so that one finiteness check refuses all three."""
    if not _is_number(x):
        return math.nan
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _short(x: Any, limit: int = 80) -> str:
    """``repr(x)`` cut to ``limit`` characters (a 400-digit number stays readable)."""
    text = repr(x)
    return text if len(text) <= limit else f'{text[: limit - 20]}...{text[-12:]}'


def is_id(x: Any) -> bool:
    return (isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))) or (
        isinstance(x, str)
    )


def _clean_rater_id(rid: str) -> str:
    """``rid`` in NFKC with Unicode format characters (Cf: zero-width space, BOM, soft
    hyphen, ...) removed and surrounding whitespace stripped: how it reads on screen."""
    text = unicodedata.normalize('NFKC', rid)
    return ''.join(ch for ch in text if unicodedata.category(ch) != 'Cf').strip()


def _rater_id(x: Any) -> str | None:
    """Normalise a rater id to str; None if it is not a usable id (also an id that is only
    whitespace or invisible characters)."""
    if isinstance(x, (bool, np.bool_)) or x is None:
        return None
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str) and _clean_rater_id(x) != '':
        return x
    return None


def checked_rater_id(
    ctx: Context, rec: str, fld: str, raw: Any, renames: Mapping[str, str]
) -> tuple[str, bool]:
    """A rater id field as str, renames applied (and counted); and whether it was renamed."""
    rid = _rater_id(raw)
    if rid is None:
        raise ctx.error(rec, fld, f'rater id must be a non-empty str or int, got {raw!r}')
    if rid not in renames:
        return rid, False
    ctx.fix('rater_id_normalized', rec, fld, f'{rid!r} read as {renames[rid]!r}')
    return renames[rid], True


def _rater_key(rid: str) -> str:
    """What two spellings of one rater id share: they differ only by case, surrounding
    space, invisible format characters or Unicode form (NFC/NFD, full-width/half-width)."""
    return _clean_rater_id(rid).casefold()


def rater_renames(ctx: Context, imgs: Any, anns: list, normalize: bool) -> dict[str, str]:
    """Rater ids that collide after normalisation -> the spelling to use instead.

    Ids that differ only by case, surrounding whitespace, invisible format characters or
    Unicode form (``'R1'``, ``'r1'``, ``'R1 '``, ``'R1\\u200b'``, full-width ``'Ｒ1'``) are
    almost surely one person; read as written they would become extra raters (through the
    ``rater_added_to_image`` repair) and change R and c = T/R. Without ``normalize`` that is
    an error naming each spelling and where it first appears; with it each group becomes
    its first spelling in NFKC, format characters removed, stripped.
    """
    where: dict[str, str] = {}  # spelling -> record and field of its first appearance
    groups: dict[str, list[str]] = {}  # key -> spellings, in order of first appearance

    def see(raw: Any, record: str) -> None:
        rid = _rater_id(raw)
        if rid is not None and rid not in where:
            where[rid] = record
            groups.setdefault(_rater_key(rid), []).append(rid)

    for i, im in enumerate(imgs if isinstance(imgs, list) else []):
        if isinstance(im, Mapping) and isinstance(im.get('annotators'), (list, tuple)):
            for j, r in enumerate(im['annotators']):
                see(r, f"image id={im.get('id')!r} (index {i}), field 'annotators[{j}]'")
    for i, a in enumerate(anns):
        if 'annotator_id' in a:
            see(
                a['annotator_id'],
                f"annotation id={a.get('id')!r} (index {i}), field 'annotator_id'",
            )
    clashes = [g for g in groups.values() if len(g) > 1]
    if not clashes:
        return {}
    if not normalize:
        shown = '; '.join(' vs '.join(f'{r!r} ({where[r]})' for r in g) for g in clashes[:5])
        more = f' (and {len(clashes) - 5} more groups)' if len(clashes) > 5 else ''
        raise ValueError(
            f'{ctx.source}: rater ids that differ only by case, surrounding whitespace, '
            'invisible format characters (zero-width space, ...) or Unicode normal form '
            f'would count as different raters (NFKC): {shown}{more}. Fix the '
            'ids, or load with normalize_rater_ids=True (tools: --normalize-rater-ids) to '
            'merge each group into its first spelling (counted as rater_id_normalized)'
        )
    renames = {}
    for g in clashes:
        canonical = _clean_rater_id(g[0])
        renames.update({r: canonical for r in g if r != canonical})
    return renames


def check_categories(
    ctx: Context, cats: Any, classes: Sequence[str] | None
) -> tuple[list[dict], dict[Any, int], set[Any]]:
    """Return (categories in label order, cat id -> label, ids of categories not in classes)."""
    if not isinstance(cats, list):
        raise ctx.error('top level', 'categories', f'must be a list, got {type(cats).__name__}')
    if len(cats) == 0:
        raise ctx.error('top level', 'categories', 'empty: no category defined')
    by_id: dict[Any, dict] = {}
    names: dict[str, Any] = {}
    id_text: dict[str, Any] = {}  # str(id) -> id: 1 and '1' in one file is an error
    for i, c in enumerate(cats):
        rec = f'category index {i}'
        if not isinstance(c, Mapping):
            raise ctx.error(rec, None, f'must be an object, got {type(c).__name__}')
        for key in ('id', 'name'):
            if key not in c:
                raise ctx.error(rec, key, 'missing')
        if not is_id(c['id']):
            raise ctx.error(rec, 'id', f'must be an int or str, got {c["id"]!r}')
        rec = f'category id={c["id"]!r} (index {i})'
        if c['id'] in by_id:
            raise ctx.error(rec, 'id', 'duplicate category id')
        twin = id_text.setdefault(str(c['id']), c['id'])
        if twin is not c['id']:
            raise ctx.error(
                rec,
                'id',
                f'category ids {twin!r} and {c["id"]!r} differ only by type (int vs str): use '
                'one type for all ids',
            )
        name = str(c['name'])
        if name in names:
            raise ctx.error(rec, 'name', f'duplicate category name {name!r}')
        by_id[c['id']] = dict(c)
        names[name] = c['id']
    if classes is None:
        ordered = list(by_id.values())
        return ordered, {c['id']: i for i, c in enumerate(ordered)}, set()
    classes = [str(n) for n in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f'{ctx.source}: duplicate names in classes={classes!r}')
    missing = [n for n in classes if n not in names]
    if missing:
        raise ctx.error(
            'top level',
            'categories',
            f'classes {missing!r} requested but not among the file categories {list(names)!r}',
        )
    ordered = [by_id[names[n]] for n in classes]
    label_of = {c['id']: i for i, c in enumerate(ordered)}
    outside = set(by_id) - set(label_of)
    return ordered, label_of, outside


def register_record(
    ctx: Context, kind: str, i: int, record: Mapping, seen: dict, required: Sequence[str]
) -> str:
    """Check the ``id`` of record ``i`` (int or str, new in ``seen``, also as text; added to
    it) and that the ``required`` keys are present; return the record's name for messages.

    ``seen`` maps ``str(id)`` -> (record name, id) of the record holding it: ``1`` and ``"1"`` are
    two ids to Python but one to every tool that writes ids as text (CSV, file names), so
    both in one file is an error, not two records.
    """
    rid = record['id']
    if not is_id(rid):
        raise ctx.error(
            f'{kind} index {i}', 'id', f'must be an int or str (not bool or float), got {rid!r}'
        )
    rec = f'{kind} id={_short(rid)} (index {i})'
    other = seen.get(str(rid))
    if other is not None:
        if isinstance(other[1], str) == isinstance(rid, str):
            raise ctx.error(rec, 'id', f'duplicate {kind} id (also {other[0]})')
        raise ctx.error(
            rec,
            'id',
            f'clashes with {other[0]}: ids {other[1]!r} and {rid!r} differ only by type '
            '(int vs str); use one type for all ids',
        )
    seen[str(rid)] = (rec, rid)
    for key in required:
        if key not in record:
            raise ctx.error(rec, key, 'missing')
    return rec


class IdTable:
    """The ids of one kind of record (images, categories), for checking references to them.

    A reference must be an id of the same type: ``true`` or ``1.0`` is not image ``1``,
    although Python's ``True == 1 == 1.0`` would find it in a dict.
    """

    def __init__(self, kind: str, ids: Mapping[Any, Any]) -> None:
        self.kind = kind
        self.ids = ids
        self.by_text = {str(k): k for k in ids}

    def check(self, ctx: Context, rec: str, fld: str, value: Any) -> None:
        if not is_id(value):
            raise ctx.error(
                rec,
                fld,
                f'must be an int or str {self.kind} id (not bool or float), got {_short(value)}',
            )
        if value in self.ids:
            return
        hint = ''
        if str(value) in self.by_text:
            hint = (
                f' (there is {self.kind} id {self.by_text[str(value)]!r}: ids of another type '
                '(int vs str) are different ids)'
            )
        raise ctx.error(rec, fld, f'unknown {self.kind} id {_short(value)}{hint}')


def check_images(
    ctx: Context, imgs: Any, multi_rater: bool, renames: Mapping[str, str]
) -> list[dict]:
    if not isinstance(imgs, list):
        raise ctx.error('top level', 'images', f'must be a list, got {type(imgs).__name__}')
    if len(imgs) == 0:
        raise ctx.error('top level', 'images', 'empty dataset: no image')
    infos: list[dict] = []
    seen: dict[str, tuple[str, Any]] = {}
    for i, im in enumerate(imgs):
        rec = f'image index {i}'
        if not isinstance(im, Mapping):
            raise ctx.error(rec, None, f'must be an object, got {type(im).__name__}')
        if 'id' not in im:
            raise ctx.error(rec, 'id', 'missing')
        rec = register_record(ctx, 'image', i, im, seen, ('file_name', 'width', 'height'))
        if not isinstance(im['file_name'], str) or im['file_name'] == '':
            raise ctx.error(
                rec, 'file_name', f'must be a non-empty string, got {im["file_name"]!r}'
            )
        for key in ('width', 'height'):
            v = im[key]
            if not (math.isfinite(_as_float(v)) and v > 0):
                raise ctx.error(rec, key, f'must be a finite number > 0, got {_short(v)}')
        info = dict(im)
        if multi_rater:
            if 'annotators' not in im:
                raise ctx.error(
                    rec,
                    'annotators',
                    'missing: a multi-rater file must list, per image, the raters who read '
                    'it (an empty list means nobody read it)',
                )
            raw = im['annotators']
            if not isinstance(raw, (list, tuple)):
                raise ctx.error(rec, 'annotators', f'must be a list, got {raw!r}')
            raters: list[str] = []
            for j, r in enumerate(raw):
                rid, renamed = checked_rater_id(ctx, rec, f'annotators[{j}]', r, renames)
                if renamed and rid in raters:  # two spellings in one list: now one rater
                    continue
                if rid in raters:
                    if not ctx.repair:
                        raise ctx.error(rec, 'annotators', f'rater {rid!r} listed twice')
                    ctx.fix('duplicate_rater_in_image', rec, 'annotators', f'{rid!r} listed twice')
                    continue
                raters.append(rid)
            info['annotators'] = raters
        else:
            # One source (plain COCO, or a fused file) read every image, except an image
            # whose `raters_read` is [] (tools/fuse_annotations.py: nobody read it).
            read = im.get('raters_read')
            if read is not None and not isinstance(read, (list, tuple)):
                raise ctx.error(rec, 'raters_read', f'must be a list, got {read!r}')
            info['annotators'] = [] if read is not None and len(read) == 0 else [DEFAULT_RATER]
        infos.append(info)
    return infos


def one_record_per_file(
    ctx: Context, infos: list[dict], merge: bool
) -> tuple[list[dict], dict[Any, int]]:
    """Image records that name the same file -> one image, or an error.

    Per-rater exports often hold one image record per rater; read as they are, each record
    is an image read by one rater, so every box is fused alone (T = 1) and R = 1. Without
    ``merge`` a second record of a file (``file_name`` equal after ``normpath``) is an
    error naming both records; with it the record is merged into the first one (its
    ``annotators`` added, its boxes moved there; width and height must agree), counted as
    ``image_merged``.

    Returns:
        tuple[list[dict], dict]: the image infos kept, and image id -> index into them
        (a merged record's id -> the index of the image it joined).
    """
    kept: list[dict] = []
    names: list[str] = []  # per kept info, its record name
    index_of: dict[Any, int] = {}
    by_file: dict[str, int] = {}
    for i, info in enumerate(infos):
        rec = f'image id={_short(info["id"])} (index {i})'
        k = by_file.setdefault(posixpath.normpath(info['file_name']), len(kept))
        index_of[info['id']] = k
        if k == len(kept):
            kept.append(info)
            names.append(rec)
            continue
        host = kept[k]
        if not merge:
            raise ctx.error(
                rec,
                'file_name',
                f'{info["file_name"]!r} is also the file of {names[k]}: two records of one '
                'image are read as two images, each box fused alone (T = 1). List every '
                "rater who read it in one record's 'annotators', or load with "
                'merge_duplicate_images=True (tools: --merge-duplicate-images) to merge the '
                'records (counted as image_merged)',
            )
        for key in ('width', 'height'):
            if float(info[key]) != float(host[key]):
                raise ctx.error(
                    rec,
                    key,
                    f'{info[key]!r} differs from the {key} {host[key]!r} of {names[k]}, which '
                    f'names the same file {host["file_name"]!r}: cannot merge them',
                )
        have = set(host['annotators'])
        host['annotators'] += [r for r in info['annotators'] if r not in have]
        ctx.fix('image_merged', rec, 'file_name', f'merged into {names[k]} (same file)')
    return kept, index_of


#: The largest float32: a pre-fused ``score`` above it loads as c = inf (training holds c
#: as float32) and the loss turns NaN at the first iteration.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_prefused_fields(ctx: Context, rec: str, ann: Mapping) -> None:
    """``score`` (c: a finite float32 >= 0; c = T under ``confidence='agreement'``, so it
    may exceed 1), ``agreement`` (T) and ``num_raters`` (R): counts of raters, integers
    >= 0 (integral floats such as ``3.0`` pass; ``2.9`` would be truncated)."""
    if 'score' in ann:
        v = ann['score']
        f = _as_float(v)
        if not (math.isfinite(f) and 0 <= f <= _FLOAT32_MAX):
            raise ctx.error(
                rec,
                'score',
                f'the confidence c must be a finite number >= 0 (at most {_FLOAT32_MAX:.4g}, '
                f'the float32 range training uses), got {_short(v)}',
            )
    for key in ('agreement', 'num_raters'):
        if key not in ann:
            continue
        v = ann[key]
        f = _as_float(v)
        if not (math.isfinite(f) and f >= 0 and f == math.floor(f) and f < 2**31):
            raise ctx.error(
                rec, key, f'must be a whole number of raters >= 0 (an integer), got {_short(v)}'
            )


def check_bbox(ctx: Context, rec: str, bbox: Any, width: float, height: float) -> list[float]:
    """Validate a COCO xywh box; return it clipped to the image (xywh)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ctx.error(rec, 'bbox', f'must be a list [x, y, width, height], got {bbox!r}')
    for v in bbox:
        if not _is_number(v):
            raise ctx.error(
                rec, 'bbox', f'non-numeric coordinate {_short(v)} in {_short(list(bbox))}'
            )
        if not math.isfinite(_as_float(v)):
            raise ctx.error(
                rec,
                'bbox',
                f'non-finite coordinate (NaN/inf, or an integer too large for a float) in '
                f'{_short(list(bbox))}',
            )
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        # A negative size means x2 < x1 (or y2 < y1): most likely xyxy written where COCO
        # expects xywh. Guessing would silently move the box, so refuse.
        raise ctx.error(
            rec,
            'bbox',
            f'negative width/height in {list(bbox)!r} (x2 < x1 or y2 < y1); COCO boxes are '
            '[x, y, width, height] in pixels',
        )
    if w == 0 or h == 0:
        raise ctx.error(rec, 'bbox', f'zero-area box {list(bbox)!r}')
    x1, y1, x2, y2 = x, y, x + w, y + h
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        if cx2 <= cx1 or cy2 <= cy1:
            raise ctx.error(
                rec,
                'bbox',
                f'box {list(bbox)!r} lies entirely outside the {width:g}x{height:g} image',
            )
        if not ctx.repair:
            raise ctx.error(
                rec,
                'bbox',
                f'box {list(bbox)!r} extends outside the {width:g}x{height:g} image '
                '(load with repair=True to clip it)',
            )
        ctx.fix('clipped_to_image', rec, 'bbox', f'{list(bbox)!r} clipped to the image')
    if not (np.float32(cx2) > np.float32(cx1) and np.float32(cy2) > np.float32(cy1)):
        # Fusion and training hold boxes as float32 pixels: this box would have zero area
        # there, and WBF drops zero-area boxes.
        raise ctx.error(
            rec,
            'bbox',
            f'box {list(bbox)!r} is too thin to represent: its width or height vanishes '
            'in float32 pixel coordinates (zero area after x + width)',
        )
    return [cx1, cy1, cx2 - cx1, cy2 - cy1]
