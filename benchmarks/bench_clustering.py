"""Benchmark: box clustering on one image with many boxes (time and peak memory).

One image holds ``N`` boxes: N / 8 objects (sizes 20-200 px, on a square canvas whose side
grows with sqrt(N), so the density of objects stays the same), each marked by each of 10
raters with probability 0.8 (box jittered by 5 % of its size, label among 3 classes
flipped with probability 0.1). Deterministic in ``--seed``.

Cases, each run in its own child process under an address-space limit (``--mem-gb``), so
that an O(N^2) step shows up as a MemoryError instead of swapping the machine:

* ``cluster``: ``cluster_boxes(boxes, rater_ids, 0.4)`` (class-agnostic, average linkage);
* ``mv``: the ``mv`` aggregator on the image;
* ``em``: the ``em`` aggregator, ``fit([image])`` then the call on the image;
* ``report``: ``rater_report([image])`` (what ``tools/analyze_annotators.py`` computes).

Each case prints the best wall-clock of ``--repeat`` runs and the peak of the memory
allocated during one more run under ``tracemalloc`` (numpy reports its buffers to it).
To measure another checkout, point ``PYTHONPATH`` at it.

Run (heavy: wrap it so that it does not compete with other jobs)::

    flock /tmp/heavy.lock env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/bench_clustering.py [--sizes 2000 20000] [--cases cluster mv em report]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

NUM_RATERS = 10
NUM_CLASSES = 3


def make_image(num_boxes: int, seed: int = 0):
    """One RaterBoxes with about ``num_boxes`` boxes (see the module docstring)."""
    from earl_mmdet.core.types import RaterBoxes

    rng = np.random.default_rng(seed)
    n_obj = max(1, num_boxes // 8)
    side = 300.0 * np.sqrt(n_obj)
    size = rng.uniform(20, 200, (n_obj, 2))
    ctr = rng.uniform(size / 2, side - size / 2)
    true_lab = rng.integers(0, NUM_CLASSES, n_obj)
    raters = tuple(f'R{k + 1}' for k in range(NUM_RATERS))
    boxes, labels, rids = [], [], []
    for r in raters:
        seen = rng.random(n_obj) < 0.8
        c = ctr[seen] + rng.normal(0, 0.05, (seen.sum(), 2)) * size[seen]
        s = size[seen] * np.exp(rng.normal(0, 0.05, (seen.sum(), 2)))
        boxes.append(np.concatenate([c - s / 2, c + s / 2], 1))
        lab = true_lab[seen].copy()
        flip = rng.random(lab.shape[0]) < 0.1
        lab[flip] = rng.integers(0, NUM_CLASSES, int(flip.sum()))
        labels.append(lab)
        rids += [r] * int(seen.sum())
    return RaterBoxes(
        boxes=np.concatenate(boxes),
        labels=np.concatenate(labels).astype(np.int64),
        rater_ids=np.asarray(rids, dtype=str),
        raters=raters,
        width=side,
        height=side,
        image_id=0,
    )


def case_fn(case: str, image):
    from earl_mmdet.core.aggregators import build_aggregator
    from earl_mmdet.core.matching import cluster_boxes
    from earl_mmdet.core.rater_report import rater_report

    if case == 'cluster':
        return lambda: cluster_boxes(image.boxes, image.rater_ids, 0.4)
    if case == 'mv':
        agg = build_aggregator('mv')
        return lambda: agg(image)
    if case == 'em':
        return lambda: build_aggregator('em').fit([image])(image)
    if case == 'report':
        return lambda: rater_report([image])
    raise ValueError(f'unknown case {case!r}')


def run_one(case: str, num_boxes: int, seed: int, repeat: int, mem_gb: float) -> dict:
    limit = int(mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter('ignore')
    image = make_image(num_boxes, seed)
    fn = case_fn(case, image)
    out = {'case': case, 'boxes': int(image.boxes.shape[0])}
    try:
        best = float('inf')
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        tracemalloc.start()
        fn()
        out['peak_mib'] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out['best_s'] = best
    except MemoryError:
        out['error'] = 'MemoryError'
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[2000, 20000])
    p.add_argument('--cases', nargs='+', default=['cluster', 'mv', 'em', 'report'])
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--mem-gb', type=float, default=4.0, help='address-space limit per case')
    p.add_argument('--one', nargs=2, metavar=('CASE', 'N'), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        res = run_one(args.one[0], int(args.one[1]), args.seed, args.repeat, args.mem_gb)
        print(json.dumps(res))
        return
    print(f'{"case":8} {"boxes":>6} {"best (s)":>9} {"peak (MiB)":>11}')
    for n in args.sizes:
        for case in args.cases:
            cmd = [sys.executable, __file__, '--one', case, str(n)]
            cmd += ['--seed', str(args.seed), '--repeat', str(args.repeat)]
            cmd += ['--mem-gb', str(args.mem_gb)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = proc.stderr.strip().splitlines()
                print(f'{case:8} {n:>6} failed: {err[-1] if err else proc.returncode}')
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if 'error' in r:
                print(f'{case:8} {r["boxes"]:>6} {r["error"]:>21}')
            else:
                print(f'{case:8} {r["boxes"]:>6} {r["best_s"]:>9.3f} {r["peak_mib"]:>11.1f}')


if __name__ == '__main__':
    main()
