"""Realistic MED-MNIST raters: misses, clutter false positives, heavy-tailed boxes (numpy only).

The ``realistic`` variant of MED-MNIST (``tools/make_medmnist.py --variant realistic``, the
``vindr-like`` preset). Where the paper's experts disagree about *which label* a box has,
these raters disagree, as radiologists do, about *whether* something is there and *where*
its edges are. Each rater has a profile (``expert``, ``normal`` or ``weak``) whose knobs
are:

``miss``
    probability of missing a digit even when it is fully visible.
``threshold`` (with the global ``visibility_width`` tau)
    digits are rendered with a contrast c (ink scaled by c, drawn per digit); the rater
    boxes a digit with probability ``(1 - miss) * sigmoid((c - threshold) / tau)``, so
    faint digits are missed, and missed by the raters together (shared difficulty).
``fp``
    probability of boxing one clutter item: non-digit ink (a half of a digit, a stroke, a
    blob) that the gold files never label. The rater gives it the digit it resembles
    (its *apparent* digit), or a confused one.
``flip``
    probability that a box gets a wrong label: with probability ``shared_confusion`` the
    object's *look-alike* (one digit per object, drawn from the pool's mean confusion row
    and shared by all raters: raters who misread an object tend to misread it alike),
    else a draw from the rater's own confusion row (below).
``double``
    probability that a rater who boxes an object also draws a second box on it with the
    object's look-alike label (hedging between two readings).
``box_noise``
    scale of the localisation noise, a fraction of the box size: centre shifts and log
    size changes are Student-t with ``tail_df`` degrees of freedom times ``box_noise`` (a
    heavy tail: most boxes are close, a few are far off).

``box_bias``
    the log of a size factor applied to every box of the profile's raters (> 0:
    systematically loose boxes, < 0: tight);

and per rater, drawn once from the seed: its own bias ``box_bias + N(0, bias_sd)``, and a
confusion matrix: row i (zero diagonal) is drawn from ``Dirichlet(concentration * base_i)``
with ``base_i`` a mix, by ``structure`` in [0, 1], of :data:`CONFUSABLE` (visually similar
digits, structure 1) and the uniform row (0).

Raters read R images out of a pool of P raters (``num_raters`` per image sampled without
replacement when P > R; all of them when P = R), as VinDr-CXR's 3 of 17 radiologists.

A fourth group, ``bad`` (:data:`BAD_PROFILE`, the crowd presets), labels at random: every
box it draws gets a uniformly random digit (``random_labels``), and its boxes are twice
as noisy as a weak rater's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from earl_core.boxes import paired_box_iou
from earl_core.deprecation import renamed_attribute, renamed_kwargs
from earl_core.sources.medmnist import _quantise
from earl_core.sources.medmnist_images import SPLIT_CODES, paste_patch, resize_digit

__all__ = [
    'CLUTTER_KINDS',
    'CONFUSABLE',
    'BAD_PROFILE',
    'GROUP_NAMES',
    'PROFILE_NAMES',
    'VINDR_LIKE_POOL',
    'VINDR_LIKE_PROFILES',
    'Clutter',
    'RaterProfile',
    'RealisticRaters',
    'add_contrast_and_clutter',
    'confusion_base',
    'draw_rater_pool',
    'iou_to_truth',
    'profile_dict',
    'realistic_rng',
    'simulate_realistic_raters',
]

#: Rater profiles, in the order of ``--rater-mix`` and of the per-profile flags.
PROFILE_NAMES = ('expert', 'normal', 'weak')
#: Rater groups of ``--rater-mix`` (3 or 4 counts): the profiles, then ``bad``.
GROUP_NAMES = (*PROFILE_NAMES, 'bad')
#: Kinds of clutter (non-digit ink), in code order.
CLUTTER_KINDS = ('fragment', 'stroke', 'blob')
#: Pairs of visually similar digits (the classic MNIST confusions), weight 1 in the base
#: confusion; every other pair has weight :data:`_OTHER_WEIGHT`.
CONFUSABLE = (
    (1, 7),
    (2, 7),
    (3, 5),
    (3, 8),
    (4, 9),
    (5, 6),
    (5, 8),
    (6, 0),
    (7, 9),
    (8, 9),
    (0, 8),
    (2, 3),
)
_OTHER_WEIGHT = 0.05
# Apparent digits of clutter without a source digit: a stroke looks like a 1, 7 or 4; a
# blob like a 0, 6, 8 or 9.
_STROKE_DIGITS = (1, 7, 4)
_BLOB_DIGITS = (0, 6, 8, 9)
# Stream tags (after medmnist_images' 0-3): image contrast and clutter, rater pool draws.
_TAG_CLUTTER, _TAG_POOL = 4, 5


def realistic_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The contrast-and-clutter stream of image ``index`` of ``split``."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, SPLIT_CODES[split], index, _TAG_CLUTTER])
    )


@dataclass(frozen=True)
class RaterProfile:
    """Knobs of one kind of rater (see the module docstring).

    Args:
        miss (float): miss probability of a fully visible digit, in [0, 1].
        threshold (float): contrast at which half of the digits are seen, in [0, 1].
        fp (float): probability of boxing one clutter item, in [0, 1].
        flip (float): probability of a wrong label, in [0, 1].
        double (float): probability of a second, differently labelled box, in [0, 1].
        box_noise (float): localisation noise scale (fraction of the box size), >= 0.
        box_bias (float): mean log box-size factor of the profile's raters (> 0 loose,
            < 0 tight). Defaults to 0.
        random_labels (bool): every box gets a uniformly random digit (``flip`` and the
            confusion rows are not used). Defaults to False.
    """

    miss: float
    threshold: float
    fp: float
    flip: float
    double: float
    box_noise: float
    box_bias: float = 0.0
    random_labels: bool = False


#: The ``vindr-like`` calibration of each profile (``tools/make_medmnist.py``'s defaults,
#: fitted on VinDr-CXR's partner statistics; docs/medmnist.md).
VINDR_LIKE_PROFILES = {
    'expert': RaterProfile(
        miss=0.02, threshold=0.36, fp=0.045, flip=0.03, double=0.02, box_noise=0.03, box_bias=0.0
    ),
    'normal': RaterProfile(
        miss=0.04, threshold=0.38, fp=0.1, flip=0.08, double=0.1, box_noise=0.045, box_bias=0.05
    ),
    'weak': RaterProfile(
        miss=0.05, threshold=0.38, fp=0.13, flip=0.1, double=0.12, box_noise=0.055, box_bias=-0.03
    ),
}
#: The ``bad`` group of the crowd presets: sees digits and clutter as a weak rater does,
#: labels every box with a uniformly random digit, boxes twice as noisy, no hedging.
BAD_PROFILE = replace(
    VINDR_LIKE_PROFILES['weak'],
    flip=1.0,
    double=0.0,
    box_noise=2 * VINDR_LIKE_PROFILES['weak'].box_noise,
    box_bias=0.0,
    random_labels=True,
)
#: The ``vindr-like`` pool-wide knobs: visibility sigmoid width tau, Student-t degrees of
#: freedom of the box noise, spread of each rater's bias, confusion structure, share of
#: wrong labels that are the object's shared look-alike.
VINDR_LIKE_POOL = dict(
    visibility_width=0.04, tail_df=1.5, bias_sd=0.02, structure=0.8, shared_confusion=0.5
)


@dataclass
class Clutter:
    """Clutter items of one image (tight boxes of their ink; never in the gold files).

    Args:
        boxes (np.ndarray): (m, 4) float64 xyxy pixels, integer edges.
        kinds (np.ndarray): (m,) int64 index into :data:`CLUTTER_KINDS`.
        apparent (np.ndarray): (m,) int64 digit the item resembles.
        contrast (np.ndarray): (m,) float64 ink scale.
        skipped (int): items dropped because no free place was found.
    """

    boxes: np.ndarray
    kinds: np.ndarray
    apparent: np.ndarray
    contrast: np.ndarray
    skipped: int = 0


def _stroke(rng: np.random.Generator, size: int) -> np.ndarray:
    """An anti-aliased straight stroke across a size x size patch, MNIST-like width."""
    ang = rng.uniform(0, np.pi)
    half = 0.5 * size * rng.uniform(0.6, 1.0)
    c = (size - 1) / 2
    d = np.array([np.cos(ang), np.sin(ang)])
    p0, p1 = np.array([c, c]) - half * d, np.array([c, c]) + half * d
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([xx, yy], -1) - p0
    seg = p1 - p0
    t = np.clip((pts @ seg) / (seg @ seg), 0, 1)
    dist = np.linalg.norm(pts - t[..., None] * seg, axis=-1)
    width = size * rng.uniform(0.06, 0.12)
    return (255 * np.clip(width - dist + 0.5, 0, 1)).astype(np.uint8)


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A soft ellipse, cut off where it fades below 10 % of its peak."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    # 1.52 a is where the Gaussian falls to 10 %: a <= 0.3 size keeps the ellipse whole.
    a, b = size * rng.uniform(0.12, 0.3), size * rng.uniform(0.12, 0.3)
    ang = rng.uniform(0, np.pi)
    u = (xx - c) * np.cos(ang) + (yy - c) * np.sin(ang)
    v = -(xx - c) * np.sin(ang) + (yy - c) * np.cos(ang)
    g = np.exp(-((u / a) ** 2 + (v / b) ** 2))
    return np.where(g > 0.1, np.rint(255 * g), 0).astype(np.uint8)


def _fragment(
    rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, pool: np.ndarray, size: int
) -> tuple[np.ndarray, int]:
    """Half of a random digit of the pool (top, bottom, left or right), and its digit."""
    did = int(pool[rng.integers(len(pool))])
    patch = resize_digit(digits[did], size).copy()
    side, h = int(rng.integers(4)), size // 2
    if side == 0:
        patch[h:] = 0
    elif side == 1:
        patch[:h] = 0
    elif side == 2:
        patch[:, h:] = 0
    else:
        patch[:, :h] = 0
    return patch, int(labels[did])


def add_contrast_and_clutter(
    rng: np.random.Generator,
    image: np.ndarray,
    digit_boxes: np.ndarray,
    digits: np.ndarray,
    digit_labels: np.ndarray,
    pool: np.ndarray,
    contrast: tuple[float, float],
    clutter: tuple[int, int],
    clutter_size: tuple[int, int],
    max_tries: int = 50,
) -> tuple[np.ndarray, np.ndarray, Clutter]:
    """Scale each digit's ink by a random contrast, then paste clutter in free places.

    The ink of digit j (inside its tight box, which no other ink touches) becomes
    ``ceil(ink * c_j)`` with ``c_j ~ U(contrast)``, so the tight box does not change. Then
    ``m ~ U{clutter}`` clutter items are drawn (kind uniform over :data:`CLUTTER_KINDS`,
    side ``U{clutter_size}``, contrast ``U(contrast)``) and placed like digits: a position
    whose tight ink box meets a digit's or an earlier item's box is redrawn up to
    ``max_tries`` times, then the item is skipped.

    Args:
        rng (np.random.Generator): :func:`realistic_rng` of the image.
        image (np.ndarray): (S, S) uint8 rendered digits; modified in place.
        digit_boxes (np.ndarray): (n, 4) xyxy integer tight boxes.
        digits (np.ndarray): (N, 28, 28) uint8 MNIST digits (for fragments).
        digit_labels (np.ndarray): (N,) int64.
        pool (np.ndarray): the split's digit indices (fragments come from it too).
        contrast (tuple[float, float]): ink scale range, 0 < min <= max <= 1.
        clutter (tuple[int, int]): inclusive range of clutter items per image.
        clutter_size (tuple[int, int]): inclusive range of an item's patch side, pixels.
        max_tries (int): placement attempts per item. Defaults to 50.

    Returns:
        tuple: the image, (n,) digit contrasts and the :class:`Clutter` of the image.
    """
    n = len(digit_boxes)
    c_digits = rng.uniform(contrast[0], contrast[1], size=n)
    for (x1, y1, x2, y2), c in zip(digit_boxes.astype(int), c_digits):
        region = image[y1:y2, x1:x2]
        region[...] = np.ceil(region * c)
    taken = [list(b) for b in digit_boxes.tolist()]
    boxes, kinds, apparent, cons = [], [], [], []
    skipped = 0
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        kind = int(rng.integers(len(CLUTTER_KINDS)))
        size = int(rng.integers(clutter_size[0], clutter_size[1] + 1))
        c = float(rng.uniform(contrast[0], contrast[1]))
        if kind == 0:
            patch, look = _fragment(rng, digits, digit_labels, pool, size)
        elif kind == 1:
            patch, look = _stroke(rng, size), int(rng.choice(_STROKE_DIGITS))
        else:
            patch, look = _blob(rng, size), int(rng.choice(_BLOB_DIGITS))
        patch = np.ceil(patch * c).astype(np.uint8)
        box = paste_patch(rng, image, patch, taken, max_tries) if patch.any() else None
        if box is None:
            skipped += 1
            continue
        boxes.append([float(v) for v in box])
        kinds.append(kind)
        apparent.append(look)
        cons.append(c)
    return (
        image,
        c_digits,
        Clutter(
            boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
            kinds=np.asarray(kinds, np.int64),
            apparent=np.asarray(apparent, np.int64),
            contrast=np.asarray(cons, np.float64),
            skipped=skipped,
        ),
    )


def confusion_base(
    structure: float, num_classes: int = 10, pairs: Sequence[tuple[int, int]] = CONFUSABLE
) -> np.ndarray:
    """Base confusion rows: ``structure`` x similar classes + (1 - structure) x uniform.

    Args:
        structure (float): in [0, 1]; 1 = only the ``pairs`` (and a small weight
            elsewhere), 0 = uniform over the other classes.
        num_classes (int): K. Defaults to 10.
        pairs (Sequence[tuple[int, int]]): similar classes (weight 1, both ways).
            Defaults to :data:`CONFUSABLE` (digits).

    Returns:
        np.ndarray: (K, K) float64, zero diagonal, rows sum to 1.

    Examples:
        >>> b = confusion_base(1.0)
        >>> bool(b[4, 9] > b[4, 1]), float(b[4].sum())
        (True, 1.0)
    """
    if not 0.0 <= structure <= 1.0:
        raise ValueError(f'confusion structure must lie in [0, 1], got {structure}')
    sim = np.full((num_classes, num_classes), _OTHER_WEIGHT)
    for i, j in pairs:
        sim[i, j] = sim[j, i] = 1.0
    np.fill_diagonal(sim, 0.0)
    sim /= sim.sum(axis=1, keepdims=True)
    uni = np.full((num_classes, num_classes), 1.0 / (num_classes - 1))
    np.fill_diagonal(uni, 0.0)
    return structure * sim + (1.0 - structure) * uni


def draw_rater_pool(
    seed: int,
    profiles: Sequence[RaterProfile],
    bias_sd: float,
    structure: float,
    concentration: float = 50.0,
    num_classes: int = 10,
    pairs: Sequence[tuple[int, int]] = CONFUSABLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-rater box bias and confusion matrix, drawn once from ``(seed, 5)``.

    Args:
        seed (int): the dataset seed.
        profiles (Sequence[RaterProfile]): one per pool rater.
        bias_sd (float): standard deviation of each rater's log size bias around its
            profile's ``box_bias``, >= 0.
        structure (float): see :func:`confusion_base`.
        concentration (float): Dirichlet concentration around the base rows (larger =
            raters closer to the base). Defaults to 50.
        num_classes (int): K. Defaults to 10.
        pairs (Sequence[tuple[int, int]]): see :func:`confusion_base`. Defaults to
            :data:`CONFUSABLE`.

    Returns:
        tuple: ``bias`` (P,) float64 (profile bias + N(0, bias_sd)) and ``confusion``
        (P, K, K) float64 (zero diagonal, rows sum to 1).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_POOL]))
    base = confusion_base(structure, num_classes, pairs)
    bias = np.array([p.box_bias for p in profiles], np.float64)
    if bias_sd > 0:
        bias = bias + rng.normal(0.0, bias_sd, size=len(profiles))
    confusion = np.zeros((len(profiles), num_classes, num_classes))
    for k in range(len(profiles)):
        for i in range(num_classes):
            alpha = np.delete(concentration * base[i], i)
            row = rng.dirichlet(np.maximum(alpha, 1e-3))
            confusion[k, i] = np.insert(row, i, 0.0)
    return bias, confusion


@dataclass
class RealisticRaters:
    """The raters' annotations of one image (realistic variant).

    Args:
        raters_read (np.ndarray): (R,) int64 pool indices of the raters who read the image
            (``readers`` until 0.2).
        boxes (np.ndarray): (M, 4) float64 xyxy.
        labels (np.ndarray): (M,) int64.
        raters (np.ndarray): (M,) int64 pool index of each box's rater.
        target (np.ndarray): (M,) int64 object each box is on: j < n a digit, n + i
            clutter item i.
        double (np.ndarray): (M,) bool, the second (hedging) box on its object.
        fallbacks (int): boxes that fell back to the object's box (zero-area draws).
    """

    raters_read: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    raters: np.ndarray
    target: np.ndarray
    double: np.ndarray
    fallbacks: int = 0

    readers = renamed_attribute('raters_read')


def _noisy_box(
    rng: np.random.Generator,
    box: np.ndarray,
    noise: float,
    bias: float,
    df: float,
    canvas: float,
    max_tries: int = 20,
) -> tuple[np.ndarray, bool]:
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for _ in range(max_tries):
        t = rng.standard_t(df, size=4) * noise
        bw, bh = w * np.exp(bias + t[2]), h * np.exp(bias + t[3])
        x, y = cx + t[0] * w, cy + t[1] * h
        out = _quantise(np.array([[x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2]]), canvas)[0]
        if out[2] > out[0] and out[3] > out[1]:
            return out, False
    return _quantise(box[None], canvas)[0], True


@renamed_kwargs('simulate_realistic_raters', num_readers='num_raters', readers='raters')
def simulate_realistic_raters(
    rng: np.random.Generator,
    digit_boxes: np.ndarray,
    digit_labels: np.ndarray,
    digit_contrast: np.ndarray,
    clutter: Clutter,
    profiles: Sequence[RaterProfile],
    bias: np.ndarray,
    confusion: np.ndarray,
    num_raters: int,
    visibility_width: float,
    tail_df: float,
    canvas: float,
    shared_confusion: float = 0.5,
    raters: np.ndarray | None = None,
) -> RealisticRaters:
    """Simulate the raters of one image.

    Raters are drawn first (sorted pool indices; all raters if the pool has
    ``num_raters``). Then for each rater, for each digit and then each clutter item: box
    it or not (digits: ``(1 - miss) * sigmoid((c - threshold) / tau)``, clutter: ``fp``);
    the label (true or apparent digit; with probability ``flip`` a draw from the rater's
    confusion row, or the object's look-alike shared by all raters); the box
    (:func:`_noisy_box`: Student-t shifts and log-size changes of scale ``box_noise``, plus
    the rater's bias); and with probability ``double`` a second box labelled with the
    look-alike (the true digit if the first box already carries the look-alike).

    Args:
        rng (np.random.Generator): the raters stream of the image.
        digit_boxes (np.ndarray): (n, 4) true boxes.
        digit_labels (np.ndarray): (n,) true digits.
        digit_contrast (np.ndarray): (n,) ink scale of each digit.
        clutter (Clutter): the image's clutter.
        profiles (Sequence[RaterProfile]): one per pool rater.
        bias (np.ndarray): (P,) log size bias per pool rater.
        confusion (np.ndarray): (P, K, K) confusion rows per pool rater (K = 10 digits).
        num_raters (int): R <= P.
        visibility_width (float): tau > 0.
        tail_df (float): Student-t degrees of freedom > 0.
        canvas (float): image side.
        shared_confusion (float): probability that a wrong label is the object's shared
            look-alike rather than a draw from the rater's own row. Defaults to 0.5.
        raters (np.ndarray | None): (R,) pool indices of the raters, when the caller
            draws them (e.g. by workload); their boxes come in this order. Defaults to
            None (drawn here).

    Returns:
        RealisticRaters: boxes in rater, object order.
    """
    pool = len(profiles)
    num_classes = confusion.shape[-1]
    if raters is not None:
        raters = np.asarray(raters, np.int64)
    elif num_raters == pool:
        raters = np.arange(pool)
    else:
        raters = np.sort(rng.choice(pool, size=num_raters, replace=False))
    obj_boxes = np.concatenate([digit_boxes.reshape(-1, 4), clutter.boxes], axis=0)
    obj_labels = np.concatenate([digit_labels, clutter.apparent]).astype(np.int64)
    # Each object's look-alike, shared by all raters (drawn from the pool's mean
    # confusion row): a wrong label is this one with probability ``shared_confusion``, and
    # a hedging second box always carries it (or the true digit if the first box already
    # did), so raters who misread an object tend to misread it the same way.
    mean_confusion = confusion.mean(axis=0)
    look_alike = [
        int(rng.choice(num_classes, p=mean_confusion[lab])) for lab in obj_labels.tolist()
    ]
    boxes, labels, box_raters, target, double = [], [], [], [], []
    fallbacks = 0
    for k in raters.tolist():
        prof = profiles[k]
        with np.errstate(over='ignore'):  # exp -> inf is a probability of 0, as meant
            p_digit = (1.0 - prof.miss) / (
                1.0 + np.exp(-(digit_contrast - prof.threshold) / visibility_width)
            )
        p_seen = np.concatenate([p_digit, np.full(len(clutter.apparent), prof.fp)])
        for j in range(len(obj_labels)):
            if rng.random() >= p_seen[j]:
                continue
            true = int(obj_labels[j])
            lab = true
            if prof.random_labels:
                lab = int(rng.integers(num_classes))
            elif rng.random() < prof.flip:
                if rng.random() < shared_confusion:
                    lab = look_alike[j]
                else:
                    lab = int(rng.choice(num_classes, p=confusion[k, true]))
            labs = [lab]
            if rng.random() < prof.double:
                labs.append(true if lab == look_alike[j] else look_alike[j])
            for q, lb in enumerate(labs):
                box, fb = _noisy_box(
                    rng, obj_boxes[j], prof.box_noise, float(bias[k]), tail_df, canvas
                )
                fallbacks += int(fb)
                boxes.append(box)
                labels.append(lb)
                box_raters.append(k)
                target.append(j)
                double.append(q == 1)
    return RealisticRaters(
        raters_read=raters.astype(np.int64),
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        raters=np.asarray(box_raters, np.int64),
        target=np.asarray(target, np.int64),
        double=np.asarray(double, bool),
        fallbacks=fallbacks,
    )


def profile_dict(profile: RaterProfile) -> dict[str, float | bool]:
    """The profile as a plain dict (for meta.json); ``random_labels`` only when set."""
    out: dict[str, float | bool] = {
        k: float(v) for k, v in asdict(profile).items() if k != 'random_labels'
    }
    if profile.random_labels:
        out['random_labels'] = True
    return out


def iou_to_truth(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(M,) IoU of each box with its own true box (rows paired; one true box: with all)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return paired_box_iou(b, np.asarray(truth, np.float64).reshape(-1, 4))
