"""COCO dataset that keeps who drew each box (multi-rater COCO, see docs/data_format.md)."""

from __future__ import annotations

import colorsys
import logging
import os.path as osp
from typing import Any

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from earl_mmdet.core.coco_io import MultiRaterCoco, load_multirater_coco

from .transforms.fuse_annotations import FuseAnnotations

__all__ = ['MultiAnnotatorCocoDataset']


def _palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours, one per class (golden-ratio hue steps, deterministic)."""
    out = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


@DATASETS.register_module()
class MultiAnnotatorCocoDataset(CocoDataset):
    """Multi-rater COCO dataset: every rater's box, with its rater id.

    Reads the multi-rater COCO format (``docs/data_format.md``) through
    :func:`earl_mmdet.core.coco_io.load_multirater_coco`, so a bad file fails with a
    ValueError naming the file, the record and the field, and safe repairs (box clipped to
    its image, a rater who drew a box added to the image's readers) are counted and logged.
    Unlike :class:`CocoDataset`, it never drops a box silently (the stock parser skips boxes
    under 1 px, outside the image, or with ``area <= 0``).

    Each data info gets, besides the stock keys:

    - ``annotators`` (list[str]): raters who read the image (R = its length).
    - ``instances[k]['annotator_id']`` (str): who drew box k.
    - ``instances[k]['score']`` / ``['agreement']`` / ``['num_raters']``: only for pre-fused
      files carrying them (``score`` = the confidence c).

    Fusion happens later in the pipeline (:class:`FuseAnnotations`), so the raw boxes of
    several raters on one object all reach the pipeline here.

    Pipeline: a ``LoadAnnotations`` right before a :class:`FuseAnnotations` (the order of
    mmdet-style configs) is dropped from the built pipeline when the fusion overwrites all
    it sets (:meth:`FuseAnnotations.supersedes`; logged): it would load every raw rater box
    only to have them replaced, a few per cent of the loading time on small images. The
    output is the same; the config (and its ``pipeline.<i>`` indices) is unchanged.

    Negative images: an image read by raters who drew nothing is a true negative and is
    kept even with ``filter_cfg=dict(filter_empty_gt=True)``; that flag only drops images
    that no rater read (``annotators == []``). Pass
    ``filter_cfg=dict(filter_empty_gt=True, keep_negatives=False)`` for the stock behaviour
    (drop every image without a box).

    Args:
        repair (bool): apply and count the safe repairs of ``load_multirater_coco``; if
            False each of them is an error. Defaults to True.
        normalize_rater_ids (bool): merge rater ids that differ only by case,
            surrounding whitespace or Unicode normal form (counted as the repair
            ``rater_id_normalized``); False (default): such ids are an error naming them.
        check_files (bool): check at load time that every image file exists (local files
            only) and raise a ValueError listing the missing ones. Otherwise a missing file
            fails in ``LoadImageFromFile`` with a FileNotFoundError naming the path.
            Defaults to False.
        **kwargs: :class:`mmdet.datasets.CocoDataset` arguments. If ``metainfo`` gives no
            ``classes``, the classes are the file's categories in file order.
    """

    METAINFO: dict = {'classes': (), 'palette': []}

    def __init__(
        self,
        *args: Any,
        repair: bool = True,
        normalize_rater_ids: bool = False,
        check_files: bool = False,
        **kwargs: Any,
    ):
        self.repair = repair
        self.normalize_rater_ids = normalize_rater_ids
        self.check_files = check_files
        self.repairs: dict[str, int] = {}
        super().__init__(*args, **kwargs)
        self._drop_superseded_loads()

    def _drop_superseded_loads(self) -> None:
        transforms = self.pipeline.transforms
        dropped = [
            i
            for i in range(len(transforms) - 1)
            if isinstance(transforms[i + 1], FuseAnnotations)
            and transforms[i + 1].supersedes(transforms[i])
        ]
        if not dropped:
            return
        print_log(
            f'{type(self).__name__}: pipeline step(s) {dropped} (LoadAnnotations) skipped: '
            'the FuseAnnotations after each replaces all they load',
            logger='current',
            level=logging.INFO,
        )
        transforms[:] = [t for i, t in enumerate(transforms) if i not in dropped]

    def _load_coco(self) -> MultiRaterCoco:
        classes = self._metainfo.get('classes') or None
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            coco = load_multirater_coco(
                local_path,
                repair=self.repair,
                classes=classes,
                normalize_rater_ids=self.normalize_rater_ids,
            )
        # Name the configured file in messages rather than a temporary local copy.
        coco.source = str(self.ann_file)
        return coco

    def load_data_list(self) -> list[dict]:
        """Load and validate the annotation file; one data info per image (file order).

        Returns:
            list[dict]: data infos with ``instances`` (one per rater box) and ``annotators``.
        """
        coco = self._load_coco()
        if not self._metainfo.get('classes'):
            self._metainfo['classes'] = coco.classes
        if len(self._metainfo.get('palette') or []) < len(self._metainfo['classes']):
            self._metainfo['palette'] = _palette(len(self._metainfo['classes']))
        # Attributes CocoDataset users rely on (evaluation helpers, samplers).
        self.cat_ids = coco.cat_ids
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = {cid: [] for cid in self.cat_ids}
        self.repairs = dict(coco.repairs)
        if coco.repairs:
            print_log(
                f'{self.ann_file}: {sum(coco.repairs.values())} repair(s) applied while '
                f'loading: {dict(sorted(coco.repairs.items()))} (see docs/data_format.md)',
                logger='current',
                level=logging.WARNING,
            )

        data_list = []
        for info, anns in zip(coco.image_infos, coco.annotations):
            raw_img_info = dict(info, img_id=info['id'])
            # The parent fills img_path, seg_map_path, sizes and the text keys; its box
            # parser (which drops small boxes) gets no annotation.
            data_info = super().parse_data_info({'raw_img_info': raw_img_info, 'raw_ann_info': []})
            data_info['annotators'] = list(info['annotators'])
            data_info['instances'] = [self._instance(a) for a in anns]
            for a in anns:
                self.cat_img_map[a['category_id']].append(info['id'])
            data_list.append(data_info)
        if self.check_files:
            self._check_files(data_list)
        return data_list

    @staticmethod
    def _instance(ann: dict) -> dict:
        x, y, w, h = ann['bbox']
        inst = {
            'bbox': [x, y, x + w, y + h],
            'bbox_label': ann['label'],
            'ignore_flag': 0,
            'annotator_id': ann['annotator_id'],
        }
        for key in ('score', 'agreement', 'num_raters'):
            if key in ann:
                inst[key] = ann[key]
        return inst

    def _check_files(self, data_list: list[dict]) -> None:
        missing = [(d['img_id'], d['img_path']) for d in data_list if not osp.isfile(d['img_path'])]
        if missing:
            shown = ', '.join(f'image id={i!r}: {p}' for i, p in missing[:5])
            more = f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''
            raise ValueError(
                f'{self.ann_file}: {len(missing)} image file(s) not found, field '
                f"'file_name' under data_prefix {self.data_prefix.get('img')!r}: {shown}{more}"
            )

    def filter_data(self) -> list[dict]:
        """Filter by ``filter_cfg``, keeping negative images (read, no box) by default.

        Returns:
            list[dict]: the kept data infos.
        """
        if self.test_mode or self.filter_cfg is None:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        keep_negatives = self.filter_cfg.get('keep_negatives', True)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = []
        for info in self.data_list:
            if filter_empty_gt and not info['instances']:
                # Nobody read it: unlabelled, not negative. Read by someone: a negative.
                if not info['annotators'] or not keep_negatives:
                    continue
            if min(info['width'], info['height']) >= min_size:
                kept.append(info)
        if not kept:
            # mmengine would fail later with 'need at least one array to concatenate'.
            raise ValueError(
                f'{self.ann_file}: filter_cfg={self.filter_cfg!r} leaves no image of '
                f'{len(self.data_list)} (empty dataset)'
            )
        return kept
