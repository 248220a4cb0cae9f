"""The VinDr-shaped sample's images: chest-like radiographs with drawn findings, and DICOMs.

Part of :mod:`earl_core.sources.vindr_sample` (whose names are importable from there too).
Nothing here is real patient data: the images are drawn from a few ellipses and textures.

The images are chest-like (body, two dark lung fields with vessel texture, ribs, spine,
heart) and every finding is drawn where its true box is (a bright nodule, a textured
opacity, an enlarged heart, a fluid level at a lung base, a dark pneumothorax, ...): the
boxes point at something a detector can see. Boxes are xyxy in DICOM pixels. Normal
anatomy that looks like a finding (:data:`ANATOMY_CLUTTER`: hilar vessels, a rib crossing,
the apical cap, ...) is what the sample's raters box by mistake (:func:`anatomy_clutter`).

The DICOMs (:func:`write_dicom`) are uncompressed grey files with the properties the
converter must handle: MONOCHROME1 and MONOCHROME2, 12-, 14- and 16-bit stored values,
WindowCenter/WindowWidth present or absent, RescaleSlope/Intercept present or absent, a
few image sizes (:data:`SIZES`); their UIDs are derived from a seed string.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earl_core.boxes import box_iou
from earl_core.sources import medmnist_raters as mr

__all__ = [
    'ANATOMY_CLUTTER',
    'BITS_STORED',
    'CLUTTER_ITEMS',
    'SIZES',
    'DicomEncoding',
    'anatomy_clutter',
    'draw_image',
    'render_chest',
    'to_stored_pixels',
    'write_dicom',
]

#: Image sizes (width, height) in pixels; real VinDr DICOMs are ~2,000-3,000 px, these are
#: small so that the sample is generated and converted in seconds.
SIZES: tuple[tuple[int, int], ...] = ((512, 512), (448, 544), (544, 480), (480, 480))
BITS_STORED = (12, 14, 16)
# Per class: how it is drawn ('kind') and how often it occurs (relative weight; the common
# findings of the real set - aortic enlargement, cardiomegaly, pleural thickening,
# fibrosis - more often than the rare ones). Confusable classes share a kind.
_CLASS_KIND = {
    'Aortic enlargement': ('aorta', 6.0),
    'Atelectasis': ('band', 0.5),
    'Calcification': ('calcification', 1.0),
    'Cardiomegaly': ('heart', 5.0),
    'Consolidation': ('opacity', 0.8),
    'ILD': ('reticular', 1.0),
    'Infiltration': ('opacity', 1.2),
    'Lung Opacity': ('opacity', 2.5),
    'Nodule/Mass': ('nodule', 2.5),
    'Other lesion': ('nodule', 1.5),
    'Pleural effusion': ('effusion', 2.5),
    'Pleural thickening': ('thickening', 4.0),
    'Pneumothorax': ('pneumothorax', 0.4),
    'Pulmonary fibrosis': ('reticular', 4.0),
}
# Findings that appear at most once per image (anatomy-bound).
_ONCE = {'aorta', 'heart', 'pneumothorax'}


# --------------------------------------------------------------------------- images
def _blur(a: np.ndarray, r: int) -> np.ndarray:
    """Box blur of radius ``r`` along both axes (cumulative sums; edges clamped)."""
    for axis in (0, 1):
        n = a.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode='edge'), axis=axis)
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        a = (hi - lo) / (2 * r + 1)
    return a


def _ellipse(yy, xx, cx, cy, ax, ay) -> np.ndarray:
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2


def render_chest(
    rng: np.random.Generator, width: int, height: int, heart_scale: float = 1.0
) -> tuple[np.ndarray, dict]:
    """A chest-like radiograph in display space (float (H, W) in [0, 1], bone bright).

    Returns:
        tuple: the image and its anatomy (lung ellipses ``lungs`` as (cx, cy, ax, ay) in
        pixels, ``heart`` likewise, ``aorta`` (cx, cy, r)), for placing findings.
    """
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.04, np.float32)
    body = _ellipse(yy, xx, w * 0.5, h * 0.55, w * 0.47, h * 0.6) <= 1
    img[body] = 0.45
    lungs = []
    for side in (-1, 1):
        cx = w * (0.5 + side * rng.uniform(0.19, 0.22))
        lung = (cx, h * rng.uniform(0.45, 0.48), w * rng.uniform(0.14, 0.16), h * 0.3)
        lungs.append(lung)
        img[_ellipse(yy, xx, *lung) <= 1] = 0.16
    in_lungs = img == np.float32(0.16)
    # Vessels: smoothed noise, brighter near the hila.
    vessels = _blur(rng.standard_normal((h, w)).astype(np.float32), max(1, w // 160))
    img[in_lungs] += 0.05 * vessels[in_lungs]
    # Ribs: bright arcs across the lungs.
    phase = rng.uniform(0, 2 * np.pi)
    ribs = np.sin((yy + 0.25 * np.abs(xx - w / 2)) / h * 2 * np.pi * 9 + phase) > 0.75
    img[ribs & in_lungs] += 0.09
    # Spine and heart (mediastinum).
    img[(np.abs(xx - w / 2) < w * 0.04) & body] = 0.7
    heart = (w * 0.54, h * 0.63, w * 0.14 * heart_scale, h * 0.12 * heart_scale)
    img[_ellipse(yy, xx, *heart) <= 1] = 0.6
    aorta = (w * 0.56, h * 0.3, w * 0.04)
    img[_ellipse(yy, xx, aorta[0], aorta[1], aorta[2], aorta[2]) <= 1] = 0.58
    img = _blur(img, max(1, w // 256))
    return img, dict(lungs=lungs, heart=heart, aorta=aorta, yy=yy, xx=xx)


def _in_lung(rng, lung, size_w, size_h, w, h) -> tuple[float, float, float, float]:
    """A box of (size_w, size_h) pixels whose centre lies inside ``lung``."""
    cx, cy, ax, ay = lung
    t, r = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.5))
    x, y = cx + r * ax * np.cos(t), cy + r * ay * np.sin(t)
    x0 = float(np.clip(x - size_w / 2, 0, w - size_w))
    y0 = float(np.clip(y - size_h / 2, 0, h - size_h))
    return x0, y0, x0 + size_w, y0 + size_h


def _draw_finding(rng, img, anat, kind) -> tuple[float, float, float, float]:
    """Draw one finding of ``kind`` into ``img`` (in place); return its true xyxy box."""
    h, w = img.shape
    yy, xx = anat['yy'], anat['xx']
    lung = anat['lungs'][int(rng.integers(2))]
    if kind == 'heart':
        cx, cy, ax, ay = anat['heart']
        mask = _ellipse(yy, xx, cx, cy, ax, ay) <= 1
        img[mask] = np.maximum(img[mask], 0.6)
        return cx - ax, cy - ay, cx + ax, cy + ay
    if kind == 'aorta':
        cx, cy, r = anat['aorta']
        r *= rng.uniform(1.4, 1.8)
        img[_ellipse(yy, xx, cx, cy, r, r) <= 1] = 0.62
        return cx - r, cy - r, cx + r, cy + r
    if kind == 'effusion':  # fluid at the base of a lung: bright, flat top (meniscus)
        cx, cy, ax, ay = lung
        top = cy + ay * rng.uniform(0.2, 0.5)
        mask = (_ellipse(yy, xx, *lung) <= 1.05) & (yy >= top - 0.04 * ay * np.cos((xx - cx) / ax))
        img[mask] = 0.5
        return cx - ax, top - 0.04 * ay, cx + ax, min(cy + ay * 1.02, h - 1)
    if kind == 'pneumothorax':  # dark rim without vessels at the apex
        cx, cy, ax, ay = lung
        x0, x1 = cx - ax * 0.8, cx + ax * 0.8
        y0, y1 = cy - ay * 1.0, cy - ay * rng.uniform(0.4, 0.6)
        mask = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
        img[mask] = 0.05
        return x0, y0, x1, y1
    if kind == 'thickening':  # bright band along the apex of a lung
        cx, cy, ax, ay = lung
        bw, bh = ax * rng.uniform(0.6, 1.0), ay * rng.uniform(0.08, 0.14)
        x0, y0 = cx - bw / 2, cy - ay * 0.95
        mask = (xx >= x0) & (xx <= x0 + bw) & (yy >= y0) & (yy <= y0 + bh)
        img[mask] += 0.22
        return x0, y0, x0 + bw, y0 + bh
    if kind == 'band':  # atelectasis: a thin horizontal opacity
        bw, bh = w * rng.uniform(0.1, 0.16), h * rng.uniform(0.02, 0.04)
        box = _in_lung(rng, lung, bw, bh, w, h)
        x0, y0, x1, y1 = box
        img[(xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)] += 0.25
        return box
    if kind in ('nodule', 'calcification'):
        r = w * (rng.uniform(0.015, 0.022) if kind == 'calcification' else rng.uniform(0.025, 0.05))
        x0, y0, x1, y1 = _in_lung(rng, lung, 2 * r, 2 * r, w, h)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * 0.6) ** 2
        img += (0.6 if kind == 'calcification' else 0.35) * np.exp(-d2 / 2) * (d2 <= 2.8)
        return x0, y0, x1, y1
    # 'opacity' / 'reticular': a textured patch in a lung
    bw, bh = w * rng.uniform(0.08, 0.18), h * rng.uniform(0.08, 0.18)
    x0, y0, x1, y1 = _in_lung(rng, lung, bw, bh, w, h)
    mask = _ellipse(yy, xx, (x0 + x1) / 2, (y0 + y1) / 2, bw / 2, bh / 2) <= 1
    if kind == 'reticular':
        net = (np.sin(xx * 0.6) * np.sin(yy * 0.6 + xx * 0.2)) > 0.3
        img[mask] += 0.25 * net[mask]
    else:
        img[mask] += 0.2 + 0.05 * rng.standard_normal(int(mask.sum())).astype(np.float32)
    return x0, y0, x1, y1


def draw_image(
    rng: np.random.Generator, width: int, height: int, n_findings: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """A chest with ``n_findings`` findings (classes drawn by their frequency; the
    anatomy-bound ones at most once).

    Returns:
        tuple: the display-space image (float (H, W) in [0, 1]), the (N, 4) true xyxy boxes
        (clipped to the image, rounded to 0.1 px), the (N,) class ids (0-13) and the
        anatomy (:func:`render_chest`).
    """
    names = list(_CLASS_KIND)
    p = np.array([_CLASS_KIND[n][1] for n in names])
    labels: list[int] = []
    while len(labels) < n_findings:
        c = int(rng.choice(len(names), p=p / p.sum()))
        kind = _CLASS_KIND[names[c]][0]
        if kind in _ONCE and any(_CLASS_KIND[names[k]][0] == kind for k in labels):
            continue
        labels.append(c)
    big_heart = any(_CLASS_KIND[names[c]][0] == 'heart' for c in labels)
    img, anat = render_chest(rng, width, height, heart_scale=1.35 if big_heart else 1.0)
    boxes = [_draw_finding(rng, img, anat, _CLASS_KIND[names[c]][0]) for c in labels]
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    img = np.clip(img, 0, 1)
    b = np.array(boxes, np.float64).reshape(-1, 4)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return img, np.round(b, 1), np.array(labels, np.int64), anat


#: Normal anatomy a rater may box as a finding (the sample's clutter), with the finding
#: it resembles (class id).
ANATOMY_CLUTTER: tuple[tuple[str, int], ...] = (
    ('hilar vessels', 7),  # Lung Opacity
    ('rib crossing', 8),  # Nodule/Mass
    ('apical cap', 11),  # Pleural thickening
    ('costophrenic angle', 10),  # Pleural effusion
    ('basal vessel markings', 13),  # Pulmonary fibrosis
    ('normal heart', 3),  # Cardiomegaly
    ('aortic knob', 0),  # Aortic enlargement
)
#: Anatomy clutter items per training image, inclusive range.
CLUTTER_ITEMS = (3, 6)


def anatomy_clutter(
    rng: np.random.Generator, anat: dict, truth: np.ndarray, width: int, height: int
) -> mr.Clutter:
    """Normal anatomy that looks like a finding (:data:`ANATOMY_CLUTTER`), off the truth.

    Draws U{:data:`CLUTTER_ITEMS`} items (kind uniform); an item whose box meets a true
    box is skipped (counted), as MED-MNIST clutter never touches a digit.

    Returns:
        mr.Clutter: xyxy pixel boxes, ``kinds`` indexing :data:`ANATOMY_CLUTTER`,
        ``apparent`` the finding each resembles, ``contrast`` 1 (unused by the raters).
    """
    boxes, kinds, skipped = [], [], 0
    for _ in range(int(rng.integers(CLUTTER_ITEMS[0], CLUTTER_ITEMS[1] + 1))):
        kind = int(rng.integers(len(ANATOMY_CLUTTER)))
        cx, cy, ax, ay = anat['lungs'][int(rng.integers(2))]
        medial = np.sign(width / 2 - cx)
        if kind == 0:  # hilar vessels: medial middle of a lung
            s = width * rng.uniform(0.05, 0.09)
            x, y = cx + medial * 0.6 * ax, cy + ay * rng.uniform(-0.1, 0.1)
            box = (x - s / 2, y - s / 2, x + s / 2, y + s / 2)
        elif kind == 1:  # rib crossing: a small bright spot in a lung
            s = width * rng.uniform(0.03, 0.05)
            box = _in_lung(rng, (cx, cy, ax, ay), s, s, width, height)
        elif kind == 2:  # apical pleural cap
            bw, bh = ax * rng.uniform(0.5, 0.9), ay * rng.uniform(0.06, 0.1)
            box = (cx - bw / 2, cy - ay * 0.97, cx + bw / 2, cy - ay * 0.97 + bh)
        elif kind == 3:  # lateral costophrenic angle
            x = cx - medial * 0.7 * ax
            box = (x - 0.25 * ax, cy + 0.7 * ay, x + 0.25 * ax, cy + 1.0 * ay)
        elif kind == 4:  # basal vessel markings
            bw, bh = width * rng.uniform(0.08, 0.14), height * rng.uniform(0.06, 0.1)
            box = (cx - bw / 2, cy + 0.5 * ay - bh / 2, cx + bw / 2, cy + 0.5 * ay + bh / 2)
        elif kind == 5:  # the (normal) heart
            hx, hy, hax, hay = anat['heart']
            box = (hx - hax, hy - hay, hx + hax, hy + hay)
        else:  # the aortic knob
            x, y, r = anat['aorta']
            box = (x - r, y - r, x + r, y + r)
        b = np.clip(np.array(box), 0, [width, height, width, height])
        if (box_iou(b[None], truth) > 0).any():
            skipped += 1
            continue
        boxes.append(b)
        kinds.append(kind)
    return mr.Clutter(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        kinds=np.asarray(kinds, np.int64),
        apparent=np.array([ANATOMY_CLUTTER[k][1] for k in kinds], np.int64),
        contrast=np.ones(len(kinds)),
        skipped=skipped,
    )


# --------------------------------------------------------------------------- DICOM
@dataclass(frozen=True)
class DicomEncoding:
    """How one DICOM stores its pixels.

    Args:
        photometric (str): ``'MONOCHROME1'`` (low values white) or ``'MONOCHROME2'``.
        bits (int): BitsStored (12, 14 or 16; BitsAllocated is 16).
        window (bool): write WindowCenter / WindowWidth.
        rescale (bool): write RescaleIntercept 0 / RescaleSlope 1.
    """

    photometric: str
    bits: int
    window: bool
    rescale: bool


def to_stored_pixels(img: np.ndarray, photometric: str, bits: int) -> tuple[np.ndarray, tuple]:
    """Display-space image (float in [0, 1], bright = dense) -> stored DICOM values.

    The values span 5 %-90 % of the ``bits`` range (MONOCHROME2); MONOCHROME1 stores them
    inverted (low values are displayed white).

    Returns:
        tuple: (H, W) uint16 stored values and the window (center, width) that spans them.

    Examples:
        >>> s, win = to_stored_pixels(np.array([[0.0, 1.0]]), 'MONOCHROME1', 12)
        >>> s.tolist(), win
        ([[3890, 410]], (2150, 3481))
    """
    top = 2**bits - 1
    lo, hi = 0.05 * top, 0.9 * top
    v = lo + np.clip(img, 0, 1) * (hi - lo)
    if photometric == 'MONOCHROME1':
        v, lo, hi = top - v, top - hi, top - lo
    return np.round(v).astype(np.uint16), (round((lo + hi) / 2), round(hi - lo))


def write_dicom(
    path: str, stored: np.ndarray, enc: DicomEncoding, window: tuple[float, float], uid_seed: str
) -> None:
    """Write an uncompressed grey DICOM (Explicit VR Little Endian, digital X-ray).

    UIDs are derived from ``uid_seed`` so that the file is the same for the same seed.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.1.1'  # digital X-ray, presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid_seed])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_seed, 'study'])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, 'series'])
    ds.Modality = 'DX'
    ds.PatientID = 'SYNTHETIC'
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = enc.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, enc.bits, enc.bits - 1
    ds.PixelRepresentation = 0
    if enc.rescale:
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    if enc.window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)
