"""The two data shapes of the core: every rater's boxes of one image, and the fused boxes.

* :class:`RaterBoxes`: every rater's boxes of one image, validated once when built, so that
  the aggregators, EM and the reports need no checks of their own.
* :class:`FusedBoxes`: the fused boxes of one image with their confidence c, agreement T,
  the R raters who read the image and the input boxes behind each fused box (what every
  aggregator returns).

The reader of multi-rater COCO files (:mod:`earl_core.io.coco`) builds the first; the
aggregators (:mod:`earl_core.fusion`) turn it into the second. Both names are also
importable from :mod:`earl_core.io.coco`, where they were defined before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ['FusedBoxes', 'RaterBoxes']


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
