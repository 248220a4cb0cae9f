"""Generate a small VinDr-CXR-shaped sample: DICOMs, Kaggle train.csv, PhysioNet test CSV.

    python tools/make_vindr_sample.py --out data/vindr_sample [--images 40] [--seed 0]
        [--overwrite]

Writes ``OUT/train/<image_id>.dicom`` + ``OUT/train.csv`` (Kaggle layout, 3 raters per
image) and ``OUT/test/<image_id>.dicom`` + ``OUT/annotations/annotations_test.csv``
(PhysioNet layout, consensus boxes), and ``OUT/sample_meta.json`` (rater noise profiles,
true boxes), and ``OUT/.earl_manifest.json`` (the files written). ``--out`` must be empty
or missing; ``--overwrite`` replaces an earlier sample there, deleting only the files it
wrote; a folder with other files is refused. Synthetic images, not patient data; same seed
-> same bytes. Then convert it like the real data (docs/vindr.md, README "Try the VinDr
path without the dataset").
"""

from __future__ import annotations

import argparse
import time

from _common import add_output_folder_args, check_output_paths

from earl_core.sources import vindr_sample as sample


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Generate a VinDr-CXR-shaped sample (synthetic)')
    add_output_folder_args(p, 'sample')
    p.add_argument('--images', type=int, default=40, help='training images (default 40)')
    p.add_argument('--test-images', type=int, help='test images (default: max(2, images // 4))')
    p.add_argument('--seed', type=int, default=0, help='seed (default 0)')
    a = p.parse_args(argv)
    check_output_paths(p, folders=[('--out', a.out)])
    if a.images < 1:
        p.error(f'--images must be >= 1, got {a.images}')
    if a.test_images is not None and a.test_images < 0:
        p.error(f'--test-images must be >= 0, got {a.test_images}')
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    t0 = time.time()
    try:
        s = sample.make_vindr_sample(
            a.out, images=a.images, test_images=a.test_images, seed=a.seed, overwrite=a.overwrite
        )
    except ValueError as e:
        raise SystemExit(f'error: {e}') from e
    print(
        f'wrote {a.out}: {s["images"]} training DICOMs ({s["train_normal_images"]} without '
        f'findings) read by {s["raters_per_image"]} of {len(s["raters"])} radiologists '
        f'({s["train_rater_boxes"]} boxes in train.csv, {s["train_boxes_true"]} true); '
        f'{s["test_images"]} test DICOMs ({s["test_boxes"]} consensus boxes); '
        f'{time.time() - t0:.1f} s'
    )


if __name__ == '__main__':
    main()
