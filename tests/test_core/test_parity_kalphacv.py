"""Krippendorff's alpha for boxes held against kalphacv (1.5.2, Tschirschwitz et al.).

kalphacv forms units image by image: the raters in sorted order, each rater's boxes matched
(Hungarian, class-agnostic, IoU > threshold) to the free boxes of each earlier rater in
turn; every reader gives one value per unit, its box's category or *nothing*, and the
image's alpha is the ``krippendorff`` package's nominal alpha of that table (rounded to 4
decimals; 1 where only one value occurs). The data set's alpha is the mean over images.

What agrees (where both form the same units):

* per image: our ``alpha_nominal`` of the image alone is kalphacv's alpha (to its
  rounding, 5e-5), once labels are shifted by 1 (below);
* pooled: our ``alpha_nominal`` of a data set is Krippendorff's nominal alpha of all
  kalphacv's units of all images together (1e-9), and our IoU-graded ``alpha`` is
  Krippendorff's alpha of the same units with the distance 1 - IoU between boxes of one
  label (computed here by brute force).

What differs, pinned below and in docs/aggregators.md: the data set's alpha (ours pooled,
kalphacv's a mean of per-image alphas), *nothing* (kalphacv codes it as category 0, the
same value as a box of class 0), the units where boxes crowd (kalphacv matches a new
rater's box to one earlier rater's box; ours clusters with average linkage over the whole
unit), images where every value agrees (kalphacv 1, ours undefined: D_e = 0), images with
one reader (kalphacv raises when they hold two classes, ours skips them) and images nobody
drew on (kalphacv counts them as alpha = 1, ours leaves them out by default).
"""

from __future__ import annotations

import numpy as np
import pytest

from earl_core.fusion.matching import cluster_segments
from earl_core.metrics.rater_report import krippendorff_alpha_boxes
from earl_core.sources import medmnist_raters as mr
from earl_core.structures import Detections
from tests.test_core.sim_images import realistic_images
from tests.test_core.test_bayes_raters import THETA, generate

kalphacv = pytest.importorskip('kalphacv')
krippendorff = pytest.importorskip('krippendorff')
from kalphacv import calculate_iaa, krippendorff_alpha, reliability_data  # noqa: E402

SEEDS = (0, 1, 2)
THR = 0.5
#: kalphacv rounds each image's alpha to 4 decimals: half a unit of the 4th, and float noise.
ROUNDING = 5e-5 + 1e-9


def grid_images(seed: int, n_images: int = 60) -> list[Detections]:
    """Sites on a grid (test_bayes_raters' model: misses, flips, false boxes) with boxes
    1 % of the side off: each site is one unit for both definitions."""
    images, _ = generate(
        n_images, THETA, np.full(6, 0.2), np.full(6, 0.01), raters_per_image=3, seed=seed
    )
    return images


def crowded_images(seed: int, n_images: int = 60, canvas: float = 128.0) -> list[Detections]:
    """MED-MNIST realistic raters (vindr-like profiles: hedging second boxes, heavy-tailed
    box noise, clutter) on digits and clutter placed at random, overlapping: 3 of 5 raters
    read each image."""
    profiles = [mr.VINDR_LIKE_PROFILES[p] for p in ('expert', 'normal', 'weak', 'normal', 'weak')]

    def anywhere(rng):
        n_d, n_c = int(rng.integers(1, 5)), int(rng.integers(0, 4))
        side = rng.integers(16, 41, n_d + n_c)[:, None]
        xy = rng.uniform(0, canvas - side, (n_d + n_c, 2))
        return np.concatenate([xy, xy + side], 1).round(), n_d

    tail_df = mr.VINDR_LIKE_POOL['tail_df']
    return realistic_images(n_images, profiles, 3, seed, anywhere, tail_df, canvas)


def annotations(image: Detections, shift: int = 1) -> list[dict]:
    """kalphacv's annotations (COCO xywh, int category = label + shift) of an image."""
    return [
        dict(bbox=[x0, y0, x1 - x0, y1 - y0], category_id=int(lab) + shift, rater=rater)
        for (x0, y0, x1, y1), lab, rater in zip(
            image.boxes.tolist(), image.labels.tolist(), image.rater_ids
        )
    ]


def kalphacv_units(image: Detections, shift: int = 1):
    """kalphacv's table of the image (rows: readers, sorted; columns: units) and alpha."""
    data = reliability_data.ReliabilityData('x', annotations(image, shift), image.raters, (1, 1))
    table = data.run('bbox', THR)
    return table, krippendorff_alpha.calculate_alpha(table)


def units_of(table) -> list[tuple[int, ...]]:
    """The units of a kalphacv table as sorted tuples of box indices."""
    return sorted(tuple(sorted(e.id for e in col if e.id >= 0)) for col in zip(*table))


def our_units(image: Detections) -> list[tuple[int, ...]]:
    unit = cluster_segments(image.boxes, np.array([len(image)]), image.rater_index, THR)
    return sorted(tuple(np.flatnonzero(unit == u).tolist()) for u in np.unique(unit))


def categories(table) -> np.ndarray:
    """(readers, units) float: the category of each value, 0 = nothing (kalphacv's code)."""
    return krippendorff_alpha.convert_to_classes(table).reshape(len(table), -1)


def alpha_alone(image: Detections) -> float | None:
    return krippendorff_alpha_boxes([image], THR)['alpha_nominal']


def pairable(images: list[Detections]) -> list[Detections]:
    """Images read by two raters or more on which somebody drew."""
    return [im for im in images if len(im.raters) >= 2 and len(im)]


@pytest.mark.parametrize('seed', SEEDS)
def test_per_image_alpha_is_kalphacvs(seed):
    """Same units (the grid): each image's alpha_nominal is kalphacv's; where every value
    of an image agrees ours is undefined (None, D_e = 0) and kalphacv says 1."""
    images = pairable(grid_images(seed))
    unanimous = 0
    for im in images:
        table, theirs = kalphacv_units(im)
        assert units_of(table) == our_units(im)
        ours = alpha_alone(im)
        if ours is None:
            unanimous += 1
            assert theirs == 1
        else:
            assert abs(ours - theirs) <= ROUNDING, (im.image_id, ours, theirs)
    assert 0 < unanimous < len(images)


@pytest.mark.parametrize('seed', SEEDS)
def test_pooled_alpha_is_krippendorffs_over_all_kalphacv_units(seed):
    """The data set's alpha_nominal is the krippendorff package's nominal alpha of all
    images' kalphacv units side by side; with include_empty_images=True, each image that
    nobody drew on (four added here) adds one unit of nothing values."""
    nobody_drew = [Detections.from_raters(np.zeros((0, 4)), [], [], ['r0', 'r1', 'r2'])] * 4
    images = [im for im in grid_images(seed) if len(im.raters) >= 2] + nobody_drew
    tables = [categories(kalphacv_units(im)[0]) for im in images]
    pooled = krippendorff.alpha(np.concatenate(tables, 1), level_of_measurement='nominal')
    ours = krippendorff_alpha_boxes(images, THR)
    assert ours['alpha_nominal'] == pytest.approx(pooled, abs=1e-9)
    empty = sum(1 for im in images if not len(im))
    assert empty > 0
    nothing = np.zeros((3, empty))
    with_empty = krippendorff.alpha(
        np.concatenate([*tables, nothing], 1), level_of_measurement='nominal'
    )
    ours = krippendorff_alpha_boxes(images, THR, include_empty_images=True)
    assert ours['alpha_nominal'] == pytest.approx(with_empty, abs=1e-9)


@pytest.mark.parametrize('seed', SEEDS)
def test_data_set_alpha_kalphacv_averages_and_ours_pools(seed):
    """kalphacv's data set alpha (calculate_iaa) is the mean over images of its per-image
    alpha, images nobody drew on counting 1: the mean of ours with the same conventions.
    Our pooled alpha weighs each unit alike instead: the two differ (by more than the
    rounding on these data; docs/aggregators.md gives the sizes)."""
    images = [im for im in grid_images(seed) if len(im.raters) >= 2]
    coco = {
        'images': [
            dict(id=i, file_name=str(i), width=256, height=256, raters=list(im.raters))
            for i, im in enumerate(images)
        ],
        'annotations': [
            dict(a, image_id=i) for i, im in enumerate(images) for a in annotations(im)
        ],
    }
    theirs = calculate_iaa.calculate_iaa('bbox', coco, 'raters', 'rater', [THR], 0.6, silent=True)
    per_image = [1.0 if alpha_alone(im) is None else alpha_alone(im) for im in images]
    assert theirs[THR] == pytest.approx(np.mean(per_image), abs=ROUNDING)
    pooled = krippendorff_alpha_boxes(images, THR)['alpha_nominal']
    assert abs(pooled - theirs[THR]) > 10 * ROUNDING


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes (written out here, not earl_core's)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.mark.parametrize('seed', SEEDS)
def test_iou_graded_alpha_by_brute_force_over_kalphacv_units(seed):
    """kalphacv has no IoU-graded alpha: ours is Krippendorff's alpha over kalphacv's units
    with the distance 0 (nothing, nothing), 1 (box, nothing), 1 (labels differ), 1 - IoU
    (one label), D_e over every two values of the data set (boxes of different images
    compared in pixels), here summed pair by pair."""
    images = pairable(grid_images(seed, n_images=30))
    unit_of, label, boxes = [], [], []
    for im in images:
        table, _ = kalphacv_units(im)
        for u, column in enumerate(zip(*table)):
            for e in column:
                unit_of.append((im.image_id, u))
                label.append(-1 if e.id < 0 else int(im.labels[e.id]))
                boxes.append(im.boxes[e.id] if e.id >= 0 else np.zeros(4))
    label, boxes = np.array(label), np.array(boxes)
    _, unit = np.unique(np.array(unit_of), axis=0, return_inverse=True)
    unit = unit.reshape(-1)
    both = (label[:, None] >= 0) & (label[None, :] >= 0)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(both, iou_matrix(boxes, boxes), 0.0)
    delta = np.where(label[:, None] != label[None, :], 1.0, np.where(both, 1.0 - iou, 0.0))
    np.fill_diagonal(delta, 0.0)
    n = len(label)
    m_u = np.bincount(unit)[unit]
    same_unit = unit[:, None] == unit[None, :]
    d_o = (np.where(same_unit, delta, 0.0).sum(1) / (m_u - 1)).sum() / n
    d_e = delta.sum() / (n * (n - 1))
    ours = krippendorff_alpha_boxes(images, THR)
    assert ours['units'] == len(np.unique(unit)) and ours['values'] == n
    assert ours['observed_disagreement'] == pytest.approx(d_o, abs=1e-9)
    assert ours['expected_disagreement'] == pytest.approx(d_e, abs=1e-9)
    assert ours['alpha'] == pytest.approx(1.0 - d_o / d_e, abs=1e-9)


def test_kalphacv_codes_nothing_as_category_0():
    """Rater a boxes a class-0 object that rater b does not: kalphacv's value for b's
    nothing is category 0, a's box is category 0 too, so they agree (alpha 1). Ours and
    kalphacv with labels shifted by 1 give 0 (one unit, box vs nothing)."""
    image = Detections.from_raters([[0, 0, 10, 10]], [0], ['a'], ['a', 'b'])
    assert kalphacv_units(image, shift=0)[1] == 1
    assert kalphacv_units(image, shift=1)[1] == 0
    assert alpha_alone(image) == 0.0


def test_kalphacv_links_a_box_through_one_earlier_rater():
    """Three 10 x 10 boxes of one label: IoU(a, b) = .65, IoU(a, c) = .56, IoU(b, c) = .34.
    kalphacv matches c to a's box (IoU > .5): one unit, every value the same: alpha 1.
    Ours: c's average IoU with {a, b} is .45 < .5, so two units, (box, box, nothing) and
    (nothing, nothing, box): D_o = (2 + 2) / 6, D_e = 18 / 30, alpha = 1 - 10/9 = -1/9."""
    # IoU of two 10-wide boxes shifted by d: (10 - d) / (10 + d) -> d = 10 (1 - t) / (1 + t)
    d_ab, d_ac = 10 * 0.35 / 1.65, 10 * 0.44 / 1.56
    boxes = [[0, 0, 10, 10], [d_ab, 0, 10 + d_ab, 10], [-d_ac, 0, 10 - d_ac, 10]]
    image = Detections.from_raters(boxes, [1, 1, 1], ['a', 'b', 'c'], ['a', 'b', 'c'])
    table, theirs = kalphacv_units(image)
    assert units_of(table) == [(0, 1, 2)] and theirs == 1
    assert our_units(image) == [(0, 1), (2,)]
    assert alpha_alone(image) == pytest.approx(-1 / 9, abs=1e-12)


def test_one_rater_and_empty_images():
    """An image with one reader: kalphacv raises once it holds two classes; ours skips it.
    An image read by two raters who drew nothing: kalphacv's alpha 1; ours leaves it out
    (no unit) unless include_empty_images=True (one unit of nothing values)."""
    one = Detections.from_raters([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 1], ['a', 'a'], ['a'])
    with pytest.raises(ValueError, match='at least two coders'):
        kalphacv_units(one)
    assert krippendorff_alpha_boxes([one])['units'] == 0
    empty = Detections.from_raters(np.zeros((0, 4)), [], [], ['a', 'b'])
    assert kalphacv_units(empty)[1] == 1
    assert krippendorff_alpha_boxes([empty])['units'] == 0
    assert krippendorff_alpha_boxes([empty], include_empty_images=True)['units'] == 1


@pytest.mark.parametrize('seed', SEEDS)
def test_crowded_boxes_form_other_units(seed):
    """MED-MNIST raters on overlapping objects: wherever kalphacv's units are ours, the
    alphas agree; on some images the units differ (sequential matching through one
    earlier rater vs average linkage), and so may the alphas."""
    images = pairable(crowded_images(seed))
    differ = 0
    for im in images:
        table, theirs = kalphacv_units(im)
        ours = alpha_alone(im)
        if units_of(table) != our_units(im):
            differ += 1
        else:
            assert abs((1.0 if ours is None else ours) - theirs) <= ROUNDING
    assert 0 < differ < len(images)
