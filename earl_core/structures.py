"""The one container of the core: :class:`Detections`, the boxes of one image.

Raters' boxes and fused boxes are the same kind of thing, so they are the same type (in the
spirit of ``supervision.Detections``): per-box fields that stay aligned under selection
(``det[mask]``, ``det[[2, 0]]``, ``det[1:]``) and image-level fields that selection keeps.

* The reader of multi-rater COCO files (:mod:`earl_core.io.coco`) builds one per image with
  :meth:`Detections.from_raters`: every rater's boxes, ``rater`` naming who drew each.
* The aggregators (:mod:`earl_core.fusion`) turn it into another, the fused boxes
  (:meth:`Detections.fused`), with their confidence c, agreement T, the R raters behind
  them and the input boxes behind each fused box.

Both are validated once, when they are built, so that the aggregators, EM, the reports and
the dataset need no checks of their own. ``RaterBoxes`` and ``FusedBoxes``, the two shapes
this container replaced, remain as deprecated constructors (removed in 0.3) that return a
:class:`Detections`; they are importable from here and from :mod:`earl_core.io.coco`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ['Detections', 'FusedBoxes', 'RaterBoxes']

#: The per-box array fields of :class:`Detections`, in field order.
BOX_FIELDS = ('boxes', 'labels', 'rater', 'confidence', 'agreement')

# Zero-size arrays hold no data, so every empty result gets its own *view* of these (4x
# cheaper than allocating; empty images are most of a chest X-ray dataset).
_EMPTY_BOXES = np.zeros((0, 4), np.float32)
_EMPTY_F32 = np.zeros(0, np.float32)
_EMPTY_I64 = np.zeros(0, np.int64)
# ``rater`` of fused boxes (-1: no single rater): read-only views of one array up to its
# length, as cheap as the empty views (a fused image rarely has more than a few boxes).
_NO_RATER = np.full(256, -1, np.int64)
_NO_RATER.flags.writeable = False


@dataclass(frozen=True, eq=False)
class Detections:
    """The boxes of one image, by raters or fused, validated once when built.

    Per-box fields (N boxes) stay aligned: ``det[key]`` selects every one of them alike
    (``key``: a boolean mask of length N, an int index array, a slice; an int gives a
    one-box Detections) and keeps the image-level fields.

    Args:
        boxes (np.ndarray): (N, 4) xyxy in pixels, finite, x1 <= x2 and y1 <= y2. A float
            array keeps its dtype (raters' boxes are float64, fused boxes float32); other
            input becomes float64. An empty input becomes (0, 4).
        labels (np.ndarray): (N,) non-negative integral class indices (0-based); stored as
            int64.
        rater (np.ndarray | None): (N,) int64 position in ``raters`` of the rater who drew
            each box, -1 for a box no single rater drew (a fused box). None = all -1.
        confidence (np.ndarray | None): (N,) float32 finite confidence c of each box (for
            fused boxes its meaning is the aggregator's confidence mode). None = all 1.
        agreement (np.ndarray | None): (N,) int64 agreement T, the distinct raters behind
            each box (>= 0; -1 = unknown). None = all 1 (a rater's box stands for itself).
        members (Sequence[np.ndarray]): per box, the int64 indices of the input boxes
            behind it (a fused box's cluster), or empty: nothing recorded (raters' boxes,
            fused boxes read from a file or a checkpoint). Defaults to [].
        extras (Mapping[str, np.ndarray]): further per-box arrays of length N, selected
            with the rest, e.g. ``member_raters`` (object array: per fused box the tuple of
            its distinct raters). Defaults to {}.
        raters (Sequence[str]): every rater who read the image, including those who drew
            nothing (an image read by 3 raters with no box is a true negative); distinct;
            stored as a tuple of str. Defaults to ().
        num_raters (int | None): R, the raters behind the boxes (for fused boxes: who read
            the image, as the aggregator counts them; a pre-fused file states it). None =
            ``len(raters)``.
        width (float | None): image width in pixels (> 0), if known.
        height (float | None): image height in pixels (> 0), if known.
        image_id (int | str | None): identifier, used in error messages.

    Raises:
        ValueError: naming the image and the field, for any of the rules above.

    Examples:
        >>> det = Detections.from_raters(
        ...     [[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50]], [2, 2, 0], ['a', 'b', 'a'],
        ...     ['a', 'b', 'c'], image_id=7)
        >>> det.boxes.dtype, det.labels.tolist(), det.raters, det.num_raters
        (dtype('float64'), [2, 2, 0], ('a', 'b', 'c'), 3)
        >>> det.rater.tolist(), det.rater_ids.tolist(), det.confidence.tolist()
        ([0, 1, 0], ['a', 'b', 'a'], [1.0, 1.0, 1.0])
        >>> sel = det[det.labels == 2]
        >>> len(sel), sel.rater_ids.tolist(), sel.image_id
        (2, ['a', 'b'], 7)
    """

    boxes: np.ndarray
    labels: np.ndarray
    rater: np.ndarray | None = None
    confidence: np.ndarray | None = None
    agreement: np.ndarray | None = None
    members: list[np.ndarray] = field(default_factory=list)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    raters: tuple[str, ...] = ()
    num_raters: int | None = None
    width: float | None = None
    height: float | None = None
    image_id: int | str | None = None
    # The names of ``rater`` (``rater_ids``), built on first use and selected with the rest.
    _rater_ids: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        where = f'image {self.image_id!r}'
        boxes = _check_boxes(self.boxes, where)
        labels = _check_labels(self.labels, boxes.shape[0], where)
        self._check_rest(where, boxes, labels, _check_raters(self.raters, where))

    def _check_rest(
        self, where: str, boxes: np.ndarray, labels: np.ndarray, raters: tuple[str, ...]
    ) -> None:
        """Set the checked ``boxes``, ``labels`` and ``raters``; check and set the rest."""
        set_ = object.__setattr__  # frozen: the normalised fields are set once, here
        set_(self, 'boxes', boxes)
        set_(self, 'labels', labels)
        set_(self, 'raters', raters)
        n = boxes.shape[0]
        set_(self, 'rater', _check_rater(self.rater, n, len(raters), where))
        set_(self, 'confidence', _check_confidence(self.confidence, n, where))
        set_(self, 'agreement', _check_agreement(self.agreement, n, where))
        members = list(self.members)
        if len(members) not in (0, n):
            raise ValueError(f'{where}: {n} boxes but {len(members)} members (one per box or none)')
        set_(self, 'members', members)
        extras = dict(self.extras)
        for key, value in extras.items():
            if key in BOX_FIELDS or key == 'members':
                raise ValueError(f'{where}: extras[{key!r}] shadows the field {key!r}')
            if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != n:
                shape = getattr(value, 'shape', type(value).__name__)
                raise ValueError(f'{where}: {n} boxes but extras[{key!r}] of shape {shape}')
        set_(self, 'extras', extras)
        r = len(raters) if self.num_raters is None else self.num_raters
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ValueError(f'{where}: num_raters must be an int >= 0, got {r!r}')
        set_(self, 'num_raters', int(r))
        for name in ('width', 'height'):
            v = getattr(self, name)
            if v is not None:
                if not (isinstance(v, (int, float, np.number)) and 0 < float(v) < np.inf):
                    raise ValueError(f'{where}: {name} must be a finite number > 0, got {v!r}')
                set_(self, name, float(v))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_raters(
        cls,
        boxes: Any,
        labels: Any,
        rater_ids: Any,
        raters: Sequence[str | int],
        width: float | None = None,
        height: float | None = None,
        image_id: int | str | None = None,
    ) -> Detections:
        """All raters' boxes on one image, by the names of the raters who drew them.

        Args:
            boxes (array-like): (N, 4) xyxy in pixels (see :class:`Detections`); stored as
                float64.
            labels (array-like): (N,) non-negative integral class indices.
            rater_ids (Sequence[str | int]): (N,) the rater who drew each box (ints are read
                as their str); each must be in ``raters``. Stored as integer codes,
                ``rater``, into ``raters`` (the one table of names): never as a fixed-width
                unicode array (N x the longest id x 4 bytes).
            raters (Sequence[str | int]): every rater who read the image, distinct.
            width (float | None): image width in pixels (> 0), if known.
            height (float | None): image height in pixels (> 0), if known.
            image_id (int | str | None): identifier, used in error messages.

        Returns:
            Detections: confidence 1, agreement 1, no members.

        Raises:
            ValueError: naming the image and the field, for any rule of
                :class:`Detections` or a rater id not in ``raters``.
        """
        where = f'image {image_id!r}'
        b = _check_boxes(boxes, where, np.float64)
        n = b.shape[0]
        lab = _check_labels(labels, n, where)
        names = _check_raters(raters, where)
        index = _rater_index(rater_ids, names, n, where)
        # What __post_init__ would check again is checked: build without it.
        det = cls._trusted(
            {
                **dict.fromkeys(('boxes', 'labels', 'confidence', 'agreement', 'num_raters')),
                'rater': index,
                'members': (),
                'extras': {},
                'width': width,
                'height': height,
                'image_id': image_id,
                '_rater_ids': None,
            }
        )
        det._check_rest(where, b, lab, names)
        return det

    @classmethod
    def fused(
        cls,
        boxes: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray,
        agreement: np.ndarray,
        num_raters: int,
        members: Sequence[np.ndarray] = (),
        member_raters: Sequence[tuple[str, ...]] = (),
        *,
        rater: np.ndarray | None = None,
        image: Detections | None = None,
        validate: bool = True,
    ) -> Detections:
        """Fused boxes of one image (what every aggregator returns).

        Args:
            boxes (np.ndarray): (M, 4) float32 xyxy pixels.
            labels (np.ndarray): (M,) int64.
            confidence (np.ndarray): (M,) float32, the confidence c; its meaning is the
                aggregator's confidence mode: ``agreement`` = T, ``agreement_ratio`` = T / R,
                ``fused_score`` = the fused WBF score, ``posterior`` = EM's posterior
                probability of the label, ``presence`` = the posterior of a real object.
            agreement (np.ndarray): (M,) int64, T = distinct raters behind the box.
            num_raters (int): R, the raters who read the image (as the aggregator counts).
            members (Sequence[np.ndarray]): per fused box, indices into the input boxes.
                Defaults to () (not recorded).
            member_raters (Sequence[tuple[str, ...]]): per fused box, its raters; stored
                as ``extras['member_raters']``. Defaults to () (not recorded).
            rater (np.ndarray | None): (M,) the rater of each box when each is one rater's
                box kept as is (``na``, ``rater:<id>``); None = -1 (no single rater).
            image (Detections | None): the input; its ``raters``, ``width``, ``height`` and
                ``image_id`` are kept. Defaults to None (none of them known).
            validate (bool): check every field as :class:`Detections` does. False is for
                an aggregator whose output cannot break the rules when its input keeps them
                (WBF's weighted means of valid boxes, kept rater boxes, c from T / R): the
                arrays must then have the field dtypes and shapes already; the fields are
                stored as given (``tests/test_core/test_containers.py`` holds the two paths
                equal). Checking costs ~15 us per image, as much as WBF's own work on it.
                Defaults to True.

        Returns:
            Detections: the fused boxes.
        """
        m = len(member_raters)
        extras = {}
        if m:
            extras['member_raters'] = np.fromiter(member_raters, object, count=m)
        if not validate:  # what the checks would make of a missing rater and of R
            rater = _no_rater(len(labels)) if rater is None else rater
            num_raters = int(num_raters)
        det = cls._unchecked(
            boxes, labels, rater, confidence, agreement, list(members), extras, num_raters, image
        )
        if validate:
            det.__post_init__()  # the constructor's checks, on these fields
        return det

    @classmethod
    def empty(cls, num_raters: int = 0, image: Detections | None = None) -> Detections:
        """No box (float32 boxes) on an image read by ``num_raters`` raters (0: nobody).

        Args:
            num_raters (int): R. Defaults to 0.
            image (Detections | None): the input whose image-level fields are kept.

        Returns:
            Detections: zero boxes; each array a view of a shared zero-size array.
        """
        return cls._unchecked(
            _EMPTY_BOXES.view(),
            _EMPTY_I64.view(),
            _EMPTY_I64.view(),
            _EMPTY_F32.view(),
            _EMPTY_I64.view(),
            [],
            {},
            int(num_raters),
            image,
        )

    @classmethod
    def _unchecked(
        cls,
        boxes: np.ndarray,
        labels: np.ndarray,
        rater: np.ndarray,
        confidence: np.ndarray,
        agreement: np.ndarray,
        members: list[np.ndarray],
        extras: dict[str, np.ndarray],
        num_raters: int,
        image: Detections | None,
    ) -> Detections:
        """A Detections of fields that are valid by construction (an empty result, WBF's
        output), the image-level ones taken from ``image``: one dict literal in field
        order, since this runs for every image of a dataset."""
        return cls._trusted(
            {
                'boxes': boxes,
                'labels': labels,
                'rater': rater,
                'confidence': confidence,
                'agreement': agreement,
                'members': members,
                'extras': extras,
                'raters': () if image is None else image.raters,
                'num_raters': num_raters,
                'width': None if image is None else image.width,
                'height': None if image is None else image.height,
                'image_id': None if image is None else image.image_id,
                '_rater_ids': None,
            }
        )

    @classmethod
    def _trusted(cls, fields: dict[str, Any]) -> Detections:
        """A Detections of ``fields`` (every field, in a dict it takes over) that are valid
        already: an empty one, a selection."""
        obj = object.__new__(cls)
        object.__setattr__(obj, '__dict__', fields)  # frozen: bypass __setattr__
        return obj

    # ------------------------------------------------------------------ reading
    @property
    def rater_index(self) -> np.ndarray:
        """(N,) int64 position in ``raters`` of each box's rater (= ``rater``)."""
        return self.rater

    @property
    def rater_ids(self) -> np.ndarray:
        """(N,) object array of the rater of each box (None where ``rater`` is -1).

        Each element is the very str object of ``raters``: 8 bytes per box however long
        the id. Built on first use.
        """
        if self._rater_ids is None:
            names = np.empty(len(self.raters) + 1, object)
            names[: len(self.raters)] = self.raters  # names[-1] stays None: rater -1
            object.__setattr__(self, '_rater_ids', names[self.rater])
        return self._rater_ids

    @property
    def member_raters(self) -> list[tuple[str, ...]]:
        """Per box, the raters behind it (``extras['member_raters']``); [] when
        not recorded."""
        mr = self.extras.get('member_raters')
        return [] if mr is None else mr.tolist()

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, key: Any) -> Detections:
        """The boxes ``key`` selects, every per-box field alike, image-level fields kept.

        Args:
            key (int | slice | np.ndarray | Sequence): an int (a one-box Detections), a
                slice, a boolean mask of length N or int indices (negative from the end).

        Returns:
            Detections: the selection (``members`` still index the original input boxes).

        Raises:
            ValueError: for a mask whose length is not N.
            IndexError: for an index out of range.
            TypeError: for any other key.
        """
        n = len(self)
        where = f'image {self.image_id!r}'
        if isinstance(key, slice):
            idx = np.arange(n)[key]
        elif isinstance(key, (bool, np.bool_)):
            raise TypeError(f'{where}: index with a boolean mask of length {n}, not {key!r}')
        elif isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f'{where}: box {key} out of range for {n} boxes')
            idx = np.array([key % n])
        else:
            k = np.asarray(key)
            if k.dtype == bool:
                if k.shape != (n,):
                    raise ValueError(f'{where}: {n} boxes but a boolean mask of shape {k.shape}')
                idx = np.flatnonzero(k)
            elif k.size == 0 and k.ndim == 1:
                idx = np.zeros(0, np.int64)
            elif k.dtype.kind in 'iu' and k.ndim == 1:
                bad = (k < -n) | (k >= n)
                if bad.any():
                    raise IndexError(f'{where}: box {k[bad][0]} out of range for {n} boxes')
                idx = k
            else:
                raise TypeError(
                    f'{where}: index with an int, a slice, a boolean mask or int indices, got '
                    f'{type(key).__name__} of dtype {k.dtype} and shape {k.shape}'
                )
        fields = dict(self.__dict__)
        for name in BOX_FIELDS:
            fields[name] = fields[name][idx]
        if self.members:
            fields['members'] = [self.members[i] for i in idx.tolist()]
        fields['extras'] = {k: v[idx] for k, v in self.extras.items()}
        if self._rater_ids is not None:
            fields['_rater_ids'] = self._rater_ids[idx]
        return self._trusted(fields)


def _warn_deprecated(old: str, new: str) -> None:
    warnings.warn(
        f'{old} is deprecated and will be removed in 0.3: use {new}, which returns the one '
        'container earl_core.structures.Detections (see docs/migration.md)',
        FutureWarning,
        stacklevel=3,
    )


class _DetectionsAlias(type):
    """Metaclass of the deprecated names: ``isinstance(x, RaterBoxes)`` is
    ``isinstance(x, Detections)``."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Detections)


class RaterBoxes(metaclass=_DetectionsAlias):
    """Deprecated (removed in 0.3): ``RaterBoxes(...)`` is
    ``Detections.from_raters(...)``, with a FutureWarning; the arguments are the same
    (``boxes, labels, rater_ids, raters, width, height, image_id``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Detections:
        _warn_deprecated('RaterBoxes(...)', 'Detections.from_raters(...)')
        return Detections.from_raters(*args, **kwargs)


class FusedBoxes(metaclass=_DetectionsAlias):
    """Deprecated (removed in 0.3): ``FusedBoxes(...)`` is ``Detections.fused(...)`` and
    ``FusedBoxes.empty(r)`` is ``Detections.empty(r)``, with a FutureWarning; the arguments
    are the same (``boxes, labels, confidence, agreement, num_raters, members,
    member_raters``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Detections:
        _warn_deprecated('FusedBoxes(...)', 'Detections.fused(...)')
        return Detections.fused(*args, **kwargs)

    @staticmethod
    def empty(num_raters: int) -> Detections:
        """Deprecated: :meth:`Detections.empty`."""
        _warn_deprecated('FusedBoxes.empty(...)', 'Detections.empty(...)')
        return Detections.empty(num_raters)


def _no_rater(n: int) -> np.ndarray:
    """(n,) int64 -1 (read-only when a view of the shared array)."""
    return _NO_RATER[:n] if n <= _NO_RATER.shape[0] else np.full(n, -1, np.int64)


# ---------------------------------------------------------------------- checks
def _check_raters(raters: Any, where: str) -> tuple[str, ...]:
    names = tuple(r if type(r) is str else str(r) for r in raters)
    if len(set(names)) != len(names):
        raise ValueError(f'{where}: duplicate rater in raters {names}')
    return names


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


def _check_boxes(boxes: Any, where: str, dtype: Any = None) -> np.ndarray:
    """``boxes`` as an (N, 4) array of ``dtype`` (None: a float array keeps its dtype, other
    input becomes float64), checked."""
    if dtype is None and isinstance(boxes, np.ndarray) and boxes.dtype.kind == 'f':
        dtype = boxes.dtype
    try:
        b = np.asarray(boxes, dtype=dtype or np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{where}: boxes must be numbers: {exc}') from exc
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f'{where}: boxes must have shape (N, 4) xyxy, got {b.shape}')
    if np.isfinite(b).all() and (b[:, 2:] >= b[:, :2]).all():
        return b  # (the usual case, in few numpy calls: fused boxes are checked too)
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


def _check_rater(rater: Any, n: int, num_names: int, where: str) -> np.ndarray:
    if rater is None:
        return np.full(n, -1, np.int64)
    idx = np.asarray(rater)
    if idx.size == 0 and n == 0:
        return np.zeros(0, np.int64)
    if idx.shape != (n,) or idx.dtype.kind not in 'iu':
        raise ValueError(f'{where}: {n} boxes but rater of shape {idx.shape}, dtype {idx.dtype}')
    if idx.min() < -1 or idx.max() >= num_names:
        raise ValueError(
            f'{where}: rater must be -1 or a position in the {num_names} raters, got {idx.tolist()}'
        )
    return idx.astype(np.int64, copy=False)


def _check_confidence(confidence: Any, n: int, where: str) -> np.ndarray:
    if confidence is None:
        return np.ones(n, np.float32)
    try:
        c = np.asarray(confidence, np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{where}: confidence must be numbers: {exc}') from exc
    if c.size == 0 and n == 0:
        return c.reshape(0)
    if c.shape != (n,):
        raise ValueError(f'{where}: {n} boxes but confidence of shape {c.shape}')
    if not np.isfinite(c).all():
        raise ValueError(f'{where}: confidence must be finite, got {c.tolist()}')
    return c


def _check_agreement(agreement: Any, n: int, where: str) -> np.ndarray:
    if agreement is None:
        return np.ones(n, np.int64)
    t = np.asarray(agreement)
    if t.size == 0 and n == 0:
        return np.zeros(0, np.int64)
    if t.shape != (n,):
        raise ValueError(f'{where}: {n} boxes but agreement of shape {t.shape}')
    if t.dtype.kind not in 'iu' or t.min() < -1:
        raise ValueError(
            f'{where}: agreement must be integers >= 0 (-1: unknown), got {t.tolist()}'
        )
    return t.astype(np.int64, copy=False)
