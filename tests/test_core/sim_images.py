"""Simulated images shared by the tests of the EM models and of the parity tests.

* Sites on a grid, the layout of the EM models' simulations: each site (a real object or
  a spurious one) of an image sits in its own cell of an 8 x 8 grid of 32-pixel cells, as
  a 24-pixel box 4 pixels in from the cell's corner, so that neighbouring sites never
  overlap and clustering recovers the sites exactly (:func:`draw_sites`, :func:`cell_box`,
  :func:`site_image`).
* The realistic MED-MNIST raters (:mod:`earl_core.sources.medmnist_raters`) on given digit
  and clutter boxes (:func:`realistic_images`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from earl_core.sources import medmnist_raters as mr
from earl_core.structures import Detections

GRID, CELL, SIDE = 8, 32.0, 24.0


def draw_sites(
    rng: np.random.Generator, pool: int, raters_per_image: int | None, mu: float, nu: float
) -> tuple[np.ndarray, int, np.ndarray]:
    """The raters who read one image and its sites, in this order from ``rng``.

    Args:
        rng (np.random.Generator): the generator of the data set.
        pool (int): raters in the pool.
        raters_per_image (int | None): raters per image, drawn without replacement, sorted;
            None: the whole pool.
        mu (float): mean number of real objects (Poisson).
        nu (float): mean number of spurious sites (Poisson).

    Returns:
        tuple: the raters (R,) int64 pool indices, the number of real objects n, and the
        cells (n + spurious,) of the real objects, then of the spurious sites.
    """
    n_read = raters_per_image
    rd = np.arange(pool) if n_read is None else np.sort(rng.choice(pool, n_read, False))
    n_obj = min(int(rng.poisson(mu)), GRID * GRID)
    n_spur = min(int(rng.poisson(nu)), GRID * GRID - n_obj)
    return rd, n_obj, rng.choice(GRID * GRID, n_obj + n_spur, replace=False)


def cell_box(cell: int) -> np.ndarray:
    """(4,) the site box of a cell, xyxy pixels."""
    x0, y0 = (cell % GRID) * CELL + 4, (cell // GRID) * CELL + 4
    return np.array([x0, y0, x0 + SIDE, y0 + SIDE])


def site_image(
    boxes: Sequence, labels: Sequence[int], rater_ids: Sequence[str], raters, image_id: int
) -> Detections:
    """The :class:`Detections` of lists of boxes, labels and raters (possibly empty)."""
    return Detections.from_raters(
        np.asarray(boxes, float).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(rater_ids, dtype=str),
        tuple(raters),
        image_id=image_id,
    )


def realistic_images(
    n_images: int,
    profiles: Sequence[mr.RaterProfile],
    raters_per_image: int,
    seed: int,
    place: Callable[[np.random.Generator], tuple[np.ndarray, int]],
    tail_df: float,
    canvas: float,
) -> list[Detections]:
    """Images read by the realistic raters: fully visible digits, then clutter.

    The pool (``draw_rater_pool``, the ``vindr-like`` knobs) is drawn from ``seed``; then
    per image, from one generator seeded with ``seed``: ``place`` gives the boxes (xyxy,
    the digits' first) and the number of digits, the clutter's apparent digits and the
    digits' labels are drawn (uniform over 0-9), then the raters
    (``simulate_realistic_raters``).

    Args:
        n_images (int): images.
        profiles (Sequence[RaterProfile]): the pool, one profile per rater; pool rater k is
            named ``f'r{k}'``.
        raters_per_image (int): raters per image.
        seed (int): the seed of the pool and of the images.
        place (Callable): ``place(rng) -> (boxes (n, 4), n_digits)``.
        tail_df (float): Student-t degrees of freedom of the box noise.
        canvas (float): image side.

    Returns:
        list[Detections]: the images, ids 0..n_images - 1.
    """
    pool = mr.VINDR_LIKE_POOL
    bias, confusion = mr.draw_rater_pool(seed, profiles, pool['bias_sd'], pool['structure'])
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        boxes, n_digits = place(rng)
        n_clutter = len(boxes) - n_digits
        clutter = mr.Clutter(
            boxes=boxes[n_digits:],
            kinds=np.zeros(n_clutter, np.int64),
            apparent=rng.integers(0, 10, n_clutter),
            contrast=np.ones(n_clutter),
        )
        out = mr.simulate_realistic_raters(
            rng, boxes[:n_digits], rng.integers(0, 10, n_digits), np.ones(n_digits), clutter,
            profiles, bias, confusion, raters_per_image, pool['visibility_width'], tail_df, canvas,
            pool['shared_confusion'],
        )  # fmt: skip
        names = [f'r{k}' for k in out.raters]
        images.append(
            Detections.from_raters(
                out.boxes, out.labels, names, [f'r{k}' for k in out.raters_read], image_id=i
            )
        )
    return images
