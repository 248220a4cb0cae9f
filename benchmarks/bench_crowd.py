"""Benchmark: crowd-sized data through every aggregator and ``tools/analyze_raters.py``.

Three data sets, deterministic in ``--seed``:

* **crowd file**: ``--images`` images (50,000) read by 3 of ``--raters`` raters (1,000)
  each, chosen at random; each image holds 1-3 objects (20-120 px on 512 x 512), each
  reader marks each object with probability 0.8 (box jittered by 5 % of its size, label
  among 3 classes flipped with probability 0.1) and draws a false positive with
  probability 0.1. Written once as a multi-rater COCO file.
* **one image, many raters**: one image read by ``--one-image-raters`` raters (1,000),
  3 objects that overlap one another, each marked with probability 0.8 (centre and size
  jittered by 8 %, label flipped with probability 0.1): about 2,400 boxes in components
  that are no cliques.
* **lone boxes**: one image holding ``--singletons`` boxes (20,000) that overlap nothing,
  each drawn by one of 3 raters.

Cases, each in its own child process; peak resident memory (``ru_maxrss`` of that child,
from ``os.wait4``) is measured from outside, and so is the time of the crowd cases (the
whole process: interpreter start, imports, loading the file, the computation); the
time of ``one_image`` and ``lone_boxes`` is their computation, measured inside:

* ``load``: ``load_multirater_coco`` on the crowd file (the start of every case below);
* ``na``, ``rater`` (``rater:<first rater>``, images it did not read skipped), ``mv``,
  ``wbf``, ``em``, ``presence_em``, ``bayes``: load the crowd file, then ``fuse_all``
  (fit, then fuse every image), what ``tools/fuse_annotations.py`` computes;
* ``analyze``: ``tools/analyze_raters.py FILE --out DIR`` (the report, JSON, Markdown
  and both figures);
* ``one_image``: on the one image, ``fuse_raters`` and each aggregator (fit + call); its
  time is the total;
* ``lone_boxes``: ``presence_em`` (fit + call) on the lone boxes.

Targets (issue 25): each crowd case within 60 s and 2 GiB, ``one_image`` within 5 s,
``lone_boxes`` within 2 s. To measure another checkout, point ``PYTHONPATH`` at it.

Run (heavy: run it when the machine is quiet; it uses one core)::

    nice env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_crowd.py [--quick]

``--quick``: 5,000 images (about a minute in all on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from crowd_image import crowded_reads

NUM_CLASSES = 3
#: Every registered aggregator (``earl_core.fusion.base.AGGREGATORS``).
AGGREGATORS = ('na', 'rater', 'mv', 'wbf', 'em', 'presence_em', 'bayes')
CASES = ('load',) + AGGREGATORS + ('analyze', 'one_image', 'lone_boxes')
#: case -> (seconds, GiB) it must stay within.
TARGETS = {**{c: (60.0, 2.0) for c in ('load',) + AGGREGATORS + ('analyze',)}}
TARGETS.update(one_image=(5.0, 2.0), lone_boxes=(2.0, 2.0))
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _reads(rng: np.random.Generator, ctr: np.ndarray, size: np.ndarray, truth: np.ndarray):
    """One reader's boxes (M, 4) and labels on objects ``ctr`` / ``size`` / ``truth``."""
    seen = rng.random(len(truth)) < 0.8
    c = ctr[seen] + rng.normal(0, 0.05, (seen.sum(), 2)) * size[seen]
    s = size[seen] * np.exp(rng.normal(0, 0.05, (seen.sum(), 2)))
    lab = truth[seen].copy()
    flip = rng.random(lab.shape[0]) < 0.1
    lab[flip] = rng.integers(0, NUM_CLASSES, int(flip.sum()))
    boxes = np.concatenate([c - s / 2, c + s / 2], 1)
    if rng.random() < 0.1:  # a false positive
        xy = rng.uniform(0, 400, 2)
        boxes = np.concatenate([boxes, [[*xy, *(xy + 60)]]])
        lab = np.append(lab, rng.integers(0, NUM_CLASSES))
    return np.clip(boxes, 0, 512), lab


def _objects(rng: np.random.Generator, n: int):
    size = rng.uniform(20, 120, (n, 2))
    return rng.uniform(size / 2, 512 - size / 2), size, rng.integers(0, NUM_CLASSES, n)


def make_crowd_coco(num_images: int, num_raters: int, seed: int = 0, per_image: int = 3) -> dict:
    """The crowd file as a multi-rater COCO dict (see the module docstring)."""
    rng = np.random.default_rng(seed)
    names = [f'R{k:04d}' for k in range(num_raters)]
    images, anns = [], []
    for i in range(num_images):
        read_by = rng.choice(num_raters, per_image, replace=False)
        ctr, size, truth = _objects(rng, int(rng.integers(1, 4)))
        for r in read_by:
            boxes, lab = _reads(rng, ctr, size, truth)
            for b, c in zip(boxes.tolist(), lab.tolist()):
                x1, y1, x2, y2 = (round(v, 2) for v in b)
                anns.append(
                    dict(
                        id=len(anns) + 1,
                        image_id=i + 1,
                        category_id=c + 1,
                        bbox=[x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                        area=round((x2 - x1) * (y2 - y1), 2),
                        iscrowd=0,
                        annotator_id=names[r],
                    )
                )
        images.append(
            dict(
                id=i + 1,
                file_name=f'{i + 1:06d}.png',
                width=512,
                height=512,
                annotators=[names[r] for r in read_by],
            )
        )
    cats = [dict(id=c + 1, name=f'class{c}') for c in range(NUM_CLASSES)]
    return dict(images=images, annotations=anns, categories=cats)


def one_image(num_raters: int, seed: int = 0):
    """One Detections read by ``num_raters`` raters (:func:`crowd_image.crowded_reads`)."""
    from earl_core.structures import Detections

    reads = crowded_reads(num_raters, seed, NUM_CLASSES)
    return Detections.from_raters(*reads, 512.0, 512.0, 'crowd')


def lone_boxes(num_boxes: int, seed: int = 0):
    """One Detections with ``num_boxes`` boxes that overlap nothing, 3 raters."""
    from earl_core.structures import Detections

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(num_boxes)))
    xy = np.stack(np.divmod(np.arange(num_boxes), side), 1) * 40.0
    read_by = ('a', 'b', 'c')
    return Detections.from_raters(
        np.concatenate([xy, xy + 20], 1),
        rng.integers(0, NUM_CLASSES, num_boxes),
        rng.choice(read_by, num_boxes).tolist(),
        read_by,
        image_id='lone',
    )


def run_case(case: str, args: argparse.Namespace) -> dict:
    """Run one case in this process; returns what it measured itself."""
    warnings.simplefilter('ignore')
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.fusion.wbf import fuse_raters
    from earl_core.io.coco import load_multirater_coco

    out: dict = {'case': case}
    t0 = time.perf_counter()
    if case in ('load',) + AGGREGATORS:
        coco = load_multirater_coco(args.data)
        out['load_s'] = time.perf_counter() - t0
        out['images'] = len(coco.images)
        out['boxes'] = coco.num_boxes
        out['raters'] = len({r for im in coco.images for r in im.raters})
        if case != 'load':
            first = min(r for im in coco.images for r in im.raters)
            spec = dict(type=f'rater:{first}', on_missing='skip') if case == 'rater' else case
            t1 = time.perf_counter()
            fused = build_aggregator(spec).fuse_all(coco.images)
            out['fuse_s'] = time.perf_counter() - t1
            out['fused_boxes'] = sum(len(f) for f in fused)
    elif case == 'one_image':
        image = one_image(args.one_image_raters, args.seed)
        out['boxes'] = len(image)
        out['raters'] = len(image.raters)
        t0 = time.perf_counter()
        fuse_raters(image)
        out['fuse_raters_s'] = time.perf_counter() - t0
        for name in AGGREGATORS:
            spec = 'rater:R0000' if name == 'rater' else name
            t1 = time.perf_counter()
            build_aggregator(spec).fuse_all([image])
            out[f'{name}_s'] = time.perf_counter() - t1
    elif case == 'lone_boxes':
        image = lone_boxes(args.singletons, args.seed)
        out['boxes'] = len(image)
        t0 = time.perf_counter()
        build_aggregator('presence_em').fuse_all([image])
    else:
        raise ValueError(case)
    out['work_s'] = time.perf_counter() - t0
    return out


def child(cmd: list[str], log: str, timeout: float) -> tuple[float, float, int | None]:
    """Run ``cmd``; its wall seconds, peak resident GiB and return code (None: killed after
    ``timeout`` seconds)."""
    t0 = time.perf_counter()
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        rc: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = rc
    return time.perf_counter() - t0, usage.ru_maxrss / 2**20, rc  # ru_maxrss: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=50_000)
    p.add_argument('--raters', type=int, default=1_000)
    p.add_argument('--one-image-raters', type=int, default=1_000)
    p.add_argument('--singletons', type=int, default=20_000)
    p.add_argument('--cases', nargs='+', choices=CASES, default=list(CASES))
    p.add_argument('--quick', action='store_true', help='--images 5000')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--timeout', type=float, default=600, help='seconds before a case is killed')
    p.add_argument('--one', metavar='CASE', help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args)))
        return
    if args.quick:
        args.images = 5_000
    tmp = tempfile.mkdtemp(prefix='bench_crowd_')
    try:
        data = osp.join(tmp, 'crowd.json')
        t0 = time.perf_counter()
        with open(data, 'w') as f:
            json.dump(make_crowd_coco(args.images, args.raters, args.seed), f)
        print(
            f'crowd file: {args.images} images x {args.raters} raters (3 per image), '
            f'{osp.getsize(data) / 2**20:.1f} MiB, written in {time.perf_counter() - t0:.1f} s'
        )
        print('| case | time (s) | peak RSS (GiB) | target | within | details |')
        print('| --- | ---: | ---: | --- | --- | --- |')
        for case in args.cases:
            log = osp.join(tmp, f'{case}.log')
            if case == 'analyze':
                tool = osp.join(ROOT, 'tools', 'analyze_raters.py')
                cmd = [sys.executable, tool, data, '--out', osp.join(tmp, 'report')]
            else:
                cmd = [sys.executable, __file__, '--one', case, '--data', data]
                cmd += ['--seed', str(args.seed), '--singletons', str(args.singletons)]
                cmd += ['--one-image-raters', str(args.one_image_raters)]
            wall, gib, rc = child(cmd, log, args.timeout)
            with open(log) as f:
                text = f.read().strip().splitlines()
            if rc is None:
                print(f'| {case} | > {args.timeout:g} | {gib:.2f} | | NO | killed (timeout) |')
                continue
            if rc != 0:
                why = text[-1] if text else rc
                print(f'| {case} | {wall:.1f} | {gib:.2f} | | failed | {why} |')
                continue
            details = ''
            if case != 'analyze':
                res = json.loads(text[-1])
                keep = {k: v for k, v in res.items() if k != 'case'}
                details = ', '.join(
                    f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}' for k, v in keep.items()
                )
            secs, lim = TARGETS[case]
            # The crowd cases: the whole child process (start, load, compute); the in-memory
            # cases: the computation (their data is generated in the child first).
            spent = res['work_s'] if case in ('one_image', 'lone_boxes') else wall
            ok = spent <= secs and gib <= lim
            print(
                f'| {case} | {spent:.1f} | {gib:.2f} | {secs:g} s, {lim:g} GiB | '
                f'{"yes" if ok else "NO"} | {details} |'
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
