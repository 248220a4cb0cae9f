"""Convert VinDr-CXR (Kaggle VinBigData or PhysioNet) labels + DICOMs to (multi-rater) COCO.

Training labels (Kaggle ``train.csv`` or PhysioNet ``annotations_train.csv``) become a
multi-rater COCO file: every box keeps its radiologist (``annotator_id``), every image lists
the radiologists who read it (``annotators``, 'No finding' readers included, so normal
images stay as true negatives). PhysioNet ``annotations_test.csv`` (consensus of 5
radiologists) with ``--split test`` becomes a gold plain COCO file.

Writes under ``--out``: ``train.json`` (+ ``val.json`` with ``--val-fraction``) or
``test.json``; ``images/{train,test}/<image_id>.png`` (8-bit, VOI LUT / window applied,
MONOCHROME1 inverted; ``file_name`` is relative to ``images/<split>/``; train and val
images share ``images/train/``); ``convert_<split>_meta.json`` (arguments, counts,
repairs, rater filter, ``pngs``: how many PNGs were converted, reused or converted again).
Each PNG records the settings it was made with (text chunk ``earl_convert``: ``resize``,
``voi_lut``); a rerun reuses only PNGs made with the same settings and converts the others
again (counted, logged); ``--overwrite`` converts every one. Files are written to a
temporary file and renamed, and no output may be the label CSV or size table. See
docs/vindr.md.

Examples::

    # Kaggle, all raters, 1024-px PNGs, 20 % validation
    python tools/convert_vindr.py --csv vinbigdata/train.csv --dicom-dir vinbigdata/train \\
        --out data/vindr --resize 1024 --val-fraction 0.2 --workers 2
    # Rads-VinDr-CXR (paper 4.1.3): only images read by R8, R9 and R10
    python tools/convert_vindr.py --csv vinbigdata/train.csv --dicom-dir vinbigdata/train \\
        --out data/rads_vindr --resize 1024 --raters R8 R9 R10
    # PhysioNet gold test set
    python tools/convert_vindr.py --csv physionet/annotations/annotations_test.csv \\
        --dicom-dir physionet/test --split test --out data/vindr --resize 1024
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import os.path as osp
import sys
import time

from _common import add_choice_argument, check_output_folder, progress

from earl_core.io import safe_output
from earl_core.io.coco_writer import write_canonical_json, write_coco
from earl_core.sources import vindr

DICOM_SUFFIXES = ('.dicom', '.dcm', '')
#: --format: detect the label CSV's layout from its header, or name it.
FORMATS = ('auto', 'kaggle', 'physionet')

#: PNG text chunk that records the conversion settings of the image (see _convert_one).
SETTINGS_KEY = 'earl_convert'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='VinDr-CXR CSV + DICOM -> multi-rater COCO + PNG')
    p.add_argument(
        '--csv', required=True, help='Kaggle train.csv or PhysioNet annotations_{train,test}.csv'
    )
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--dicom-dir', help='folder of <image_id>.dicom (or .dcm) files')
    add_choice_argument(
        p, '--format', FORMATS, help='CSV layout (default auto: detect from the header)'
    )
    add_choice_argument(
        p,
        '--split',
        ('train', 'test'),
        help="'train' (multi-rater, default) or 'test' (PhysioNet consensus -> gold)",
    )
    p.add_argument(
        '--raters',
        nargs='+',
        metavar='RAD_ID',
        help='keep only these radiologists, e.g. R8 R9 R10 (Rads-VinDr-CXR)',
    )
    add_choice_argument(
        p,
        '--rater-match',
        ('all', 'any'),
        help="with --raters: keep images read by 'all' of them (default) or 'any'",
    )
    p.add_argument(
        '--val-fraction',
        type=float,
        default=0.0,
        help='fraction of training images for val.json (default 0: none)',
    )
    p.add_argument('--seed', type=int, default=0, help='train/val split seed (default 0)')
    p.add_argument(
        '--resize',
        type=int,
        metavar='PIXELS',
        help='resize the longest side to PIXELS (boxes scaled); default: keep size',
    )
    p.add_argument(
        '--skip-images',
        action='store_true',
        help='write only the JSON; sizes from --size-table or the DICOM headers',
    )
    p.add_argument(
        '--size-table',
        help='CSV with image_id and width,height (or image_width,image_height or '
        'dim0,dim1) used with --skip-images',
    )
    p.add_argument(
        '--no-voi-lut',
        action='store_true',
        help='do not apply the DICOM VOI LUT / window (min-max scaling only)',
    )
    p.add_argument(
        '--repair',
        action='store_true',
        help='swap reversed corners and clip boxes to the image (counted, logged) '
        'instead of failing',
    )
    add_choice_argument(
        p,
        '--unknown-classes',
        vindr.UNKNOWN_CLASS_MODES,
        help='findings outside the 14 Kaggle classes (PhysioNet has 22): error '
        '(default), drop (counted) or keep (extra categories)',
    )
    p.add_argument('--workers', type=int, default=1, help='processes for DICOM conversion')
    p.add_argument(
        '--overwrite',
        action='store_true',
        help='re-convert PNGs that already exist (default: reuse those made with the same '
        'settings)',
    )
    p.add_argument('-v', '--verbose', action='store_true', help='log every repair')
    a = p.parse_args(argv)
    if a.split == 'test' and (a.raters or a.val_fraction):
        p.error('--raters and --val-fraction apply to training labels, not to --split test')
    if not 0.0 <= a.val_fraction < 1.0:
        p.error(f'--val-fraction must lie in [0, 1), got {a.val_fraction}')
    if a.resize is not None and a.resize < 1:
        p.error(f'--resize must be >= 1, got {a.resize}')
    if not a.skip_images and not a.dicom_dir:
        p.error('--dicom-dir is required unless --skip-images is given')
    if a.skip_images and not (a.size_table or a.dicom_dir):
        p.error('--skip-images needs image sizes: pass --size-table or --dicom-dir')
    if a.workers < 1:
        p.error(f'--workers must be >= 1, got {a.workers}')
    names = ['test.json'] if a.split == 'test' else ['train.json', 'val.json']
    names.append(f'convert_{a.split}_meta.json')
    check_output_folder(p, '--out', a.out, names, inputs=[a.csv, a.size_table])
    if osp.isdir(a.csv):
        p.error(f'--csv {a.csv} is a folder; give the label CSV file')
    return a


# --------------------------------------------------------------------------- DICOM
def find_dicom(dicom_dir: str, image_id: str) -> str | None:
    for suffix in DICOM_SUFFIXES:
        path = osp.join(dicom_dir, image_id + suffix)
        if osp.isfile(path):
            return path
    return None


def _lut_functions():
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def dicom_size(path: str) -> tuple[int, int]:
    """(width, height) from the DICOM header, without decoding pixels."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Columns), int(ds.Rows)
    except AttributeError as e:
        raise ValueError(f'{path}: DICOM header has no Rows/Columns') from e
    except Exception as e:  # pydicom raises many types on a damaged or non-DICOM file
        raise ValueError(f'{path}: cannot read the DICOM header ({type(e).__name__}: {e})') from e


def dicom_to_uint8(path: str, voi_lut: bool = True):
    """Decode a DICOM, apply the modality LUT and (optionally) the VOI LUT / window,
    invert MONOCHROME1 and scale to 8 bits. Returns a (H, W) uint8 array."""
    import pydicom

    apply_modality_lut, apply_voi_lut = _lut_functions()
    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises many types (missing decoders, bad files)
        raise ValueError(
            f'{path}: cannot decode the DICOM pixels ({type(e).__name__}: {e}); compressed '
            'files need a decoder plugin, e.g. pip install pylibjpeg pylibjpeg-libjpeg'
        ) from e
    arr = apply_modality_lut(arr, ds)
    if voi_lut:
        arr = apply_voi_lut(arr, ds)
    return vindr.to_uint8(arr, getattr(ds, 'PhotometricInterpretation', 'MONOCHROME2'))


def conversion_settings(resize: int | None, voi_lut: bool) -> str:
    """What a PNG records of how it was made (its ``earl_convert`` text chunk)."""
    return json.dumps(dict(resize=resize, voi_lut=voi_lut), sort_keys=True)


def _convert_one(task: tuple) -> tuple[str, tuple[int, int], tuple[int, int], str]:
    """Convert one DICOM to PNG, or reuse an existing PNG made with the same settings.

    Returns (image_id, DICOM size, PNG size, what was done): ``'converted'`` (no PNG
    before, or ``--overwrite``), ``'reused'``, or ``'reconverted'`` (a PNG was there but
    made with other settings, by a version that did not record them, or damaged).
    """
    from PIL import Image, PngImagePlugin

    image_id, dicom_path, png_path, resize, voi_lut, overwrite = task
    settings = conversion_settings(resize, voi_lut)
    done = 'converted'
    if not overwrite and osp.isfile(png_path):
        done = 'reconverted'
        w0, h0 = dicom_size(dicom_path)
        try:
            with Image.open(png_path) as im:  # text chunks before the pixels: no decoding
                size, made_with = im.size, im.info.get(SETTINGS_KEY)
        except OSError:  # a damaged PNG of an earlier run: convert again
            size = made_with = None
        if size == vindr.resized_size(w0, h0, resize) and made_with == settings:
            return image_id, (w0, h0), size, 'reused'
    u8 = dicom_to_uint8(dicom_path, voi_lut)
    h0, w0 = u8.shape
    size = vindr.resized_size(w0, h0, resize)
    img = Image.fromarray(u8)
    if size != (w0, h0):
        # PIL widens the filter support when shrinking: antialiased downscaling.
        img = img.resize(size, Image.Resampling.BILINEAR)
    info = PngImagePlugin.PngInfo()
    info.add_text(SETTINGS_KEY, settings)
    # Temporary file + rename: never a truncated PNG that a rerun would reuse.
    with safe_output.atomic_open(png_path, 'wb') as f:
        img.save(f, format='PNG', pnginfo=info)
    return image_id, (w0, h0), size, done


# --------------------------------------------------------------------------- main
def convert(a: argparse.Namespace) -> dict:
    """Run the conversion described by ``a``; return the meta dict (also written)."""
    t0 = time.time()
    gold = a.split == 'test'
    labels = vindr.read_vindr_csv(
        a.csv, a.format, gold=gold, repair=a.repair, unknown_classes=a.unknown_classes
    )
    if not gold and 'test' in osp.basename(a.csv).lower():
        print(
            f'warning: {a.csv} looks like a test file but --split is train; PhysioNet '
            'test labels are a consensus: pass --split test for a gold file',
            file=sys.stderr,
        )
    meta: dict = dict(
        args={k: v for k, v in vars(a).items() if k != 'verbose'},
        format=labels.fmt,
        csv_images=len(labels.raters),
        csv_boxes=len(labels.boxes),
        dropped_rows=dict(labels.dropped),
        repairs=dict(labels.repairs),
    )
    if a.raters:
        labels, stats = vindr.filter_raters(labels, a.raters, a.rater_match)
        meta['rater_filter'] = stats
        print(
            f'--raters {" ".join(a.raters)} ({a.rater_match}): kept {stats["images_kept"]} '
            f'images / {stats["boxes_kept"]} boxes, removed {stats["images_removed"]} '
            f'images / {stats["boxes_removed"]} boxes of other raters',
            file=sys.stderr,
        )
    ids = labels.image_ids
    split_dir = 'test' if gold else 'train'
    img_dir = osp.join(a.out, 'images', split_dir)
    os.makedirs(img_dir, exist_ok=True)

    paths: dict[str, str] = {}
    if a.dicom_dir and not (a.skip_images and a.size_table):
        missing = []
        for i in ids:
            path = find_dicom(a.dicom_dir, i)
            if path is None:
                missing.append(i)
            else:
                paths[i] = path
        if missing:
            raise ValueError(
                f'{a.dicom_dir}: no DICOM for {len(missing)} of {len(ids)} labelled images, '
                f'e.g. {missing[:3]} (looked for <image_id>{{{",".join(DICOM_SUFFIXES)}}})'
            )
    sizes: dict[str, tuple[int, int]] = {}
    resized: dict[str, tuple[int, int]] = {}
    if a.skip_images:
        if a.size_table:
            table = vindr.read_size_table(a.size_table)
            missing = [i for i in ids if i not in table]
            if missing:
                raise ValueError(
                    f'{a.size_table}: no size for {len(missing)} labelled images, '
                    f'e.g. {missing[:3]}'
                )
            sizes = {i: table[i] for i in ids}
        else:
            for i in progress(ids, len(ids), 'DICOM headers'):
                sizes[i] = dicom_size(paths[i])
        resized = {i: vindr.resized_size(*sizes[i], a.resize) for i in ids}
    else:
        tasks = [
            (i, paths[i], osp.join(img_dir, f'{i}.png'), a.resize, not a.no_voi_lut, a.overwrite)
            for i in ids
        ]
        if a.workers > 1:
            with multiprocessing.Pool(a.workers) as pool:
                results = list(
                    progress(
                        pool.imap_unordered(_convert_one, tasks, chunksize=4),
                        len(tasks),
                        f'{split_dir} DICOM -> PNG',
                    )
                )
        else:
            results = list(
                progress(map(_convert_one, tasks), len(tasks), f'{split_dir} DICOM -> PNG')
            )
        done: dict[str, list[str]] = {}
        for image_id, orig, size, what in results:
            sizes[image_id], resized[image_id] = orig, size
            done.setdefault(what, []).append(image_id)
        meta['pngs'] = {k: len(v) for k, v in sorted(done.items())}
        again = sorted(done.get('reconverted', []))
        if again:
            print(
                f'{img_dir}: {len(again)} existing PNGs were made with other conversion '
                f'settings (or without a record of them) and were converted again '
                f'({conversion_settings(a.resize, not a.no_voi_lut)}), e.g. {again[:3]}',
                file=sys.stderr,
            )

    info = dict(
        description='VinDr-CXR converted by earl-mmdet tools/convert_vindr.py',
        source=osp.basename(a.csv),
        format=labels.fmt,
    )
    id_of = {k: n + 1 for n, k in enumerate(ids)}
    outputs = {}
    if gold:
        outputs['test'] = ids
    else:
        train_ids, val_ids = vindr.split_train_val(labels, a.val_fraction, a.seed)
        outputs['train'] = train_ids
        if a.val_fraction > 0:
            if not val_ids or not train_ids:
                raise ValueError(
                    f'--val-fraction {a.val_fraction} of {len(ids)} images leaves '
                    f'{len(train_ids)} train / {len(val_ids)} val images'
                )
            outputs['val'] = val_ids
    total_repairs = dict(labels.repairs)
    meta['files'] = {}
    for name, subset in outputs.items():
        coco, repairs = vindr.build_coco(
            labels,
            sizes,
            subset,
            resized=resized,
            gold=gold,
            repair=a.repair,
            id_of=id_of,
            info=dict(info, split=name, kind='gold' if gold else 'multi-rater'),
        )
        for k, v in repairs.items():
            total_repairs[k] = total_repairs.get(k, 0) + v
        write_coco(osp.join(a.out, f'{name}.json'), coco, inputs=[a.csv, a.size_table])
        n_neg = len(coco['images']) - len({x['image_id'] for x in coco['annotations']})
        meta['files'][name] = dict(
            images=len(coco['images']), boxes=len(coco['annotations']), negative_images=n_neg
        )
    meta['repairs'] = total_repairs
    meta['classes'] = labels.classes
    write_canonical_json(
        osp.join(a.out, f'convert_{a.split}_meta.json'),
        meta,
        indent=1,
        inputs=[a.csv, a.size_table],
    )
    meta['_seconds'] = time.time() - t0
    return meta


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO, format='%(levelname)s %(message)s'
    )
    try:
        meta = convert(a)
    except (ValueError, OSError) as e:  # OSError: an output path that is a folder, etc.
        raise SystemExit(f'error: {e}') from e
    for name, c in meta['files'].items():
        print(
            f'wrote {osp.join(a.out, name + ".json")}: {c["images"]} images '
            f'({c["negative_images"]} without boxes), {c["boxes"]} boxes'
        )
    if meta['repairs']:
        print(f'repairs: {meta["repairs"]}')
    if meta['dropped_rows']:
        print(f'dropped rows (--unknown-classes drop): {meta["dropped_rows"]}')
    print(f'done in {meta["_seconds"]:.1f} s')


if __name__ == '__main__':
    main()
