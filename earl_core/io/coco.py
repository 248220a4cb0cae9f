"""Multi-rater COCO files: reading and validating them (numpy, no mmdet).

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
is ever dropped. The table of rules lives in ``docs/data_format.md``; the checks of each
record, in :mod:`earl_core.io.coco_checks`.

The reader builds one :class:`~earl_core.structures.Detections` per image (every rater's
boxes, :meth:`~earl_core.structures.Detections.from_raters`), the one container of the core,
defined in :mod:`earl_core.structures`. The deprecated ``RaterBoxes`` and ``FusedBoxes``
(removed in 0.3) stay importable from here too.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from earl_core.io.coco_checks import (
    DEFAULT_RATER,
    Context,
    IdTable,
    check_bbox,
    check_categories,
    check_images,
    check_prefused_fields,
    checked_rater_id,
    is_id,
    one_record_per_file,
    rater_renames,
    register_record,
)
from earl_core.structures import Detections, FusedBoxes, RaterBoxes

__all__ = [
    'DEFAULT_RATER',
    'Detections',
    'FusedBoxes',
    'MultiRaterCoco',
    'RaterBoxes',
    'load_multirater_coco',
    'read_json',
]


logger = logging.getLogger(__name__)

PathOrDict = Union[str, os.PathLike, Mapping]


@dataclass
class MultiRaterCoco:
    """A validated multi-rater COCO file.

    ``images[i]``, ``image_infos[i]`` and ``annotations[i]`` describe the same image, in
    the file's image order; within an image, ``annotations[i][k]`` is the record of box
    ``images[i].boxes[k]`` (file order of the annotations).

    Args:
        images (list[Detections]): per image, all raters' boxes (xyxy pixels, float64,
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

    images: list[Detections]
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
    ctx = Context(source, repair)
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

    categories, label_of, outside = check_categories(ctx, raw['categories'], classes)
    renames = rater_renames(ctx, imgs, anns, normalize_rater_ids) if multi_rater else {}
    infos, index_of = one_record_per_file(
        ctx, check_images(ctx, imgs, multi_rater, renames), merge_duplicate_images
    )

    # Annotation ids: pycocotools indexes annotations by id, so a duplicate would silently
    # hide a box from evaluation; a missing id gets a fresh one (repair).
    used_ids = {a['id'] for a in anns if 'id' in a and is_id(a['id'])}
    next_id = 1 + max((v for v in used_ids if isinstance(v, (int, np.integer))), default=0)
    used_text = {str(v) for v in used_ids}
    seen_ids: dict[str, tuple[str, Any]] = {}
    image_ids = IdTable('image', index_of)
    cat_ids = IdTable('category', {**label_of, **dict.fromkeys(outside, -1)})

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
        rec = register_record(
            ctx, 'annotation', i, ann, seen_ids, ('image_id', 'category_id', 'bbox')
        )
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
        ann['bbox'] = check_bbox(ctx, rec, ann['bbox'], float(info['width']), float(info['height']))
        if multi_rater:
            if 'annotator_id' not in ann:
                raise ctx.error(rec, 'annotator_id', 'missing (other annotations have one)')
            rid, _ = checked_rater_id(ctx, rec, 'annotator_id', ann['annotator_id'], renames)
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
        check_prefused_fields(ctx, rec, ann)
        ann['label'] = label_of[cid]
        per_image[k].append(ann)

    images: list[Detections] = []
    names: dict[str, str] = {}  # one str object per rater id, shared by every image
    for info, recs in zip(infos, per_image):
        boxes = np.asarray(
            [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (r['bbox'] for r in recs)],
            dtype=np.float64,
        ).reshape(-1, 4)
        images.append(
            Detections.from_raters(
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
