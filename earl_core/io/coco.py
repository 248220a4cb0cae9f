"""Multi-rater data: its two in-memory shapes and its COCO file format (numpy, no mmdet).

The two data shapes of the core, defined here beside the reader that builds them:

* :class:`RaterBoxes`: every rater's boxes of one image, validated once when built, so that
  the aggregators, EM and the reports need no checks of their own.
* :class:`FusedBoxes`: the fused boxes of one image with their confidence c, agreement T,
  the R raters who read the image and the input boxes behind each fused box (what every
  aggregator returns).

Loading and validating multi-rater COCO files:

A multi-rater COCO file is a COCO detection file in which

* every annotation carries ``annotator_id`` (str or int; normalised to ``str``), the rater
  who drew the box, and
* every image carries ``annotators``, the list of raters who *read* the image, including
  those who drew nothing there. An image read by three raters with no box is a true
  negative, not an unlabelled image.

Pre-fused files (the output of a truth-inference step) may carry per-annotation ``score``
(the confidence c), ``agreement`` (T) and ``num_raters`` (R). Plain COCO files (no
``annotators`` anywhere, no ``annotator_id`` anywhere) load as a single rater called
``'default'``, so a gold file goes through the same code.

Every problem is either a :class:`ValueError` naming the file, the record (image id,
annotation id, list index) and the field, or - where the fix is unambiguous and keeps every
box - a counted *repair* (``MultiRaterCoco.repairs``) logged through :mod:`logging`. No box
is ever dropped. The table of rules lives in ``docs/data_format.md``.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import math
import os
import posixpath
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = [
    'DEFAULT_RATER',
    'FusedBoxes',
    'MultiRaterCoco',
    'RaterBoxes',
    'load_multirater_coco',
    'read_json',
]


@dataclass(frozen=True)
class RaterBoxes:
    """All raters' boxes on one image, checked and normalised when built.

    Args:
        boxes (np.ndarray): (N, 4) xyxy in pixels, finite, x1 <= x2 and y1 <= y2; stored
            as float64 (an empty input becomes (0, 4)).
        labels (np.ndarray): (N,) non-negative integral class indices (0-based); stored as
            int64.
        rater_ids (Sequence[str | int]): (N,) the rater who drew each box (ints are read as
            their str). Stored as integer codes, ``rater_index``, into ``raters`` (the one
            table of names), and as an object array of those names (each element the same
            str object as in ``raters``: 8 bytes per box, however long the id; a
            fixed-width unicode array would take N x the longest id x 4 bytes).
        raters (Sequence[str]): every rater who read the image, including those who drew
            nothing (an image read by 3 raters with no box is a true negative); distinct;
            stored as a tuple of str. Every id in ``rater_ids`` must be among them.
        width (float | None): image width in pixels (> 0), if known.
        height (float | None): image height in pixels (> 0), if known.
        image_id (int | str | None): identifier, used in error messages.

    Attributes:
        rater_index (np.ndarray): (N,) int64, the position in ``raters`` of the rater of
            each box: what the aggregators, EM and the reports compute with.

    Raises:
        ValueError: naming the image and the field, for any of the rules above.

    Examples:
        >>> im = RaterBoxes([[0, 0, 10, 10]], [2], ['a'], ['a', 'b'], image_id=7)
        >>> im.boxes.dtype, im.labels.tolist(), im.raters
        (dtype('float64'), [2], ('a', 'b'))
        >>> im.rater_index.tolist(), im.rater_ids.tolist()
        ([0], ['a'])
    """

    boxes: np.ndarray
    labels: np.ndarray
    rater_ids: np.ndarray
    raters: tuple[str, ...]
    width: float | None = None
    height: float | None = None
    image_id: int | str | None = None
    rater_index: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f'image {self.image_id!r}'
        set_ = object.__setattr__  # frozen: the normalised fields are set once, here
        set_(self, 'boxes', _check_boxes(self.boxes, where))
        n = self.boxes.shape[0]
        set_(self, 'labels', _check_labels(self.labels, n, where))
        raters = tuple(r if type(r) is str else str(r) for r in self.raters)
        if len(set(raters)) != len(raters):
            raise ValueError(f'{where}: duplicate rater in raters {raters}')
        set_(self, 'raters', raters)
        index = _rater_index(self.rater_ids, raters, n, where)
        set_(self, 'rater_index', index)
        # Object array of the names in `raters`: references, never a fixed-width copy.
        names = np.empty(len(raters), object)
        names[:] = raters
        set_(self, 'rater_ids', names[index])
        for name in ('width', 'height'):
            v = getattr(self, name)
            if v is not None:
                if not (isinstance(v, (int, float, np.number)) and 0 < float(v) < np.inf):
                    raise ValueError(f'{where}: {name} must be a finite number > 0, got {v!r}')
                set_(self, name, float(v))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _rater_index(rater_ids: Any, raters: tuple[str, ...], n: int, where: str) -> np.ndarray:
    """(N,) int64 position in ``raters`` of each id of ``rater_ids`` (ids compared as str).

    Never builds a fixed-width unicode array (N x the longest id x 4 bytes): the ids are
    held as objects and looked up one by one in a dict of the image's raters.
    """
    try:
        ids = rater_ids if isinstance(rater_ids, np.ndarray) else np.asarray(rater_ids, object)
    except ValueError as exc:
        raise ValueError(f'{where}: {n} boxes but rater_ids of no array shape: {exc}') from exc
    if ids.size == 0 and n == 0:
        return np.zeros(0, np.int64)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(f'{where}: {n} boxes but rater_ids of shape {ids.shape}')
    pos = {r: i for i, r in enumerate(raters)}
    flat = ids.tolist()
    index = np.fromiter(
        (pos.get(r if type(r) is str else str(r), -1) for r in flat), np.int64, count=n
    )
    if index.min() < 0:
        bad = str(flat[int(np.flatnonzero(index < 0)[0])])
        raise ValueError(f'{where}: rater {bad!r} drew a box but is not in raters {raters}')
    return index


def _check_boxes(boxes: Any, where: str) -> np.ndarray:
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{where}: boxes must be numbers: {exc}') from exc
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f'{where}: boxes must have shape (N, 4) xyxy, got {b.shape}')
    bad = ~np.isfinite(b).all(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{where}: box {i} has a NaN or infinite coordinate: {b[i].tolist()}')
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f'{where}: box {i} has x2 < x1 or y2 < y1 (boxes are xyxy): {b[i].tolist()}'
        )
    return b


def _check_labels(labels: Any, n: int, where: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.size == 0 and n == 0:
        return np.zeros(0, np.int64)
    if lab.shape != (n,):
        raise ValueError(f'{where}: {n} boxes but labels of shape {lab.shape}')
    if lab.dtype.kind == 'f':
        if not np.all(np.isfinite(lab) & (lab == np.floor(lab))):
            raise ValueError(f'{where}: labels must be non-negative integers, got {lab.tolist()}')
    elif lab.dtype.kind not in 'iu':
        raise ValueError(f'{where}: labels must be non-negative integers, got {lab.tolist()}')
    if lab.min() < 0:
        raise ValueError(f'{where}: labels must be non-negative integers, got {lab.tolist()}')
    return lab.astype(np.int64, copy=False)


# Zero-size arrays hold no data, so every empty result gets its own *view* of these (4x
# cheaper than allocating; empty images are most of a chest X-ray dataset).
_EMPTY_BOXES = np.zeros((0, 4), np.float32)
_EMPTY_F32 = np.zeros(0, np.float32)
_EMPTY_I64 = np.zeros(0, np.int64)


@dataclass
class FusedBoxes:
    """Fused boxes of one image with their confidence and agreement.

    Args:
        boxes (np.ndarray): (M, 4) float32 xyxy pixels.
        labels (np.ndarray): (M,) int64.
        confidence (np.ndarray): (M,) float32, the per-box confidence c used by EARL; its
            meaning is the aggregator's confidence mode: ``agreement`` = T,
            ``agreement_ratio`` = T / R, ``fused_score`` = the fused WBF score,
            ``posterior`` = EM's posterior probability of the label.
        agreement (np.ndarray): (M,) int64, T = number of distinct raters behind the box.
        num_raters (int): R, raters who read the image.
        members (list[np.ndarray]): per fused box, indices into the input boxes.
        member_raters (list[tuple[str, ...]]): per fused box, the distinct raters.
    """

    boxes: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    agreement: np.ndarray
    num_raters: int
    members: list[np.ndarray] = field(default_factory=list)
    member_raters: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def empty(cls, num_raters: int) -> FusedBoxes:
        """No fused box on an image read by ``num_raters`` raters (0: nobody read it)."""
        return cls(
            boxes=_EMPTY_BOXES.view(),
            labels=_EMPTY_I64.view(),
            confidence=_EMPTY_F32.view(),
            agreement=_EMPTY_I64.view(),
            num_raters=int(num_raters),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


logger = logging.getLogger(__name__)

#: Rater id given to every box of a plain COCO file (no ``annotators``/``annotator_id``).
DEFAULT_RATER = 'default'

PathOrDict = Union[str, os.PathLike, Mapping]


@dataclass
class MultiRaterCoco:
    """A validated multi-rater COCO file.

    ``images[i]``, ``image_infos[i]`` and ``annotations[i]`` describe the same image, in
    the file's image order; within an image, ``annotations[i][k]`` is the record of box
    ``images[i].boxes[k]`` (file order of the annotations).

    Args:
        images (list[RaterBoxes]): per image, all raters' boxes (xyxy pixels, float64,
            clipped to the image), 0-based labels and rater ids (str).
        categories (list[dict]): COCO category dicts; ``categories[label]`` is the category
            of label index ``label``.
        image_infos (list[dict]): per image, a copy of the COCO image dict with
            ``annotators`` normalised to a list of str (repairs applied).
        repairs (collections.Counter): number of repairs applied, by kind (see
            ``docs/data_format.md``). Empty when the file was clean.
        raw (dict): the parsed JSON as read (not modified).
        annotations (list[list[dict]]): per image, copies of its annotation dicts with
            repairs applied: ``bbox`` (xywh, clipped), ``annotator_id`` (str), plus the
            added key ``label`` (int, 0-based).
        source (str): the file path, or ``'<dict>'``; used in messages.
        multi_rater (bool): False for a plain COCO file read as one ``'default'`` rater.
        prefused (bool): True when annotations carry ``score`` (the confidence c).
    """

    images: list[RaterBoxes]
    categories: list[dict]
    image_infos: list[dict]
    repairs: collections.Counter
    raw: dict
    annotations: list[list[dict]] = field(default_factory=list)
    source: str = '<dict>'
    multi_rater: bool = True
    prefused: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        """Category names in label order."""
        return tuple(str(c['name']) for c in self.categories)

    @property
    def cat_ids(self) -> list[Any]:
        """COCO category ids in label order."""
        return [c['id'] for c in self.categories]

    def scores(self, index: int) -> np.ndarray | None:
        """Per-box ``score`` (float32, (N,)) of image ``index`` for pre-fused files."""
        if not self.prefused:
            return None
        return np.asarray([a['score'] for a in self.annotations[index]], dtype=np.float32)

    @property
    def num_boxes(self) -> int:
        """Total number of boxes over all images."""
        return int(sum(len(im.boxes) for im in self.images))


class _Context:
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


def _is_id(x: Any) -> bool:
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


def _checked_rater_id(
    ctx: _Context, rec: str, fld: str, raw: Any, renames: Mapping[str, str]
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


def _rater_renames(ctx: _Context, imgs: Any, anns: list, normalize: bool) -> dict[str, str]:
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


def _read(path_or_dict: PathOrDict) -> tuple[dict, str]:
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), '<dict>'
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(
            'load_multirater_coco expects a path or a dict, got '
            f'{type(path_or_dict).__name__}: {path_or_dict!r}'
        )
    source = os.fspath(path_or_dict)
    if not os.path.isfile(source):
        raise ValueError(f'{source}: annotation file not found')
    data = read_json(source)
    if not isinstance(data, dict):
        raise ValueError(
            f'{source}: top level must be a JSON object with images/annotations/categories, '
            f'got {type(data).__name__}'
        )
    return data, source


def read_json(path: str) -> Any:
    """``json.load`` of a UTF-8 file, every failure a one-line ValueError naming the file.

    Besides malformed JSON and bad encodings this covers what the parser raises on hostile
    input without naming the file: nesting deeper than the recursion limit
    (RecursionError) and integers over Python's digit limit (ValueError).

    Args:
        path (str): the file to read.

    Returns:
        Any: the parsed JSON.

    Raises:
        ValueError: naming ``path`` and the problem.
        OSError: the file cannot be opened.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}'
        ) from e
    except UnicodeDecodeError as e:
        raise ValueError(f'{path}: not a UTF-8 text file ({e})') from e
    except RecursionError:
        # Raised from deep inside the parser; `from None` keeps the traceback one frame.
        raise ValueError(
            f"{path}: JSON nested too deeply to read (arrays/objects beyond the depth Python's "
            'parser can follow)'
        ) from None
    except ValueError as e:  # e.g. an integer over Python's 4300-digit limit
        raise ValueError(f'{path}: unreadable JSON: {str(e).splitlines()[0]}') from e


def _check_categories(
    ctx: _Context, cats: Any, classes: Sequence[str] | None
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
        if not _is_id(c['id']):
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


def _register(
    ctx: _Context, kind: str, i: int, record: Mapping, seen: dict, required: Sequence[str]
) -> str:
    """Check the ``id`` of record ``i`` (int or str, new in ``seen``, also as text; added to
    it) and that the ``required`` keys are present; return the record's name for messages.

    ``seen`` maps ``str(id)`` -> (record name, id) of the record holding it: ``1`` and ``"1"`` are
    two ids to Python but one to every tool that writes ids as text (CSV, file names), so
    both in one file is an error, not two records.
    """
    rid = record['id']
    if not _is_id(rid):
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


class _IdTable:
    """The ids of one kind of record (images, categories), for checking references to them.

    A reference must be an id of the same type: ``true`` or ``1.0`` is not image ``1``,
    although Python's ``True == 1 == 1.0`` would find it in a dict.
    """

    def __init__(self, kind: str, ids: Mapping[Any, Any]) -> None:
        self.kind = kind
        self.ids = ids
        self.by_text = {str(k): k for k in ids}

    def check(self, ctx: _Context, rec: str, fld: str, value: Any) -> None:
        if not _is_id(value):
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


def _check_images(
    ctx: _Context, imgs: Any, multi_rater: bool, renames: Mapping[str, str]
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
        rec = _register(ctx, 'image', i, im, seen, ('file_name', 'width', 'height'))
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
                rid, renamed = _checked_rater_id(ctx, rec, f'annotators[{j}]', r, renames)
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


def _one_record_per_file(
    ctx: _Context, infos: list[dict], merge: bool
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


def _check_prefused_fields(ctx: _Context, rec: str, ann: Mapping) -> None:
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


def _check_bbox(ctx: _Context, rec: str, bbox: Any, width: float, height: float) -> list[float]:
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


def load_multirater_coco(
    path_or_dict: PathOrDict,
    *,
    repair: bool = True,
    classes: Sequence[str] | None = None,
    normalize_rater_ids: bool = False,
    merge_duplicate_images: bool = False,
) -> MultiRaterCoco:
    """Load, validate and (optionally) repair a multi-rater COCO file.

    Args:
        path_or_dict (str | os.PathLike | Mapping): path of a JSON file, or an already
            parsed COCO dict (not modified).
        repair (bool): apply the safe repairs (clip a box to its image, add a rater who drew
            a box to the image's ``annotators``, drop a rater listed twice, number
            annotations without ``id``) and count them; if False each of them is a
            ValueError. Defaults to True.
        classes (Sequence[str] | None): category names in label order. None = the file's
            categories in file order (what mmdet's ``CocoDataset`` does when its metainfo
            lists the same names). Boxes of a category not in ``classes`` are an error.
        normalize_rater_ids (bool): rater ids that differ only by case, surrounding
            whitespace, invisible format characters or Unicode form (``'R1'``, ``'r1 '``,
            a zero-width space, full-width letters) are one rater, spelled as the first of
            them appears (NFKC, format characters removed, stripped), each rewritten id
            counted as ``rater_id_normalized``. False (default): such ids are a ValueError
            naming them, since reading them as written would add raters silently.
        merge_duplicate_images (bool): image records naming the same ``file_name`` (one
            record per rater, as per-rater exports write them) become one image read by
            all their raters, each merged record counted as ``image_merged`` (width and
            height must agree). False (default): such records are a ValueError naming
            both, since read as two images every box would be fused alone (T = 1).

    Returns:
        MultiRaterCoco: per-image annotations, categories in label order, image dicts and
        the repair counts.

    Raises:
        ValueError: naming the file, the record and the field, for every problem that has
            no safe repair (see ``docs/data_format.md``).
        TypeError: if ``path_or_dict`` is neither a path nor a mapping.

    Examples:
        >>> coco = load_multirater_coco({
        ...     'images': [{'id': 1, 'file_name': 'a.png', 'width': 10, 'height': 10,
        ...                 'annotators': ['r1', 'r2']}],
        ...     'annotations': [{'id': 1, 'image_id': 1, 'category_id': 3,
        ...                      'bbox': [1, 1, 4, 4], 'annotator_id': 'r1'}],
        ...     'categories': [{'id': 3, 'name': 'digit'}]})
        >>> coco.images[0].boxes.tolist(), coco.images[0].raters
        ([[1.0, 1.0, 5.0, 5.0]], ('r1', 'r2'))
    """
    raw, source = _read(path_or_dict)
    ctx = _Context(source, repair)
    for key in ('images', 'annotations', 'categories'):
        if key not in raw:
            raise ctx.error('top level', key, 'missing')
    anns = raw['annotations']
    if not isinstance(anns, list):
        raise ctx.error('top level', 'annotations', f'must be a list, got {type(anns).__name__}')
    for i, a in enumerate(anns):
        if not isinstance(a, Mapping):
            raise ctx.error(f'annotation index {i}', None, f'must be an object, got {a!r}')

    imgs = raw['images']
    # The file is multi-rater as soon as one record says so; then every record must.
    multi_rater = any('annotator_id' in a for a in anns) or (
        isinstance(imgs, list)
        and any(isinstance(im, Mapping) and 'annotators' in im for im in imgs)
    )
    prefused = any('score' in a for a in anns)

    categories, label_of, outside = _check_categories(ctx, raw['categories'], classes)
    renames = _rater_renames(ctx, imgs, anns, normalize_rater_ids) if multi_rater else {}
    infos, index_of = _one_record_per_file(
        ctx, _check_images(ctx, imgs, multi_rater, renames), merge_duplicate_images
    )

    # Annotation ids: pycocotools indexes annotations by id, so a duplicate would silently
    # hide a box from evaluation; a missing id gets a fresh one (repair).
    used_ids = {a['id'] for a in anns if 'id' in a and _is_id(a['id'])}
    next_id = 1 + max((v for v in used_ids if isinstance(v, (int, np.integer))), default=0)
    used_text = {str(v) for v in used_ids}
    seen_ids: dict[str, tuple[str, Any]] = {}
    image_ids = _IdTable('image', index_of)
    cat_ids = _IdTable('category', {**label_of, **dict.fromkeys(outside, -1)})

    per_image: list[list[dict]] = [[] for _ in infos]
    for i, a in enumerate(anns):
        rec = f'annotation index {i}'
        ann = copy.deepcopy(dict(a))
        if 'id' not in ann:
            if not repair:
                raise ctx.error(rec, 'id', 'missing')
            while str(next_id) in used_text:  # '14' taken: 14 would clash with it
                next_id += 1
            ann['id'] = next_id
            next_id += 1
            ctx.fix('annotation_id_assigned', rec, 'id', f'assigned id={ann["id"]}')
        rec = _register(ctx, 'annotation', i, ann, seen_ids, ('image_id', 'category_id', 'bbox'))
        image_ids.check(ctx, rec, 'image_id', ann['image_id'])
        cid = ann['category_id']
        cat_ids.check(ctx, rec, 'category_id', cid)
        if cid in outside:
            raise ctx.error(
                rec, 'category_id', f'category {cid!r} is not among the selected classes'
            )
        if ann.get('iscrowd', 0):
            raise ctx.error(rec, 'iscrowd', 'crowd regions are not supported in a multi-rater file')
        k = index_of[ann['image_id']]
        info = infos[k]
        ann['image_id'] = info['id']  # a merged record's boxes move to the image it joined
        ann['bbox'] = _check_bbox(
            ctx, rec, ann['bbox'], float(info['width']), float(info['height'])
        )
        if multi_rater:
            if 'annotator_id' not in ann:
                raise ctx.error(rec, 'annotator_id', 'missing (other annotations have one)')
            rid, _ = _checked_rater_id(ctx, rec, 'annotator_id', ann['annotator_id'], renames)
            if rid not in info['annotators']:
                # The rater evidently read the image: adding them keeps the box and makes
                # R count them. Dropping the box instead would lose data.
                if not repair:
                    raise ctx.error(
                        rec,
                        'annotator_id',
                        f'rater {rid!r} drew a box on image {info["id"]!r} but is not in its '
                        f'annotators {info["annotators"]!r}',
                    )
                info['annotators'].append(rid)
                ctx.fix(
                    'rater_added_to_image',
                    rec,
                    'annotator_id',
                    f'rater {rid!r} added to the annotators of image {info["id"]!r}',
                )
        else:
            if not info['annotators']:
                raise ctx.error(
                    rec,
                    'image_id',
                    f'image {info["id"]!r} has raters_read [] (nobody read it) but this box',
                )
            rid = DEFAULT_RATER
        ann['annotator_id'] = rid
        if prefused and 'score' not in ann:
            raise ctx.error(rec, 'score', 'missing (other annotations have one)')
        _check_prefused_fields(ctx, rec, ann)
        ann['label'] = label_of[cid]
        per_image[k].append(ann)

    images: list[RaterBoxes] = []
    names: dict[str, str] = {}  # one str object per rater id, shared by every image
    for info, recs in zip(infos, per_image):
        boxes = np.asarray(
            [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (r['bbox'] for r in recs)],
            dtype=np.float64,
        ).reshape(-1, 4)
        images.append(
            RaterBoxes(
                boxes=boxes,
                labels=np.asarray([r['label'] for r in recs], dtype=np.int64),
                rater_ids=[r['annotator_id'] for r in recs],
                raters=tuple(names.setdefault(r, r) for r in info['annotators']),
                width=float(info['width']),
                height=float(info['height']),
                image_id=info['id'],
            )
        )
    if ctx.repairs:
        logger.warning(
            '%s: applied %d repair(s): %s',
            source,
            sum(ctx.repairs.values()),
            ', '.join(f'{k}={v}' for k, v in sorted(ctx.repairs.items())),
        )
    return MultiRaterCoco(
        images=images,
        categories=categories,
        image_infos=infos,
        repairs=ctx.repairs,
        raw=raw,
        annotations=per_image,
        source=source,
        multi_rater=multi_rater,
        prefused=prefused,
    )
