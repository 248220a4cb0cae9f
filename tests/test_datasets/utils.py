"""Tiny multi-rater COCO sets written to a temporary directory for the dataset tests."""

from __future__ import annotations

import json
import os.path as osp

import numpy as np

CLASSES = ('a', 'b')


def multirater_coco() -> dict:
    """4 images: overlapping boxes of 3 raters; a negative; 2 readers; an unread image."""

    def ann(i, img, cat, box, rater):
        return {'id': i, 'image_id': img, 'category_id': cat, 'bbox': box, 'annotator_id': rater}

    return {
        'images': [
            {'id': i, 'file_name': f'img{i}.png', 'width': 64, 'height': 48, 'annotators': r}
            for i, r in enumerate([['r1', 'r2', 'r3'], ['r1', 'r2', 'r3'], ['r1', 'r2'], []], 1)
        ],
        'annotations': [
            ann(1, 1, 10, [10, 10, 20, 20], 'r1'),
            ann(2, 1, 10, [11, 10, 20, 21], 'r2'),
            ann(3, 1, 10, [10, 11, 21, 20], 'r3'),
            ann(4, 1, 20, [40, 5, 12, 30], 'r1'),
            ann(5, 3, 20, [5, 5, 30, 30], 'r1'),
            ann(6, 3, 20, [6, 5, 30, 31], 'r2'),
        ],
        'categories': [{'id': 10, 'name': 'a'}, {'id': 20, 'name': 'b'}],
    }


def write_set(root: str, data: dict | None = None, images: bool = True) -> str:
    """Write ``data`` (default :func:`multirater_coco`) as ann.json + PNGs under ``root``."""
    import cv2

    data = multirater_coco() if data is None else data
    if images:
        rng = np.random.default_rng(0)
        for im in data['images']:
            img = rng.integers(0, 255, (im['height'], im['width'], 3), dtype=np.uint8)
            cv2.imwrite(osp.join(root, im['file_name']), img)
    path = osp.join(root, 'ann.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    return path
