"""Tiny generated detection sets for tests (random rectangles on noise, 3 raters)."""

from __future__ import annotations

import json
import os.path as osp
from pathlib import Path

import numpy as np


def make_tiny_coco(
    root: str | Path,
    num_images: int = 4,
    size: int = 64,
    num_classes: int = 3,
    num_raters: int = 3,
    seed: int = 0,
) -> dict[str, str]:
    """Write ``root/images/*.png``, ``root/gold.json`` (plain COCO) and
    ``root/multi.json`` (multi-rater COCO: ``annotators`` per image, ``annotator_id`` per
    box; each rater jitters the true boxes, the last rater misses every second box).

    Returns:
        dict[str, str]: paths ``root``, ``img_dir``, ``gold``, ``multi``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    img_dir = root / 'images'
    img_dir.mkdir(parents=True, exist_ok=True)
    cats = [dict(id=i + 1, name=f'c{i}') for i in range(num_classes)]
    raters = [f'R{i + 1}' for i in range(num_raters)]
    images, gold, multi = [], [], []
    for i in range(num_images):
        canvas = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
        name = f'img_{i:03d}.png'
        images.append(dict(id=i + 1, file_name=name, width=size, height=size, annotators=raters))
        for j in range(int(rng.integers(1, 3))):
            w, h = rng.integers(size // 6, size // 2, size=2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            label = int(rng.integers(0, num_classes))
            canvas[y : y + h, x : x + w] = 80 + 60 * label
            gold.append(
                dict(
                    id=len(gold) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=[float(x), float(y), float(w), float(h)],
                    area=float(w * h),
                    iscrowd=0,
                )
            )
            for r, rater in enumerate(raters):
                if r == num_raters - 1 and j % 2 == 1:
                    continue
                jx, jy = rng.normal(0, 1.0, size=2)
                bx, by = float(np.clip(x + jx, 0, size - w)), float(np.clip(y + jy, 0, size - h))
                multi.append(
                    dict(
                        id=len(multi) + 1,
                        image_id=i + 1,
                        category_id=label + 1,
                        bbox=[bx, by, float(w), float(h)],
                        area=float(w * h),
                        iscrowd=0,
                        annotator_id=rater,
                    )
                )
        Image.fromarray(canvas).save(img_dir / name)
    plain_images = [{k: v for k, v in im.items() if k != 'annotators'} for im in images]
    paths = dict(
        root=str(root),
        img_dir=str(img_dir) + '/',
        gold=str(root / 'gold.json'),
        multi=str(root / 'multi.json'),
    )
    with open(paths['gold'], 'w') as f:
        json.dump(dict(images=plain_images, annotations=gold, categories=cats), f)
    with open(paths['multi'], 'w') as f:
        json.dump(dict(images=images, annotations=multi, categories=cats), f)
    return paths


def tiny_retinanet_config(data: dict[str, str], work_dir: str, max_epochs: int = 2) -> str:
    """Write a RetinaNet-R18 config on the tiny set (no pretrained weights); return path."""
    classes = tuple(f'c{i}' for i in range(3))
    text = f"""
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)
model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=3))
metainfo = dict(classes={classes!r})
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_data = dict(type='CocoDataset', data_root='', metainfo=metainfo, ann_file={data['gold']!r},
             data_prefix=dict(img={data['img_dir']!r}), pipeline=pipeline)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(_data, filter_cfg=dict(filter_empty_gt=False)))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(_data, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='DetectionMAPMetric', ann_file={data['gold']!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval=100)
optim_wrapper = dict(optimizer=dict(lr=0.001))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
work_dir = {work_dir!r}
"""
    path = osp.join(work_dir + '_cfg.py')
    with open(path, 'w') as f:
        f.write(text)
    return path
