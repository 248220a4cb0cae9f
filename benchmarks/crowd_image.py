"""The crowded image of ``bench_crowd.py`` and ``tests/test_core/test_crowd_scale.py``.

Plain arrays (no ``earl_mmdet`` import), so that the benchmark can wrap them in the
``Detections`` it loads without torch and the test in the one it imports.
"""

from __future__ import annotations

import numpy as np

__all__ = ['crowded_reads']


def crowded_reads(
    num_raters: int, seed: int = 0, num_classes: int = 3
) -> tuple[np.ndarray, list[int], list[str], list[str]]:
    """Reads of one image by ``num_raters`` raters: 3 objects that overlap one another,
    each marked with probability 0.8 (centre and size jittered by 8 % of the size, label
    flipped to one of ``num_classes`` with probability 0.1): about 2.4 boxes per rater, in
    components that are no cliques.

    Returns:
        tuple: boxes (N, 4) xyxy pixels, labels (N,), rater id of each box (N,), and the
        raters ``r0000``... who read the image: ``Detections.from_raters``' first four
        arguments (the image is 512 x 512).

    Examples:
        >>> boxes, labels, rids, names = crowded_reads(2)
        >>> boxes.shape, names
        ((6, 4), ['r0000', 'r0001'])
    """
    rng = np.random.default_rng(seed)
    ctr = np.array([[100.0, 100.0], [150.0, 110.0], [120.0, 160.0]])
    size = np.array([[70.0, 60.0], [60.0, 70.0], [80.0, 70.0]])
    names = [f'r{k:04d}' for k in range(num_raters)]
    boxes, labels, rids = [], [], []
    for r in names:
        for o in range(3):
            if rng.random() < 0.8:
                c = ctr[o] + rng.normal(0, 0.08, 2) * size[o]
                s = size[o] * np.exp(rng.normal(0, 0.08, 2))
                boxes.append([*(c - s / 2), *(c + s / 2)])
                labels.append(int(rng.integers(0, num_classes)) if rng.random() < 0.1 else o)
                rids.append(r)
    return np.array(boxes), labels, rids, names
