"""Benchmark DetectionMAPMetric.compute_metrics: faster-coco-eval vs pycocotools.

Evaluates 3,000 images x 14 classes (~36k detections, generated deterministically) three
ways and checks that they agree:

1. ``ours-fast``: ``DetectionMAPMetric(backend='faster_coco_eval').compute_metrics`` -
   one evaluation at IoU [0.4, 0.5:0.95], all summary numbers and the per-class tables.
2. ``ours-pycoco``: the same metric with ``backend='pycocotools'``.
3. ``plain-pycoco``: what a user does without the metric: pycocotools ``loadRes`` +
   ``COCOeval`` twice (default params for mAP@[.5:.95]/AP50/AP75/APs/m/l and
   ``iouThrs=[0.4]`` for mAP@0.4) plus the per-class tables from both precision arrays.

Run (2 shared cores: take the heavy lock)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_metric.py

Prints the timings (best and median of ``--repeats``), the ratios and the largest
difference between the numbers; exit status 1 if the numbers differ beyond 1e-12 or the
speed-up over ``ours-pycoco`` is below ``--min-ratio``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def make_data(num_images: int, num_classes: int, seed: int = 0):
    """Gold COCO dict and mmdet-style ``(gt, pred)`` results, deterministic in ``seed``.

    Per image: 0-6 gt boxes (a third of the images have none, like normal chest X-rays);
    each gt is detected 1-5 times with jitter (class flipped 10 % of the time), plus 0-12
    false positives: ~12 detections per image.
    """
    rng = np.random.default_rng(seed)
    size = 1024.0
    images, anns, results = [], [], []
    for i in range(num_images):
        img_id = i + 1
        images.append(dict(id=img_id, width=int(size), height=int(size), file_name=f'{i}.png'))
        n_gt = int(rng.integers(0, 7)) if rng.uniform() > 1 / 3 else 0
        wh = rng.uniform(16, 300, (n_gt, 2))
        xy = rng.uniform(0, size - 300, (n_gt, 2))
        gl = rng.integers(0, num_classes, n_gt)
        for b, c in zip(np.concatenate([xy, wh], 1).tolist(), gl.tolist()):
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=img_id,
                    category_id=c + 1,
                    bbox=b,
                    area=b[2] * b[3],
                    iscrowd=0,
                )
            )
        reps = rng.integers(1, 6, n_gt)
        src = np.repeat(np.arange(n_gt), reps)
        jit = rng.normal(0, 0.12, (src.size, 4)) * np.repeat(wh[src], 2, axis=1)
        tp = np.concatenate([xy[src], xy[src] + wh[src]], 1) + jit
        tl = gl[src].copy()
        flip = rng.uniform(size=src.size) < 0.1
        tl[flip] = rng.integers(0, num_classes, int(flip.sum()))
        n_fp = int(rng.integers(0, 13))
        fxy = rng.uniform(0, size - 200, (n_fp, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(10, 200, (n_fp, 2))], 1)
        boxes = np.clip(np.concatenate([tp, fp]), 0, size).astype(np.float32)
        labels = np.concatenate([tl, rng.integers(0, num_classes, n_fp)]).astype(np.int64)
        scores = np.concatenate(
            [rng.uniform(0.3, 1.0, src.size), rng.uniform(0.0, 0.7, n_fp)]
        ).astype(np.float32)
        results.append(({}, dict(img_id=img_id, bboxes=boxes, scores=scores, labels=labels)))
    cats = [dict(id=c + 1, name=f'class_{c:02d}') for c in range(num_classes)]
    return dict(images=images, annotations=anns, categories=cats), results


def run_ours(backend: str, ann_file: str, classes, results):
    from earl_mmdet.evaluation.metrics import DetectionMAPMetric

    metric = DetectionMAPMetric(ann_file=ann_file, backend=backend)
    metric.dataset_meta = dict(classes=classes)
    t0 = time.perf_counter()
    scalars = metric.compute_metrics(results)
    dt = time.perf_counter() - t0
    rows = metric.report['tables']['per_class']['rows']
    per_class = {r[0]: r[2:] for r in rows}  # AP@0.4, AP, AP50, AP75
    return dt, dict(scalars), per_class


def run_plain_pycocotools(gold: dict, results, classes):
    """Two plain pycocotools evaluations + per-class tables (what the metric replaces)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_ids = [c['id'] for c in gold['categories']]

    def class_ap(prec, t_sel):
        out = []
        for k in range(prec.shape[2]):
            p = prec[t_sel, :, k, 0, -1]
            p = p[p > -1]
            out.append(float(p.mean()) if p.size else None)
        return out

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        dets = []
        for _, p in results:
            for b, s, lab in zip(p['bboxes'].tolist(), p['scores'].tolist(), p['labels'].tolist()):
                dets.append(
                    dict(
                        image_id=p['img_id'],
                        category_id=cat_ids[lab],
                        bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        score=s,
                    )
                )
        coco_gt = COCO()
        coco_gt.dataset = gold
        coco_gt.createIndex()
        runs = []
        for thrs in (None, [0.4]):
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval(coco_gt, coco_dt, 'bbox')
            if thrs is not None:
                ev.params.iouThrs = np.array(thrs)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            runs.append(ev)
    std, at40 = runs
    p_std, p_40 = std.eval['precision'], at40.eval['precision']
    ap40 = class_ap(p_40, slice(None))
    ap = class_ap(p_std, slice(None))
    ap50 = class_ap(p_std, slice(0, 1))
    ap75 = class_ap(p_std, slice(5, 6))
    dt = time.perf_counter() - t0
    scalars = dict(
        zip(['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'], map(float, std.stats[:6]))
    )
    scalars['mAP_40'] = float(at40.stats[0])
    per_class = {n: [ap40[k], ap[k], ap50[k], ap75[k]] for k, n in enumerate(classes)}
    return dt, scalars, per_class


def max_diff(a: dict, b: dict, pa: dict, pb: dict) -> float:
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    d = max(abs(a[k] - b[k]) for k in a)
    for n in pa:
        for x, y in zip(pa[n], pb[n]):
            if (x is None) != (y is None):
                return float('inf')
            if x is not None:
                d = max(d, abs(x - y))
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--images', type=int, default=3000)
    ap.add_argument('--classes', type=int, default=14)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--min-ratio', type=float, default=5.0)
    ap.add_argument('--json', help='also write the measurements to this JSON file')
    args = ap.parse_args(argv)

    from importlib.metadata import version

    from mmengine.logging import MMLogger

    from earl_core.metrics.ap import prepare_coco_gt

    # The metric logs its per-class table on every run: keep the timing output readable.
    MMLogger.get_instance('bench_metric', log_level='WARNING')

    gold, results = make_data(args.images, args.classes)
    n_det = sum(len(p['scores']) for _, p in results)
    classes = [c['name'] for c in gold['categories']]
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = osp.join(tmp, 'gold.json')
        with open(ann_file, 'w') as f:
            json.dump(gold, f)
        times: dict[str, list[float]] = {'ours-fast': [], 'ours-pycoco': [], 'plain-pycoco': []}
        out = {}
        for _ in range(args.repeats):
            for name in times:
                if name == 'plain-pycoco':
                    dt, s, pc = run_plain_pycocotools(prepare_coco_gt(gold), results, classes)
                else:
                    backend = 'faster_coco_eval' if name == 'ours-fast' else 'pycocotools'
                    dt, s, pc = run_ours(backend, ann_file, classes, results)
                times[name].append(dt)
                out[name] = (s, pc)
    d_fast = max_diff(
        *[out['ours-fast'][0], out['plain-pycoco'][0]], out['ours-fast'][1], out['plain-pycoco'][1]
    )
    d_py = max_diff(
        out['ours-pycoco'][0], out['plain-pycoco'][0], out['ours-pycoco'][1], out['plain-pycoco'][1]
    )
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio_py = best['ours-pycoco'] / best['ours-fast']
    ratio_plain = best['plain-pycoco'] / best['ours-fast']
    lines = [
        f'data: {args.images} images x {args.classes} classes, {len(gold["annotations"])} gt, '
        f'{n_det} detections; repeats {args.repeats}',
        f'versions: faster-coco-eval {version("faster-coco-eval")}, pycocotools '
        f'{version("pycocotools")}, numpy {np.__version__}, python {platform.python_version()}',
        f'machine: {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}',
    ]
    for k in times:
        lines.append(
            f'{k:>13}: best {best[k]:.3f} s, median {med[k]:.3f} s '
            f'({", ".join(f"{t:.3f}" for t in times[k])})'
        )
    lines += [
        f'ratio ours-pycoco / ours-fast: {ratio_py:.2f}x',
        f'ratio plain-pycoco / ours-fast: {ratio_plain:.2f}x',
        f'max |diff| vs plain pycocotools: ours-fast {d_fast:.3g}, ours-pycoco {d_py:.3g}',
        'numbers: ' + ', '.join(f'{k} {v:.4f}' for k, v in out['ours-fast'][0].items()),
    ]
    sys.stdout.write('\n'.join(lines) + '\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    times=times,
                    ratio_pycoco=ratio_py,
                    ratio_plain=ratio_plain,
                    max_diff_fast=d_fast,
                    max_diff_pycoco=d_py,
                    metrics=out['ours-fast'][0],
                ),
                f,
                indent=1,
            )
    ok = d_fast <= 1e-12 and d_py == 0.0 and ratio_py >= args.min_ratio
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
