"""Benchmark: every aggregator and the rater report on one image with many boxes.

One image holds ``N`` boxes: N / 8 objects (sizes 20-200 px, on a square canvas whose side
grows with sqrt(N), so the density of objects stays the same), each marked by each of 10
raters with probability 0.8 (box jittered by 5 % of its size, label among 3 classes
flipped with probability 0.1). Deterministic in ``--seed``.

Cases, each run in its own child process under an address-space limit (``--mem-gb``), so
that an O(N^2) step shows up as a MemoryError instead of swapping the machine:

* ``cluster``: ``cluster_boxes(boxes, rater_ids, 0.4)`` (class-agnostic, average linkage);
* ``na``, ``rater`` (``rater:R1``), ``mv``, ``wbf``: that aggregator on the image;
* ``em``, ``presence_em``: that aggregator, ``fit([image])`` then the call on the image
  (``presence_em`` fits the presence-aware EM and, for its box weights, ``em``'s model);
* ``report``: ``rater_report([image])`` (what ``tools/analyze_raters.py`` computes:
  leave-one-out ``mv``, EM, pairwise F1, Krippendorff's alpha, partner statistics, WBF
  agreement shares);
* ``tool``: ``tools/analyze_raters.py FILE --out DIR --no-plots`` in-process on the
  image written as a multi-rater COCO file (loading and checking the file, the report,
  writing ``report.json`` and ``summary.md``; the figures are R x R, not timed).

Each case prints the best wall-clock of ``--repeat`` runs and the peak of the memory
allocated during one more run under ``tracemalloc`` (numpy reports its buffers to it).
To measure another checkout, point ``PYTHONPATH`` at it.

Run (heavy: wrap it so that it does not compete with other jobs)::

    flock /tmp/heavy.lock env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/bench_clustering.py [--quick] [--sizes 2000 20000] [--cases mv report]

``--quick``: 20,000 boxes only, one timed run per case (about a minute on 2 cores).
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
CASES = ('cluster', 'na', 'rater', 'mv', 'wbf', 'em', 'presence_em', 'report', 'tool')


def make_image(num_boxes: int, seed: int = 0):
    """One Detections with about ``num_boxes`` boxes (see the module docstring)."""
    from earl_core.structures import Detections

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
    return Detections.from_raters(
        boxes=np.concatenate(boxes),
        labels=np.concatenate(labels).astype(np.int64),
        rater_ids=np.asarray(rids, dtype=str),
        raters=raters,
        width=side,
        height=side,
        image_id=0,
    )


def case_fn(case: str, image):
    from earl_core.fusion.aggregators import build_aggregator
    from earl_core.fusion.matching import cluster_boxes
    from earl_core.metrics.rater_report import rater_report

    if case == 'cluster':
        return lambda: cluster_boxes(image.boxes, image.rater_ids, 0.4)
    if case in ('na', 'rater', 'mv', 'wbf'):
        agg = build_aggregator('rater:R1' if case == 'rater' else case)
        return lambda: agg(image)
    if case in ('em', 'presence_em'):
        return lambda: build_aggregator(case).fit([image])(image)
    if case == 'report':
        return lambda: rater_report([image])
    if case == 'tool':
        return tool_fn(image)
    raise ValueError(f'unknown case {case!r}')


def tool_fn(image):
    """``analyze_raters.main`` on ``image`` written as a multi-rater COCO file."""
    import atexit
    import contextlib
    import importlib.util
    import io
    import os.path as osp
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix='bench_clustering_')
    atexit.register(shutil.rmtree, tmp, True)
    path = osp.join(tmp, 'multi.json')
    anns = [
        {
            'id': k + 1,
            'image_id': 1,
            'category_id': int(lab) + 1,
            'bbox': [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            'annotator_id': str(r),
        }
        for k, ((x1, y1, x2, y2), lab, r) in enumerate(
            zip(image.boxes.tolist(), image.labels.tolist(), image.rater_ids.tolist())
        )
    ]
    data = {
        'images': [
            {
                'id': 1,
                'file_name': 'a.png',
                'width': image.width,
                'height': image.height,
                'annotators': list(image.raters),
            }
        ],
        'annotations': anns,
        'categories': [{'id': c + 1, 'name': f'c{c}'} for c in range(NUM_CLASSES)],
    }
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    tool = osp.join(root, 'tools', 'analyze_raters.py')
    # as `python tools/analyze_raters.py` runs it: its folder first on the path (for
    # tools/_common.py); this process (`--one tool N`) measures only the tool
    sys.path.insert(0, osp.dirname(tool))
    spec = importlib.util.spec_from_file_location('analyze_raters', tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            assert mod.main([path, '--out', osp.join(tmp, 'out'), '--no-plots']) == 0

    return run


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
    p.add_argument('--cases', nargs='+', choices=CASES, default=list(CASES))
    p.add_argument('--repeat', type=int, default=3, help='timed runs per case (best is shown)')
    p.add_argument('--quick', action='store_true', help='--sizes 20000 --repeat 1')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--mem-gb', type=float, default=4.0, help='address-space limit per case')
    p.add_argument('--one', nargs=2, metavar=('CASE', 'N'), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.sizes, args.repeat = [20000], 1
    if args.one:
        res = run_one(args.one[0], int(args.one[1]), args.seed, args.repeat, args.mem_gb)
        print(json.dumps(res))
        return
    print(f'{"case":12} {"boxes":>6} {"best (s)":>9} {"peak (MiB)":>11}')
    for n in args.sizes:
        for case in args.cases:
            cmd = [sys.executable, __file__, '--one', case, str(n)]
            cmd += ['--seed', str(args.seed), '--repeat', str(args.repeat)]
            cmd += ['--mem-gb', str(args.mem_gb)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = proc.stderr.strip().splitlines()
                print(f'{case:12} {n:>6} failed: {err[-1] if err else proc.returncode}')
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if 'error' in r:
                print(f'{case:12} {r["boxes"]:>6} {r["error"]:>21}')
            else:
                print(f'{case:12} {r["boxes"]:>6} {r["best_s"]:>9.3f} {r["peak_mib"]:>11.1f}')


if __name__ == '__main__':
    main()
