"""Tests of earl_mmdet.models.earl_weights (pure torch)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss  # the oracle of the focal loss

from earl_mmdet.models import earl_weights as ew
from earl_mmdet.models.earl_weights import (
    EARLConfig,
    box_weights,
    confidence_to_weight,
    inside_to_full_index,
    prior_weights,
    scale_rows,
    weight_sum_normalizer,
)


class _Boxes:
    """A duck-typed gt_instances: ``bboxes``, ``len()`` and optionally ``confidence``."""

    def __init__(self, num: int, **fields) -> None:
        self.bboxes = torch.zeros(num, 4)
        self.__dict__.update(fields)

    def __len__(self) -> int:
        return self.bboxes.shape[0]


@pytest.mark.parametrize(
    'confidence, kwargs, expected',
    [
        # paper default: w = c
        ([0.0, 0.5, 1.0], {}, [0.0, 0.5, 1.0]),
        # agreement count T with R = 3 -> T / R
        ([1.0, 2.0, 3.0], dict(scale=3.0), [1 / 3, 2 / 3, 1.0]),
        # gamma sharpens: (c)^2
        ([0.5, 1.0, 2.0], dict(gamma=2.0), [0.25, 1.0, 4.0]),
        # floor keeps a c = 0 box alive
        ([0.0, 0.05, 0.5], dict(floor=0.1), [0.1, 0.1, 0.5]),
        # all three: max(0.2, (T/3)^0.5)
        ([0.0, 3.0], dict(scale=3.0, gamma=0.5, floor=0.2), [0.2, 1.0]),
        # gamma = 0 switches weighting off, even for c = 0
        ([0.0, 2.0], dict(gamma=0.0), [1.0, 1.0]),
        # integer counts are accepted and become float32
        ([1, 2], dict(scale=2.0), [0.5, 1.0]),
    ],
)
def test_confidence_to_weight_table(confidence, kwargs, expected):
    dtype = torch.long if isinstance(confidence[0], int) else torch.float32
    out = confidence_to_weight(torch.tensor(confidence, dtype=dtype), **kwargs)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize('bad', [-0.1, math.nan, math.inf])
def test_confidence_to_weight_rejects_bad_confidence(bad):
    with pytest.raises(ValueError, match='box 1'):
        confidence_to_weight(torch.tensor([1.0, bad]))


@given(
    confidence=st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=20),
    scale=st.floats(0.1, 5.0),
    gamma=st.floats(0.0, 3.0),
    floor=st.floats(0.0, 1.0),
)
@settings(max_examples=50, deadline=None)
def test_confidence_to_weight_properties(confidence, scale, gamma, floor):
    c = torch.tensor(confidence, dtype=torch.float64)
    w = confidence_to_weight(c, scale, gamma, floor)
    assert bool((w >= floor).all())
    # monotone non-decreasing in c
    order = torch.argsort(c)
    assert bool((w[order].diff() >= -1e-12).all())
    # equals the formula
    torch.testing.assert_close(w, torch.clamp((c / scale) ** gamma, min=floor))


def test_box_weights_reads_confidence():
    cfg = EARLConfig(scale=2.0)
    assert box_weights(_Boxes(3), cfg) is None  # plain data: every box weighs 1
    got = box_weights(_Boxes(2, confidence=torch.tensor([2.0, 1.0])), cfg)
    torch.testing.assert_close(got, torch.tensor([1.0, 0.5]))


@pytest.mark.parametrize(
    'fields, error, match',
    [
        (dict(confidence=torch.ones(2)), ValueError, r'shape \(3,\)'),  # one per gt box
        (dict(confidence=torch.ones(3, 1)), ValueError, r'shape \(3,\)'),
        (dict(confidence=[1.0, 1.0, 1.0]), TypeError, 'torch.Tensor'),
        (dict(confidence=torch.tensor([1.0, -1.0, 1.0])), ValueError, 'box 1'),
        (dict(confidences=torch.ones(3)), ValueError, 'old name'),  # never silently 1
    ],
)
def test_box_weights_rejects(fields, error, match):
    with pytest.raises(error, match=match):
        box_weights(_Boxes(3, **fields), EARLConfig())


def test_scale_rows_and_prior_weights():
    label_w = torch.ones(4)
    bbox_w = torch.ones(4, 4)
    rows, w = torch.tensor([3, 1]), torch.tensor([0.5, 0.25])
    torch.testing.assert_close(scale_rows(label_w, rows, w), torch.tensor([1.0, 0.25, 1.0, 0.5]))
    out = scale_rows(bbox_w, slice(0, 2), w)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.5, 0.25, 1.0, 1.0]))
    assert bool((out == out[:, :1]).all()) and bool((bbox_w == 1).all())  # input untouched
    torch.testing.assert_close(prior_weights(4, rows, w), torch.tensor([1.0, 0.25, 1.0, 0.5]))


@pytest.mark.parametrize(
    'cfg, error, match',
    [
        (dict(terms=('cls', 'loc')), ValueError, 'loc'),  # unknown term
        (dict(terms='cls'), TypeError, 'sequence'),  # a bare string is a common mistake
        (dict(terms=('cls', 'cls')), ValueError, 'duplicates'),
        (dict(scale=0.0), ValueError, 'scale'),
        (dict(gamma=-1.0), ValueError, 'gamma'),
        (dict(floor=math.nan), ValueError, 'floor'),
        (dict(floor='0.1'), TypeError, 'floor'),
        (dict(normalize='mean'), ValueError, 'normalize'),
        (dict(policy='weight'), ValueError, 'policy'),
        (dict(ignore_below=1.5), ValueError, 'ignore_below'),
        (dict(ignore_below=float('nan')), ValueError, 'ignore_below'),
        (dict(ignore_iof=0.0), ValueError, 'ignore_iof'),
        (dict(ignore_iof='0.5'), TypeError, 'ignore_iof'),
        (dict(weight_kept=1), TypeError, 'weight_kept'),
        (dict(beta=2.0), ValueError, 'beta'),  # unknown key named
    ],
)
def test_earl_config_rejects(cfg, error, match):
    with pytest.raises(error, match=match):
        EARLConfig.from_dict(cfg)


def test_earl_config_defaults_and_round_trip():
    cfg = EARLConfig.from_dict(None)
    assert cfg.to_dict() == dict(
        terms=('cls', 'bbox'),
        scale=1.0,
        gamma=1.0,
        floor=0.0,
        normalize='num_pos',
        policy='earl',
        ignore_below=0.5,
        ignore_iof=0.5,
        weight_kept=False,
    )
    cfg2 = EARLConfig.from_dict(dict(terms=['obj'], scale=3, normalize='weight_sum'))
    assert cfg2.terms == ('obj',) and cfg2.scale == 3.0
    assert EARLConfig.from_dict(cfg2.to_dict()) == cfg2
    assert EARLConfig.from_dict(cfg2) is cfg2


@given(
    flags=st.lists(st.booleans(), min_size=1, max_size=40),
    data=st.data(),
)
@settings(max_examples=50, deadline=None)
def test_inside_to_full_index_matches_loop(flags, data):
    inside = torch.tensor(flags)
    n_inside = int(inside.sum())
    if n_inside == 0:
        return
    picks = data.draw(st.lists(st.integers(0, n_inside - 1), max_size=n_inside, unique=True))
    inds = torch.tensor(picks, dtype=torch.long)
    full_positions = [i for i, f in enumerate(flags) if f]
    expected = torch.tensor([full_positions[k] for k in picks], dtype=torch.long)
    torch.testing.assert_close(inside_to_full_index(inside, inds), expected)


@pytest.mark.parametrize(
    'count, npos, wsum, expected',
    [
        (6.0, 6.0, 2.5, 2.5),  # PseudoSampler: avg_factor = num_pos
        (6.0, 6.0, 6.0, 6.0),  # unit weights: unchanged
        (262.0, 6.0, 3.0, 259.0),  # RandomSampler: negatives keep counting
        (6.0, 6.0, 0.0, 1.0),  # clamped like mmdet's count
        (1.0, 0.0, 0.0, 1.0),  # no positive
    ],
)
def test_weight_sum_normalizer(count, npos, wsum, expected):
    assert weight_sum_normalizer(count, npos, wsum) == pytest.approx(expected)


def _instances(confidence, boxes=None):
    from mmengine.structures import InstanceData

    n = len(confidence)
    inst = InstanceData()
    inst.bboxes = torch.arange(n * 4, dtype=torch.float32).view(n, 4) if boxes is None else boxes
    inst.labels = torch.arange(n)
    inst.confidence = torch.tensor(confidence, dtype=torch.float32)
    return inst


def test_split_ignored_keeps_confident_boxes_aligned():
    cfg = EARLConfig(policy='ignore', scale=3.0, ignore_below=0.5)
    inst = _instances([1.0, 2.0, 3.0, 1.0])  # c = T with R = 3: T = 1 -> 1/3 < 0.5
    kept, regions = ew.split_ignored(inst, cfg)
    assert kept.labels.tolist() == [1, 2]
    assert kept.confidence.tolist() == [2.0, 3.0]
    assert torch.equal(regions, inst.bboxes[[0, 3]])
    # kept boxes weigh 1 unless weight_kept
    assert box_weights(kept, cfg) is None
    weights = box_weights(kept, EARLConfig(policy='ignore', scale=3.0, weight_kept=True))
    assert weights.tolist() == pytest.approx([2 / 3, 1.0])


@pytest.mark.parametrize(
    'cfg',
    [EARLConfig(), EARLConfig(policy='soft'), EARLConfig(policy='ignore', ignore_below=0.0)],
)
def test_split_ignored_is_identity_unless_a_box_is_ignored(cfg):
    inst = _instances([0.1, 1.0])
    kept, regions = ew.split_ignored(inst, cfg)
    assert kept is inst and regions is None


def test_prior_boxes_and_points_in_regions():
    regions = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    boxes = torch.tensor(
        [[0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 5.0, 2.0], [3.5, 0.0, 5.5, 2.0], [2.0, 2.0, 2.0, 2.0]]
    )
    # iof: 1, 0.5, 0.25, empty prior inside
    assert ew.boxes_in_regions(boxes, regions, 0.5).tolist() == [True, True, False, True]
    assert ew.boxes_in_regions(boxes, regions, 1.0).tolist() == [True, False, False, True]
    assert not ew.boxes_in_regions(boxes, None, 0.5).any()
    points = torch.tensor([[4.0, 4.0, 8.0, 8.0], [4.1, 0.0, 8.0, 8.0]])
    assert ew.points_in_regions(points, regions).tolist() == [True, False]
    assert ew.soft_targets(torch.tensor([0.25, 3.0])).tolist() == [0.25, 1.0]


@pytest.mark.parametrize('alpha', [0.25, 0.75])
@pytest.mark.parametrize('gamma', [0.0, 1.5, 2.0])
def test_soft_focal_loss_is_mmdet_focal_on_hard_targets(alpha, gamma):
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(64, 5, generator=g)
    targets = (torch.rand(64, 5, generator=g) < 0.3).float()
    assert 0 < int(targets.sum()) < targets.numel()
    expected = py_sigmoid_focal_loss(logits, targets, gamma=gamma, alpha=alpha, reduction='none')
    got = ew.soft_focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    torch.testing.assert_close(got, expected)
    # integer targets as well (mmdet's FocalLoss one-hot target is integer)
    torch.testing.assert_close(ew.soft_focal_loss(logits, targets.long(), alpha, gamma), expected)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize('q', [0.1, 0.3, 0.5, 0.7, 0.9])
def test_soft_focal_loss_is_minimised_where_the_score_is_the_target(q):
    # gradient 0 at p = q, negative below, positive above; the grid minimum is at q
    x = torch.tensor(_logit(q), dtype=torch.float64, requires_grad=True)
    loss = ew.soft_focal_loss(x, torch.tensor(q, dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss, x)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)
    assert float(grad) == pytest.approx(0.0, abs=1e-12)
    p = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    grid = ew.soft_focal_loss(torch.log(p / (1 - p)), torch.full_like(p, q))
    assert float(p[grid.argmin()]) == pytest.approx(q, abs=1e-3)
    below, above = grid[p < q - 1e-3], grid[p > q + 1e-3]
    assert bool((below.diff() < 0).all()) and bool((above.diff() > 0).all())
    # mmdet's focal loss on the same soft target is not minimised there (why this loss)
    mmdet = py_sigmoid_focal_loss(torch.log(p / (1 - p)), torch.full_like(p, q), reduction='none')
    if q != 0.5:
        assert abs(float(p[mmdet.argmin()]) - q) > 0.05


def test_soft_focal_loss_is_continuous_in_the_target():
    """A box of tiny q is trained like background in its column (no step at t = 0)."""
    x = torch.linspace(-4, 4, 17)
    at_zero = ew.soft_focal_loss(x, torch.zeros_like(x))
    for eps in (1e-3, 1e-6):
        near = ew.soft_focal_loss(x, torch.full_like(x, eps))
        torch.testing.assert_close(near, at_zero, rtol=0, atol=20 * eps)
