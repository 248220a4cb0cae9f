"""Benchmark: earl_core.fusion.wbf against ensemble-boxes 1.0.9 on a VinDr-shaped input.

The input is generated deterministically from ``--seed``: 15,000 images, each read by 3 of
17 raters, ~30 % of the images with boxes (~36k rater boxes over 14 classes), image sizes
2000-3000 px. Per positive image: 1 + Poisson(3) true findings of skewed classes; each rater
marks each finding with probability 0.6 (box jittered by 8 % of its size, label flipped
with probability 0.15) and adds a false box with probability 0.3.

Every fusion runs over all images, one call per image, on pre-built inputs (the conversion
of the dataset into each library's input format is not timed):

* ``ensemble-boxes``: ``ensemble_boxes.weighted_boxes_fusion`` on coordinates normalised by
  the image size, one list per rater (in the image's rater order), scores 1, weights 1;
* ``weighted_boxes_fusion``: ours, the same call on the same lists;
* ``fuse_raters(tie_break='input')``: ours on pixel ``Detections`` (ensemble-boxes
  tie order, so the same boxes);
* ``fuse_raters`` (default ``tie_break='geometry'``): ours, order-independent ties.

Outputs are checked: ``weighted_boxes_fusion`` must give ensemble-boxes' boxes, scores and
labels within 1e-6 (ours computes in float64, ensemble-boxes in float32), and
``fuse_raters(tie_break='input')`` (pixels, divided by the image size) likewise in the
same order, with its WBF score equal to ensemble-boxes' score. The script prints the
best wall-clock and CPU time of ``--repeat`` interleaved runs of each (garbage collector
off during a run, as ``timeit``, unless ``--gc``) and the speed ratios.

Run (heavy: wrap it so that it does not compete with other jobs)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_fusion.py [--gc] [--quick]

``--quick``: 5,000 images and 5 runs (about a third of the time).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import time
import warnings

import numpy as np

from earl_core.fusion.wbf import fuse_raters, weighted_boxes_fusion
from earl_core.structures import Detections

NUM_CLASSES = 14
NUM_RATERS = 17


def make_dataset(
    seed: int = 0,
    num_images: int = 15000,
    raters_per_image: int = 3,
    positive_fraction: float = 0.3,
) -> list[Detections]:
    """A VinDr-CXR-shaped multi-rater dataset (pixel boxes), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    raters = [f'R{k + 1}' for k in range(NUM_RATERS)]
    class_p = 1.0 / np.arange(1, NUM_CLASSES + 1)  # a few frequent findings, a long tail
    class_p /= class_p.sum()
    images = []
    for i in range(num_images):
        width, height = (float(v) for v in rng.integers(2000, 3001, 2))
        read_by = tuple(raters[k] for k in rng.choice(NUM_RATERS, raters_per_image, False))
        boxes, labels, rids = [], [], []
        if rng.random() < positive_fraction:
            n_true = 1 + rng.poisson(3.0)
            size = rng.uniform(60, 900, (n_true, 2))
            ctr = rng.uniform(size / 2, [width, height] - size / 2)
            true_lab = rng.choice(NUM_CLASSES, n_true, p=class_p)
            for r in read_by:
                for k in range(n_true):
                    if rng.random() >= 0.6:
                        continue
                    c = ctr[k] + rng.normal(0, 0.08, 2) * size[k]
                    s = size[k] * np.exp(rng.normal(0, 0.08, 2))
                    boxes.append([*(c - s / 2), *(c + s / 2)])
                    lab = true_lab[k]
                    if rng.random() < 0.15:
                        lab = rng.integers(NUM_CLASSES)
                    labels.append(int(lab))
                    rids.append(r)
                if rng.random() < 0.3:  # a false positive
                    s = rng.uniform(60, 600, 2)
                    c = rng.uniform(s / 2, [width, height] - s / 2)
                    boxes.append([*(c - s / 2), *(c + s / 2)])
                    labels.append(int(rng.choice(NUM_CLASSES, p=class_p)))
                    rids.append(r)
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        b[:, 0::2] = b[:, 0::2].clip(0, width)
        b[:, 1::2] = b[:, 1::2].clip(0, height)
        images.append(
            Detections.from_raters(
                boxes=b,
                labels=np.asarray(labels, np.int64),
                rater_ids=np.asarray(rids, dtype=str),
                raters=read_by,
                width=width,
                height=height,
                image_id=i,
            )
        )
    return images


def to_lists(ann: Detections) -> tuple[list, list, list]:
    """ensemble-boxes input: per rater (ann.raters order) normalised boxes, scores 1, labels."""
    scale = np.array([ann.width, ann.height, ann.width, ann.height])
    bl, sl, ll = [], [], []
    for r in ann.raters:
        sel = ann.rater_ids == r
        bl.append(ann.boxes[sel] / scale)
        sl.append(np.ones(int(sel.sum())))
        ll.append(ann.labels[sel])
    return bl, sl, ll


def run_interleaved(fns: dict, repeat: int, keep_gc: bool = False) -> tuple[dict, dict, dict]:
    """Time each function ``repeat`` times, interleaved (so that a change of machine load
    hits every candidate alike), by default with the garbage collector off during a run
    (as ``timeit``). Returns the best wall-clock and the best CPU (process) seconds per
    name, and each function's last output. CPU time is the steadier measure on a shared
    machine: time slices given to other processes do not count.
    """
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    outs: dict = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            if not keep_gc:
                gc.disable()
            try:
                t0 = time.perf_counter()
                c0 = time.process_time()
                outs[name] = fn()
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - t0)
            finally:
                gc.enable()
    return {k: min(v) for k, v in wall.items()}, {k: min(v) for k, v in cpu.items()}, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--images', type=int, default=15000)
    parser.add_argument('--iou-thr', type=float, default=0.4)
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--gc', action='store_true', help='keep the garbage collector on')
    parser.add_argument('--quick', action='store_true', help='5,000 images, 5 runs')
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeat = 5000, 5

    import ensemble_boxes

    warnings.simplefilter('ignore')  # ensemble-boxes warns per box on edge coordinates
    data = make_dataset(args.seed, args.images)
    lists = [to_lists(a) for a in data]
    n_boxes = sum(len(a.boxes) for a in data)
    n_pos = sum(len(a.boxes) > 0 for a in data)
    print(
        f'input: {len(data)} images, {n_pos} with boxes, {n_boxes} rater boxes, '
        f'{NUM_CLASSES} classes, {NUM_RATERS} raters, 3 per image; iou_thr={args.iou_thr}'
    )
    thr = args.iou_thr
    ref_fn = ensemble_boxes.weighted_boxes_fusion

    # Warm-up (numba import and compile of ensemble-boxes happen at import / first call).
    for bl, sl, ll in lists[:50]:
        ref_fn(bl, sl, ll, iou_thr=thr)
        weighted_boxes_fusion(bl, sl, ll, iou_thr=thr)

    fns = {
        'ensemble-boxes': lambda: [ref_fn(bl, sl, ll, iou_thr=thr) for bl, sl, ll in lists],
        'wbf': lambda: [weighted_boxes_fusion(bl, sl, ll, iou_thr=thr) for bl, sl, ll in lists],
        'input': lambda: [
            fuse_raters(a, iou_thr=thr, confidence='fused_score', tie_break='input') for a in data
        ],
        'geometry': lambda: [fuse_raters(a, iou_thr=thr, confidence='fused_score') for a in data],
    }
    best, cpu, outs = run_interleaved(fns, args.repeat, args.gc)
    ref, wbf, inp, geo = (outs[k] for k in fns)

    # Checks.
    wbf_diff = max(
        np.max(np.abs(x - y), initial=0.0) if x.shape == y.shape else np.inf
        for r, o in zip(ref, wbf)
        for x, y in zip(r, o)
    )
    wbf_equal = wbf_diff <= 1e-6
    inp_bad = 0
    geo_diff = 0
    n_fused = 0
    for a, (rb, rs, rl), fi, fg in zip(data, ref, inp, geo):
        scale = np.array([a.width, a.height, a.width, a.height])
        n_fused += len(rb)
        same = (
            len(fi) == len(rb)
            and np.allclose(fi.boxes / scale, rb, rtol=0, atol=1e-6)
            and np.array_equal(fi.labels, rl.astype(np.int64))
            and np.allclose(fi.confidence, rs, rtol=0, atol=1e-6)
        )
        inp_bad += not same
        key_r = sorted((int(lab), *np.round(b, 5)) for lab, b in zip(rl, rb))
        key_g = sorted((int(lab), *np.round(b, 5)) for lab, b in zip(fg.labels, fg.boxes / scale))
        geo_diff += key_r != key_g

    print(f'fused boxes (ensemble-boxes): {n_fused}')
    gc_state = 'on' if args.gc else 'off'
    print(
        f'seconds over all images, best of {args.repeat} interleaved runs (gc {gc_state}), '
        'wall-clock / CPU; ratios = ensemble-boxes time / ours:'
    )
    lines = [
        ('ensemble_boxes.weighted_boxes_fusion', 'ensemble-boxes', ''),
        ('ours weighted_boxes_fusion, same lists', 'wbf', f'max |diff| {wbf_diff:.1e}'),
        (
            "ours fuse_raters(tie_break='input'), px",
            'input',
            f'images differing from ensemble-boxes (>1e-6): {inp_bad}',
        ),
        (
            "ours fuse_raters(tie_break='geometry')",
            'geometry',
            f'images with another fused set than ensemble-boxes (tie order): {geo_diff}',
        ),
    ]
    w_ref, c_ref = best['ensemble-boxes'], cpu['ensemble-boxes']
    for label, key, note in lines:
        ratio = ''
        if key != 'ensemble-boxes':
            ratio = f'  ratio {w_ref / best[key]:4.2f}x / {c_ref / cpu[key]:4.2f}x'
        print(f'  {label:40s} {best[key]:6.3f} / {cpu[key]:6.3f} s{ratio}  {note}')
    print(
        f'date {datetime.date.today().isoformat()}, python {platform.python_version()}, '
        f'numpy {np.__version__}, {platform.machine()}'
    )
    if not wbf_equal or inp_bad:
        raise SystemExit('outputs differ from ensemble-boxes')


if __name__ == '__main__':
    main()
