"""Data-loading throughput: MultiRaterCocoDataset(fusion=...) vs stock CocoDataset.

Generates a small image set (random smooth PNGs, 3 raters drawing jittered boxes around
1-4 objects per image, some negatives) in a temporary directory, then times full passes
over the datasets in one process, interleaved chunk by chunk, several epochs per run:

* stock: ``CocoDataset`` on the gold boxes, pipeline LoadImageFromFile, LoadAnnotations,
  Resize, RandomFlip, PackDetInputs;
* fused: ``MultiRaterCocoDataset(fusion=dict(method='wbf', iou_thr=0.4))`` on the raters'
  boxes, the same pipeline ending in ``PackMultiRaterInputs`` (the configs' pipeline). The
  fusion runs once, when the dataset loads; its cost is reported apart (``load_s``: building
  each dataset, the stock one included).

Prints images/s of each (median over the timed runs) and the ratio fused / stock (median of
the per-run ratios; acceptance: fused >= 0.97). Run it under ``flock /tmp/heavy.lock`` on a
shared machine::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_dataloading.py
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def make_set(root: str, num_images: int, size: int, num_raters: int, seed: int) -> None:
    """Write images/, multirater.json and gold.json under ``root``."""
    import cv2

    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    raters = [f'R{k + 1}' for k in range(num_raters)]
    images, gold, multi = [], [], []
    for i in range(num_images):
        name = f'{i:05d}.png'
        # smooth noise: PNG decodes at a realistic cost (pure noise does not compress)
        small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(
            {'id': i + 1, 'file_name': name, 'width': size, 'height': size, 'annotators': raters}
        )
        n_obj = int(rng.integers(0, 5))  # 0 = a negative image
        for _ in range(n_obj):
            w, h = rng.uniform(0.1, 0.4, 2) * size
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            cat = int(rng.integers(1, 4))
            gold.append(
                {
                    'id': len(gold) + 1,
                    'image_id': i + 1,
                    'category_id': cat,
                    'bbox': [x, y, w, h],
                    'area': w * h,
                    'iscrowd': 0,
                }
            )
            for r in raters:
                if rng.random() < 0.1:
                    continue  # this rater missed the object
                j = rng.normal(0, 0.05 * min(w, h), 4)
                x1, y1 = max(0.0, x + j[0]), max(0.0, y + j[1])
                x2, y2 = min(size, x + w + j[2]), min(size, y + h + j[3])
                rcat = cat if rng.random() < 0.85 else int(rng.integers(1, 4))
                multi.append(
                    {
                        'id': len(multi) + 1,
                        'image_id': i + 1,
                        'category_id': rcat,
                        'bbox': [x1, y1, x2 - x1, y2 - y1],
                        'annotator_id': r,
                    }
                )
    cats = [{'id': k, 'name': f'class{k}'} for k in (1, 2, 3)]
    plain_images = [{k: v for k, v in im.items() if k != 'annotators'} for im in images]
    with open(osp.join(root, 'gold.json'), 'w') as f:
        json.dump({'images': plain_images, 'annotations': gold, 'categories': cats}, f)
    with open(osp.join(root, 'multirater.json'), 'w') as f:
        json.dump({'images': images, 'annotations': multi, 'categories': cats}, f)


#: variant -> dataset type, annotation file and the dataset arguments of the variant
VARIANTS = {
    'stock': ('CocoDataset', 'gold.json', {}),
    'fused': (
        'MultiRaterCocoDataset',
        'multirater.json',
        dict(fusion=dict(method='wbf', iou_thr=0.4)),
    ),
}


def build(root: str, variant: str, scale: int):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    dataset_type, ann_file, extra = VARIANTS[variant]
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(scale, scale), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackMultiRaterInputs' if variant == 'fused' else 'PackDetInputs'),
    ]
    return DATASETS.build(
        dict(
            type=dataset_type,
            data_root=root,
            ann_file=ann_file,
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=('class1', 'class2', 'class3')),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=pipeline,
            **extra,
        )
    )


def run_epochs(ds, epochs: int) -> float:
    """CPU seconds of this process for ``epochs`` full passes in index order."""
    t0 = time.process_time()
    for _ in range(epochs):
        for i in range(len(ds)):
            ds[i]
    return time.process_time() - t0


def timed_run(datasets: dict, epochs: int, chunk: int, shift: int) -> dict[str, float]:
    """CPU seconds per variant for ``epochs`` passes, interleaved chunk by chunk.

    The variants take turns on each chunk of ``chunk`` images (rotating who goes first),
    so a change in machine load hits all of them alike: on a shared machine this matters
    more than anything else. CPU time rather than wall time, so waiting for a core is
    not counted.
    """
    names = list(datasets)
    total = dict.fromkeys(names, 0.0)
    n = len(next(iter(datasets.values())))
    turn = shift
    for _ in range(epochs):
        for start in range(0, n, chunk):
            idx = range(start, min(start + chunk, n))
            turn += 1
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                ds = datasets[name]
                t0 = time.process_time()
                for i in idx:
                    ds[i]
                total[name] += time.process_time() - t0
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=300)
    p.add_argument('--size', type=int, default=128, help='image side in px (default 128)')
    p.add_argument('--scale', type=int, default=160, help='Resize target side (default 160)')
    p.add_argument('--raters', type=int, default=3)
    p.add_argument('--epochs', type=int, default=6, help='passes per timed run (default 6)')
    p.add_argument('--repeats', type=int, default=4, help='timed runs (default 4)')
    p.add_argument('--chunk', type=int, default=10, help='images per interleaved turn')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', help='also write the numbers to this JSON file')
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import earl_mmdet  # noqa: F401  (registers the dataset and transforms)

    with tempfile.TemporaryDirectory(prefix='earl_bench_') as root:
        make_set(root, args.num_images, args.size, args.raters, args.seed)
        load_s, datasets = {}, {}
        for name in VARIANTS:
            t0 = time.process_time()
            datasets[name] = build(root, name, args.scale)
            load_s[name] = round(time.process_time() - t0, 3)
        for ds in datasets.values():
            run_epochs(ds, 1)  # warm the page cache and lazy imports; not timed
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(args.repeats):
            for name, sec in timed_run(datasets, args.epochs, args.chunk, r).items():
                times[name].append(sec)
        n = args.num_images * args.epochs
        ips = {k: [n / t for t in v] for k, v in times.items()}
        fused = [k for k in VARIANTS if k != 'stock']
        per_run = {k: [s / f for s, f in zip(times['stock'], times[k])] for k in fused}
        result = {
            'date': time.strftime('%Y-%m-%d %H:%M %Z'),
            'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
            f'python {platform.python_version()}',
            'images': args.num_images,
            'size': args.size,
            'scale': args.scale,
            'epochs_per_run': args.epochs,
            'repeats': args.repeats,
            'pipelines': {
                k: [type(t).__name__ for t in ds.pipeline.transforms] for k, ds in datasets.items()
            },
            'img_per_s_median': {k: round(statistics.median(v), 1) for k, v in ips.items()},
            'ratio_median': {k: round(statistics.median(v), 3) for k, v in per_run.items()},
            'ratio_per_run_min_max': {
                k: [round(min(v), 3), round(max(v), 3)] for k, v in per_run.items()
            },
            'ratio_of_sums': {k: round(sum(times['stock']) / sum(times[k]), 3) for k in fused},
            'load_s': load_s,
            'runs_cpu_s': {k: [round(x, 3) for x in v] for k, v in times.items()},
        }
    sys.stdout.write(json.dumps(result, indent=2) + '\n')
    sys.stdout.write(
        f'fused/stock throughput ratio (median of {args.repeats} runs): '
        f'{result["ratio_median"]["fused"]:.3f} (acceptance >= 0.97); dataset build (s): '
        f'{load_s}\n'
    )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
