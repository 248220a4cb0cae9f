"""The realistic MED-MNIST raters (earl_core.sources.medmnist_raters), numpy only."""

from __future__ import annotations

import numpy as np
import pytest

from earl_core.sources import medmnist_raters as mr

Z = 4.5  # see tests/test_core/test_medmnist.py


def _profile(**kw):
    base = dict(miss=0.0, threshold=0.0, fp=0.0, flip=0.0, double=0.0, box_noise=0.0)
    return mr.RaterProfile(**{**base, **kw})


def _no_clutter():
    z = np.zeros(0, np.int64)
    return mr.Clutter(np.zeros((0, 4)), z, z, np.zeros(0))


BOXES = np.array([[10.0, 10, 40, 50], [60, 60, 90, 100]])
LABELS = np.array([4, 7])


def _simulate(profiles, clutter=None, contrast=(1.0, 1.0), seed=0, num_raters=None, **kw):
    bias, confusion = mr.draw_rater_pool(0, profiles, 0.0, 0.8)
    return mr.simulate_realistic_raters(
        np.random.default_rng(seed),
        BOXES,
        LABELS,
        np.asarray(contrast),
        clutter or _no_clutter(),
        profiles,
        bias,
        confusion,
        num_raters or len(profiles),
        kw.get('width', 0.04),
        kw.get('df', 2.0),
        128,
    )


def test_confusion_base_rows():
    for s in (0.0, 0.8, 1.0):
        b = mr.confusion_base(s)
        np.testing.assert_allclose(b.sum(1), 1.0)
        assert np.all(np.diag(b) == 0)
    uni = mr.confusion_base(0.0)
    np.testing.assert_allclose(uni[uni > 0], 1 / 9)
    sim = mr.confusion_base(1.0)
    # 4 <-> 9 is a similar pair; 4 -> 1 is not
    assert sim[4, 9] > 10 * sim[4, 1] and sim[9, 4] > 10 * sim[9, 1]
    with pytest.raises(ValueError, match='structure'):
        mr.confusion_base(1.5)


def test_rater_pool_is_seeded_and_centred_on_the_profile_bias():
    profs = [_profile(box_bias=0.1), _profile(box_bias=-0.2)]
    b0, c0 = mr.draw_rater_pool(3, profs, 0.0, 0.8)
    np.testing.assert_array_equal(b0, [0.1, -0.2])  # no spread: the profile's bias
    b1, c1 = mr.draw_rater_pool(3, profs, 0.05, 0.8)
    b2, c2 = mr.draw_rater_pool(3, profs, 0.05, 0.8)
    np.testing.assert_array_equal(b1, b2) and np.testing.assert_array_equal(c1, c2)
    assert not np.array_equal(c1[0], c1[1])  # per-rater confusion matrices
    np.testing.assert_allclose(c1.sum(-1), 1.0)
    assert np.all(c1[:, np.arange(10), np.arange(10)] == 0)


def test_noiseless_rater_reproduces_the_truth():
    res = _simulate([_profile(), _profile()])
    assert res.raters_read.tolist() == [0, 1]
    np.testing.assert_array_equal(res.boxes, np.concatenate([BOXES, BOXES]))
    assert res.labels.tolist() == [4, 7, 4, 7] and res.raters.tolist() == [0, 0, 1, 1]
    assert not res.double.any() and res.fallbacks == 0


def test_fp_one_boxes_every_clutter_item_with_its_apparent_digit():
    clutter = mr.Clutter(
        np.array([[100.0, 5, 120, 25]]), np.array([1]), np.array([7]), np.array([0.5])
    )
    res = _simulate([_profile(fp=1.0, miss=1.0)], clutter=clutter)
    assert res.target.tolist() == [2] and res.labels.tolist() == [7]
    np.testing.assert_array_equal(res.boxes, clutter.boxes)


@pytest.mark.parametrize(
    'profile, contrast, expected',
    [
        # a fully visible digit is missed with probability `miss`
        (dict(miss=0.3, threshold=0.4), 1.0, 0.3),
        # a digit far below the rater's threshold is almost never boxed
        (dict(miss=0.0, threshold=0.6), 0.3, 1.0),
        # at the threshold, half of them
        (dict(miss=0.0, threshold=0.5), 0.5, 0.5),
    ],
)
def test_miss_rate_and_visibility(profile, contrast, expected):
    prof = _profile(**profile)
    n = 0
    for seed in range(1500):
        res = _simulate([prof], contrast=(contrast, contrast), seed=seed)
        n += 2 - len(res.boxes)
    p = expected
    sd = np.sqrt(3000 * p * (1 - p)) if 0 < p < 1 else 0.0
    assert abs(n - 3000 * p) <= Z * sd + 3000 * 0.001


def test_flips_follow_the_confusion_and_doubles_carry_the_look_alike():
    prof = _profile(flip=1.0, double=1.0)
    pairs = []
    for seed in range(400):
        res = _simulate([prof], seed=seed)
        assert res.double.tolist() == [False, True, False, True]  # two boxes per object
        pairs.append(res.labels.reshape(2, 2))
    pairs = np.stack(pairs)  # (seed, object, first/second box)
    assert np.all(pairs[:, :, 0] != pairs[:, :, 1])  # never the same label twice
    assert np.all(pairs[:, :, 0] != LABELS)  # flip = 1: the first label is always wrong
    # a wrong label of a true 4 is mostly 9, its similar digit (structured confusion);
    # the hedging box says the look-alike, or the true 4 when the first box said it
    assert np.mean(pairs[:, 0, 0] == 9) > 0.5
    assert 0.2 < np.mean(pairs[:, 0, 1] == 4) < 0.8


def test_heavy_tail_and_bias():
    box = np.array([30.0, 30, 70, 80])

    def ious(df):
        rng = np.random.default_rng(0)
        return np.array(
            [
                mr.iou_to_truth(mr._noisy_box(rng, box, 0.05, 0.0, df, 128)[0][None], box)[0]
                for _ in range(2000)
            ]
        )

    # Student-t with 1.5 degrees of freedom vs (nearly) Gaussian noise of the same scale:
    # the body stays close (median IoU 0.76 vs 0.85), the tail goes far (2 % below 0.1).
    heavy, normal = ious(1.5), ious(1e6)
    assert np.median(heavy) > 0.7 and np.quantile(heavy, 0.02) < 0.2
    assert np.quantile(normal, 0.02) > 0.6
    rng = np.random.default_rng(1)
    loose = [mr._noisy_box(rng, box, 0.0, 0.1, 2.0, 128)[0] for _ in range(3)]
    for b in loose:  # no noise, bias 0.1: every side exp(0.1) longer, same centre
        np.testing.assert_allclose(b[2] - b[0], 40 * np.exp(0.1), atol=0.011)
        np.testing.assert_allclose((b[0] + b[2]) / 2, 50, atol=0.011)


def test_pool_raters_sampled_per_image():
    profs = [_profile() for _ in range(17)]
    seen = set()
    for seed in range(50):
        res = _simulate(profs, seed=seed, num_raters=3)
        assert len(res.raters_read) == 3 == len(set(res.raters_read.tolist()))
        assert set(res.raters.tolist()) <= set(res.raters_read.tolist())
        seen |= set(res.raters_read.tolist())
    assert len(seen) == 17


def test_old_reader_names_warn_and_give_the_same_draws():
    # simulate_realistic_raters(num_readers=, readers=) and RealisticRaters.readers (until
    # 0.2) keep working until 0.3, with a FutureWarning
    profs = [_profile() for _ in range(5)]
    bias, confusion = mr.draw_rater_pool(0, profs, 0.0, 0.8)
    args = (BOXES, LABELS, np.ones(2), _no_clutter(), profs, bias, confusion)
    rest = dict(visibility_width=0.04, tail_df=2.0, canvas=128)

    def run(**kw):
        return mr.simulate_realistic_raters(np.random.default_rng(1), *args, **rest, **kw)

    new = run(num_raters=3)
    with pytest.warns(FutureWarning, match=r'num_readers=.*num_raters='):
        old = run(num_readers=3)
    assert old.raters_read.tolist() == new.raters_read.tolist()
    np.testing.assert_array_equal(old.boxes, new.boxes)
    with pytest.warns(FutureWarning, match=r'RealisticRaters\.readers.*\.raters_read'):
        assert old.readers is old.raters_read
    with pytest.warns(FutureWarning, match=r'simulate_realistic_raters: readers=.*raters='):
        given = run(num_raters=2, readers=[4, 1])
    assert given.raters_read.tolist() == [4, 1]
    with pytest.raises(TypeError, match='give raters= only'):
        run(num_raters=2, readers=[4, 1], raters=[4, 1])


def test_contrast_and_clutter_keep_the_gold_boxes():
    from earl_core.sources import medmnist as mm

    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 4:24, 8:20] = 200
    rng = np.random.default_rng(1)
    layout = mm.render_image(rng, digits, np.array([1, 2, 3]), np.arange(3), 128, (3, 3), (20, 30))
    image, contrast, clutter = mr.add_contrast_and_clutter(
        np.random.default_rng(2),
        layout.image.copy(),
        layout.boxes,
        digits,
        np.array([1, 2, 3]),
        np.arange(3),
        (0.3, 0.6),
        (4, 4),
        (12, 24),
    )
    assert len(clutter.kinds) + clutter.skipped == 4 and np.all(
        (contrast >= 0.3) & (contrast <= 0.6)
    )
    for (x1, y1, x2, y2), c in zip(layout.boxes.astype(int), contrast):
        crop, ref = image[y1:y2, x1:x2], layout.image[y1:y2, x1:x2]
        np.testing.assert_array_equal(crop, np.ceil(ref * c))  # ink scaled, box unchanged
        for b in clutter.boxes:  # clutter never meets a digit's box
            assert b[0] >= x2 or x1 >= b[2] or b[1] >= y2 or y1 >= b[3]
