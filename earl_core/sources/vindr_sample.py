"""A small VinDr-CXR-shaped sample, generated: DICOMs + Kaggle/PhysioNet label CSVs.

It lets anyone walk the VinDr path (``tools/convert_vindr.py`` -> training with the VinDr
configs -> ``tools/test.py`` report and Kaggle submission) without the 200 GB download.
Nothing here is real patient data: the images are drawn from a few ellipses and textures.

What is generated (``make_vindr_sample``), in the layouts of the real releases:

* ``train/<image_id>.dicom``: uncompressed grey DICOMs with the properties the converter
  must handle: MONOCHROME1 and MONOCHROME2, 12-, 14- and 16-bit stored values,
  WindowCenter/WindowWidth present or absent, RescaleSlope/Intercept present or absent,
  a few image sizes.
* ``train.csv`` (Kaggle layout ``image_id,class_name,class_id,rad_id,x_min,...``): each
  training image read by 3 radiologists drawn from a pool (``R1`` ... ``R17``); a rater
  who found nothing writes one 'No finding' row (class 14, empty box).
* ``test/<image_id>.dicom`` and ``annotations/annotations_test.csv`` (PhysioNet layout
  ``image_id,rad_id,class_name,x_min,...``): the true boxes, as the consensus labels of
  the real test set; ``rad_id`` is ``'consensus'`` (the converter ignores it for a test file).
* ``sample_meta.json``: arguments, counts, the radiologists' noise profiles and the true
  boxes of every training image (to score aggregators against).
* ``.earl_manifest.json``: the files written (:func:`earl_core.io.safe_output.claim_folder`):
  the sample is written only into an empty folder or over an earlier sample
  (``overwrite``), never among other files.

The images are chest-like, every finding drawn where its true box is
(:mod:`earl_core.sources.vindr_sample_images`, whose names are importable from here too).
Boxes are xyxy in DICOM pixels. Measured (2 CPU cores): the VinDr YOLOX-S config from
scratch, 12 epochs on 120 images at 320 px (5.6 min), reached only mAP@0.4 0.008 on 30
test images (the large findings first); the sample is for walking the path, not for
showing what the method learns.

Rater noise: the ``vindr-like`` model of ``earl_core/sources/medmnist_raters.py``, called
by ``simulate_reads`` on the sample's findings (seeded). Each radiologist of the pool has a
profile (``expert``, ``normal``, ``weak``: R8, R9, R10 one each, the others drawn with
shares 0.2/0.4/0.4) with the preset's knob values, and, drawn once, a log box-size bias and
a confusion matrix over the 14 findings. Per image, each finding gets a conspicuity
c ~ U(0.25, 1) shared by the raters who read it, and 3-6 pieces of normal anatomy that look like a
finding are the clutter (hilar vessels -> Lung Opacity, a rib crossing -> Nodule/Mass,
the apical cap -> Pleural thickening, a costophrenic angle -> Pleural effusion, basal
vessel markings -> Pulmonary fibrosis, the normal heart -> Cardiomegaly, the aortic knob
-> Aortic enlargement; never touching a true box). A rater then misses faint findings
(and some clear ones), boxes clutter, draws Student-t-noisy boxes scaled by their bias,
reports a wrong label mostly among the similar findings (``SIMILAR_FINDINGS``: pleural
thickening / effusion / fibrosis, ILD / fibrosis / infiltration, consolidation / lung
opacity / infiltration / atelectasis, nodule / other lesion / calcification, aortic
enlargement / cardiomegaly), and sometimes hedges with a second box of the look-alike
class. The images do not depend on the raters: they are the same for the same seed
whatever the rater model.

The output is byte-identical for the same arguments (DICOM UIDs are derived from the seed).
"""

from __future__ import annotations

import csv
import os
import os.path as osp
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earl_core.deprecation import pop_renamed_kwarg, renamed_attribute, warn_renamed
from earl_core.io import safe_output
from earl_core.io.coco_writer import write_canonical_json
from earl_core.sources import medmnist_raters as mr
from earl_core.sources.vindr_csv import (
    KAGGLE_COLUMNS,
    NO_FINDING,
    NO_FINDING_ID,
    PHYSIONET_COLUMNS,
    VINDR_CLASSES,
)
from earl_core.sources.vindr_sample_images import (
    ANATOMY_CLUTTER,
    BITS_STORED,
    CLUTTER_ITEMS,
    SIZES,
    DicomEncoding,
    anatomy_clutter,
    draw_image,
    render_chest,
    to_stored_pixels,
    write_dicom,
)

__all__ = [
    'ANATOMY_CLUTTER',
    'CLUTTER_ITEMS',
    'SIMILAR_FINDINGS',
    'DicomEncoding',
    'Radiologist',
    'SampleImage',
    'VindrRaterPool',
    'anatomy_clutter',
    'draw_vindr_rater_pool',
    'make_vindr_sample',
    'render_chest',
    'simulate_reads',
    'to_stored_pixels',
    'write_dicom',
]

RATER_POOL = tuple(f'R{i}' for i in range(1, 18))


@dataclass
class SampleImage:
    """One generated image and its truth.

    Args:
        image_id (str): 32 hex characters, like the real ids.
        split (str): ``'train'`` or ``'test'``.
        width (int): DICOM columns.
        height (int): DICOM rows.
        boxes (np.ndarray): (N, 4) float xyxy true boxes in DICOM pixels.
        labels (np.ndarray): (N,) int class ids (0-13).
    """

    image_id: str
    split: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


# --------------------------------------------------------------------------- raters
#: Findings radiologists mix up, as class-id pairs of :data:`VINDR_CLASSES`: the similar
#: classes of the vindr-like confusion (``medmnist_raters.confusion_base``); a wrong label
#: falls on one of them with probability ~0.8 x its row's share (Pneumothorax has none).
SIMILAR_FINDINGS: tuple[tuple[int, int], ...] = (
    (11, 10),  # Pleural thickening <-> Pleural effusion
    (11, 13),  # Pleural thickening <-> Pulmonary fibrosis (apical scarring)
    (5, 13),  # ILD <-> Pulmonary fibrosis
    (5, 6),  # ILD <-> Infiltration
    (13, 6),  # Pulmonary fibrosis <-> Infiltration
    (4, 7),  # Consolidation <-> Lung Opacity
    (4, 6),  # Consolidation <-> Infiltration
    (7, 6),  # Lung Opacity <-> Infiltration
    (1, 7),  # Atelectasis <-> Lung Opacity
    (8, 9),  # Nodule/Mass <-> Other lesion
    (2, 8),  # Calcification <-> Nodule/Mass
    (0, 3),  # Aortic enlargement <-> Cardiomegaly (a wide mediastinum)
)
#: A finding's conspicuity c ~ U(CONSPICUITY) (the vindr-like preset's contrast range):
#: a rater sees it with probability ``(1 - miss) * sigmoid((c - threshold) / tau)``.
CONSPICUITY = (0.25, 1.0)
#: Pool shares of the expert, normal and weak profiles (R8, R9, R10 are one of each).
PROFILE_SHARES = (0.2, 0.4, 0.4)


@dataclass(frozen=True)
class Radiologist:
    """One radiologist of the pool.

    Args:
        rater (str): the radiologist's rater id, e.g. ``'R8'`` (the CSV's ``rad_id``).
        weight (float): relative share of the images this radiologist reads.
        profile (str): ``'expert'``, ``'normal'`` or ``'weak'``: the radiologist's
            vindr-like noise (``medmnist_raters.VINDR_LIKE_PROFILES``).
    """

    rater: str
    weight: float
    profile: str

    rad_id = renamed_attribute('rater')


@dataclass
class VindrRaterPool:
    """The radiologists and their drawn noise (one per sample).

    Args:
        radiologists (list[Radiologist]): the pool (17).
        profiles (list[mr.RaterProfile]): each one's vindr-like profile knobs.
        bias (np.ndarray): (P,) each one's log box-size bias.
        confusion (np.ndarray): (P, 14, 14) each one's confusion rows.
    """

    radiologists: list[Radiologist]
    profiles: list[mr.RaterProfile]
    bias: np.ndarray
    confusion: np.ndarray


def draw_vindr_rater_pool(
    seed: int, rng: np.random.Generator, pool: Sequence[str] = RATER_POOL
) -> VindrRaterPool:
    """Heterogeneous radiologists: a few read most images (as R8-R10 do in the real set).

    Workload weights and profiles come from ``rng``; each radiologist's box bias and
    confusion matrix from ``medmnist_raters.draw_rater_pool(seed, ...)`` with the
    vindr-like pool knobs and :data:`SIMILAR_FINDINGS`.

    Examples:
        >>> p = draw_vindr_rater_pool(0, np.random.default_rng(0))
        >>> len(p.radiologists), p.radiologists[7].profile, p.confusion.shape
        (17, 'expert', (17, 14, 14))
    """
    names = mr.PROFILE_NAMES
    rads = []
    for i, rater in enumerate(pool):
        busy = i in (7, 8, 9)  # R8, R9, R10: one expert, one normal, one weak
        weight = round(float(rng.uniform(4.0, 6.0) if busy else rng.uniform(0.3, 1.5)), 3)
        profile = names[i - 7] if busy else names[int(rng.choice(3, p=PROFILE_SHARES))]
        rads.append(Radiologist(rater, weight, profile))
    profiles = [mr.VINDR_LIKE_PROFILES[r.profile] for r in rads]
    knobs = mr.VINDR_LIKE_POOL
    bias, confusion = mr.draw_rater_pool(
        seed,
        profiles,
        knobs['bias_sd'],
        knobs['structure'],
        num_classes=len(VINDR_CLASSES),
        pairs=SIMILAR_FINDINGS,
    )
    return VindrRaterPool(rads, profiles, bias, confusion)


def draw_reader_pool(*args: Any, **kwargs: Any) -> VindrRaterPool:
    """Deprecated name of :func:`draw_vindr_rater_pool` (until 0.3)."""
    warn_renamed('draw_reader_pool', 'draw_vindr_rater_pool')
    return draw_vindr_rater_pool(*args, **kwargs)


def simulate_reads(
    rng: np.random.Generator,
    boxes: np.ndarray,
    labels: np.ndarray,
    conspicuity: np.ndarray,
    clutter: mr.Clutter,
    pool: VindrRaterPool,
    raters: Sequence[int],
    width: int,
    height: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The raters' reads of one image: the vindr-like rater model on the sample's findings.

    Calls ``medmnist_raters.simulate_realistic_raters`` (misses tied to conspicuity,
    false positives on anatomy clutter, Student-t box noise with per-rater bias, labels
    confused among :data:`SIMILAR_FINDINGS`, hedging second boxes) with the vindr-like
    pool knobs, then clips the boxes to the image, rounds them to 0.1 px and drops those
    under 2 px a side.

    Args:
        rng (np.random.Generator): the image's read stream.
        boxes (np.ndarray): (N, 4) true xyxy boxes in pixels.
        labels (np.ndarray): (N,) true class ids (0-13).
        conspicuity (np.ndarray): (N,) each finding's conspicuity in [0, 1].
        clutter (mr.Clutter): the image's anatomy clutter (:func:`anatomy_clutter`).
        pool (VindrRaterPool): the radiologists.
        raters (Sequence[int]): pool indices of the raters who read the image.
        width (int): image width.
        height (int): image height.

    Returns:
        list[tuple[np.ndarray, np.ndarray]]: per rater, in ``raters`` order, the
        reported (M, 4) boxes and (M,) class ids; M = 0 means 'No finding'.

    Examples:
        >>> pool = draw_vindr_rater_pool(0, np.random.default_rng(0))
        >>> none = mr.Clutter(np.zeros((0, 4)), *np.zeros((3, 0)))
        >>> reads = simulate_reads(np.random.default_rng(0), np.array([[100.0, 100, 180, 160]]),
        ...                        np.array([8]), np.array([0.9]), none, pool, [7, 9], 512, 512)
        >>> [(b.round().tolist(), lab.tolist()) for b, lab in reads]
        [([[122.0, 102.0, 157.0, 162.0], [99.0, 118.0, 178.0, 178.0]], [8, 9]), \
([[99.0, 99.0, 175.0, 164.0]], [8])]
    """
    knobs = mr.VINDR_LIKE_POOL
    res = mr.simulate_realistic_raters(
        rng,
        boxes,
        labels,
        conspicuity,
        clutter,
        pool.profiles,
        pool.bias,
        pool.confusion,
        len(raters),
        visibility_width=knobs['visibility_width'],
        tail_df=knobs['tail_df'],
        canvas=float(max(width, height)),
        shared_confusion=knobs['shared_confusion'],
        raters=np.asarray(raters, np.int64),
    )
    out = []
    for k in raters:
        sel = res.raters == k
        b = res.boxes[sel].copy()
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
        b = np.round(b, 1)
        keep = ((b[:, 2] - b[:, 0]) >= 2) & ((b[:, 3] - b[:, 1]) >= 2)
        out.append((b[keep], res.labels[sel][keep]))
    return out


# --------------------------------------------------------------------------- sample
#: How the folder's manifest names the writer; the label tables it writes.
_TOOL = 'earl_core.sources.vindr_sample'
_TABLES = ('train.csv', 'annotations/annotations_test.csv')


def _fmt(v: float) -> str:
    return f'{v:.1f}'


def make_vindr_sample(
    out: str,
    images: int = 40,
    test_images: int | None = None,
    seed: int = 0,
    normal_fraction: float = 0.4,
    max_findings: int = 3,
    raters_per_image: int = 3,
    overwrite: bool = False,
    **kwargs: Any,
) -> dict:
    """Write a VinDr-shaped sample under ``out`` (see the module docstring).

    Args:
        out (str): output folder: missing, empty, or an earlier sample (with
            ``overwrite``); see :func:`earl_core.io.safe_output.claim_folder`.
        images (int): training images (read by ``raters_per_image`` radiologists each). Defaults
            to 40.
        test_images (int | None): test images (consensus labels). Defaults to
            ``max(2, images // 4)``.
        seed (int): seed of everything. Defaults to 0.
        normal_fraction (float): share of images without findings, in [0, 1]. Defaults
            to 0.4 (the real training set has ~70 %; fewer here, so a small sample has
            boxes to learn from).
        max_findings (int): findings per abnormal image, 1 to this. Defaults to 3.
        raters_per_image (int): radiologists per training image (``readers`` until 0.2).
            Defaults to 3.
        overwrite (bool): replace an earlier sample in ``out`` (only its files). Defaults
            to False.
        **kwargs: ``readers``, the deprecated name of ``raters_per_image``.

    Returns:
        dict: the summary also written to ``out/sample_meta.json`` (without the truth).

    Raises:
        ValueError: an argument out of range, or ``out`` holds other files (or an earlier
            sample and ``overwrite`` is False).
    """
    if images < 1:
        raise ValueError(f'images must be >= 1, got {images}')
    test_images = max(2, images // 4) if test_images is None else test_images
    if test_images < 0:
        raise ValueError(f'test_images must be >= 0, got {test_images}')
    if not 0.0 <= normal_fraction <= 1.0:
        raise ValueError(f'normal_fraction must lie in [0, 1], got {normal_fraction}')
    if max_findings < 1:
        raise ValueError(f'max_findings must be >= 1, got {max_findings}')
    pop_renamed_kwarg(kwargs, 'readers', 'raters_per_image', 'make_vindr_sample')
    raters_per_image = kwargs.pop('raters_per_image', raters_per_image)
    if kwargs:
        raise TypeError(f'make_vindr_sample: unexpected argument(s) {sorted(kwargs)}')
    n_read = raters_per_image
    if not 1 <= n_read <= len(RATER_POOL):
        raise ValueError(f'raters_per_image must lie in [1, {len(RATER_POOL)}], got {n_read}')
    root = np.random.SeedSequence(seed)
    s_raters, s_images, s_reads = root.spawn(3)
    pool = draw_vindr_rater_pool(seed, np.random.default_rng(s_raters))
    weights = np.array([r.weight for r in pool.radiologists])
    img_streams = s_images.spawn(images + test_images)
    # The first draw of each image's stream is its id: known before anything is written.
    ids = [np.random.default_rng(stream).bytes(16).hex() for stream in img_streams]
    planned = [f'{"train" if n < images else "test"}/{i}.dicom' for n, i in enumerate(ids)]
    planned += [*_TABLES, 'sample_meta.json']
    safe_output.claim_folder(out, _TOOL, planned, overwrite)
    for d in ('train', 'test', 'annotations'):
        os.makedirs(osp.join(out, d), exist_ok=True)

    encodings = [
        DicomEncoding(pi, bits, window, rescale)
        for pi in ('MONOCHROME2', 'MONOCHROME1')
        for bits in BITS_STORED
        for window, rescale in ((True, True), (False, False))
    ]
    read_streams = s_reads.spawn(images)
    samples: list[SampleImage] = []
    kaggle_rows: list[list[str]] = []
    test_rows: list[list[str]] = []
    encoding_counts: dict[str, int] = {}
    for n, stream in enumerate(img_streams):
        rng = np.random.default_rng(stream)
        split = 'train' if n < images else 'test'
        image_id = rng.bytes(16).hex()
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        enc = encodings[n % len(encodings)]
        n_find = 0 if rng.random() < normal_fraction else int(rng.integers(1, max_findings + 1))
        img, boxes, labels, anat = draw_image(rng, width, height, n_find)
        stored, window = to_stored_pixels(img, enc.photometric, enc.bits)
        write_dicom(
            osp.join(out, split, f'{image_id}.dicom'), stored, enc, window, f'{seed}/{image_id}'
        )
        key = f'{enc.photometric} {enc.bits}-bit {"window" if enc.window else "no window"}'
        encoding_counts[key] = encoding_counts.get(key, 0) + 1
        samples.append(SampleImage(image_id, split, width, height, boxes, labels))
        if split == 'test':
            if len(labels) == 0:
                test_rows.append([image_id, 'consensus', NO_FINDING, '', '', '', ''])
            for b, c in zip(boxes, labels):
                test_rows.append([image_id, 'consensus', VINDR_CLASSES[c], *map(_fmt, b)])
            continue
        rrng = np.random.default_rng(read_streams[n])
        chosen = rrng.choice(len(weights), size=n_read, replace=False, p=weights / weights.sum())
        conspicuity = rrng.uniform(*CONSPICUITY, size=len(labels))
        clutter = anatomy_clutter(rrng, anat, boxes, width, height)
        reads = simulate_reads(
            rrng, boxes, labels, conspicuity, clutter, pool, chosen.tolist(), width, height
        )
        for k, (rb, rl) in zip(chosen.tolist(), reads):
            rater = pool.radiologists[k].rater
            if len(rl) == 0:
                kaggle_rows.append([image_id, NO_FINDING, str(NO_FINDING_ID), rater, *[''] * 4])
            for b, c in zip(rb, rl):
                kaggle_rows.append([image_id, VINDR_CLASSES[c], str(int(c)), rater, *map(_fmt, b)])

    _write_csv(osp.join(out, _TABLES[0]), KAGGLE_COLUMNS, kaggle_rows)
    _write_csv(osp.join(out, _TABLES[1]), PHYSIONET_COLUMNS, test_rows)
    train = [s for s in samples if s.split == 'train']
    args = dict(images=images, test_images=test_images, seed=seed, raters_per_image=n_read)
    args.update(normal_fraction=normal_fraction, max_findings=max_findings)
    summary = dict(
        args,
        generator='earl_core.sources.vindr_sample',
        train_boxes_true=int(sum(len(s.labels) for s in train)),
        train_rows=len(kaggle_rows),
        train_rater_boxes=sum(1 for r in kaggle_rows if r[2] != str(NO_FINDING_ID)),
        train_normal_images=sum(1 for s in train if len(s.labels) == 0),
        test_boxes=sum(1 for r in test_rows if r[2] != NO_FINDING),
        encodings=dict(sorted(encoding_counts.items())),
        raters=[
            dict(asdict(r), **mr.profile_dict(p), bias=round(float(b), 6))
            for r, p, b in zip(pool.radiologists, pool.profiles, pool.bias)
        ],
        similar_findings=[[VINDR_CLASSES[i], VINDR_CLASSES[j]] for i, j in SIMILAR_FINDINGS],
    )
    truth = [
        dict(image_id=s.image_id, split=s.split, width=s.width, height=s.height,
             boxes=s.boxes.tolist(), labels=s.labels.tolist())
        for s in samples
    ]  # fmt: skip
    write_canonical_json(osp.join(out, 'sample_meta.json'), dict(summary, truth=truth), indent=1)
    safe_output.seal_folder(out, _TOOL, planned)
    return summary


def _write_csv(path: str, header: Sequence[str], rows: list[list[str]]) -> None:
    with safe_output.atomic_open(path, newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(header)
        w.writerows(rows)


def __getattr__(name: str) -> Any:
    """``ReaderPool``: the deprecated name of :class:`VindrRaterPool` (until 0.3)."""
    if name == 'ReaderPool':
        warn_renamed('earl_core.sources.vindr_sample.ReaderPool', 'VindrRaterPool')
        return VindrRaterPool
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
