"""Each iterate's weight in an averaged model (earl_mmdet.engine.averaging): hand-computed
cases, and the maths checked against mmengine's / mmdet's averaged models and EMAHook."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from earl_mmdet.engine import averaging as av


@pytest.mark.parametrize(
    'momenta, weights',
    [
        # update 0 copies, then halves: (x0 / 2 + x1 / 2) / 2 + x2 / 2
        ([1.0, 0.5, 0.5], [0.25, 0.25, 0.5]),
        # 1 / (1 + s): a uniform mean
        ([1.0, 1 / 2, 1 / 3, 1 / 4], [0.25, 0.25, 0.25, 0.25]),
        # momentum 1 everywhere: the last iterate only
        ([1.0, 1.0, 1.0], [0.0, 0.0, 1.0]),
        # a single iterate
        ([1.0], [1.0]),
    ],
)
def test_iterate_weights(momenta, weights):
    w = av.iterate_weights(np.array(momenta))
    assert w == pytest.approx(weights) and w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    'momenta, message',
    [
        ([0.5, 0.5], r'momenta\[0\] == 1'),  # the first update always copies
        ([1.0, 1.5], r'in \[0, 1\]'),
        ([], r'1-D'),
    ],
)
def test_iterate_weights_refuses_impossible_momenta(momenta, message):
    with pytest.raises(ValueError, match=message):
        av.iterate_weights(np.array(momenta))


def test_the_configs_ema_barely_averages_over_a_24_epoch_run():
    """Issue 26's figure: after 2,256 iterations the newest iterate weighs 0.32."""
    hook = dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True)
    s = av.averaging_summary(av.ema_momenta(hook, 24 * 94), 0.2)
    assert round(s['newest'], 2) == 0.32
    assert s['mean_age'] < 3 and s['effective_iterates'] < 6


@pytest.mark.parametrize(
    'hook, newest, last_fraction',
    [
        # span 451 = 20 % of 2,256: 2 / 452 on the newest, 1 - e^-2 on the window
        (dict(ema_type='ExponentialMovingAverage', momentum=2 / 452), 2 / 452, 0.8647),
        # uniform over the last 451 iterates: all the weight in the window
        (
            dict(ema_type='MomentumAnnealingEMA', gamma=1, momentum=1 / 452, begin_iter=1806),
            1 / 451,
            1.0,
        ),
        (dict(ema_type='StochasticWeightAverage', begin_iter=1806), 1 / 451, 1.0),
    ],
)
def test_averages_that_average(hook, newest, last_fraction):
    s = av.averaging_summary(av.ema_momenta(hook, 2256), 0.2)
    assert s['newest'] == pytest.approx(newest)
    assert s['last_fraction'] == pytest.approx(last_fraction, abs=1e-4)


@pytest.mark.parametrize(
    'hook, iters, message',
    [
        (dict(ema_type='Nope'), 10, r"ema_type 'Nope' unknown"),
        (dict(ema_type='ExpMomentumEMA', interval=2), 10, 'only interval 1'),
        (dict(ema_type='ExpMomentumEMA', begin_epoch=3), 10, 'only interval 1'),
        (dict(ema_type='ExpMomentumEMA', begin_iter=12), 10, 'begin_iter 12 lies beyond 10'),
        (dict(ema_type='ExpMomentumEMA'), 0, 'num_iters must be an int >= 1, got 0'),
    ],
)
def test_ema_momenta_refuses_what_it_does_not_model(hook, iters, message):
    with pytest.raises(ValueError, match=message):
        av.ema_momenta(hook, iters)


def _averaged_model(hook: dict):
    from mmdet.registry import MODELS

    import earl_mmdet  # noqa: F401  (mmdet's models registered: ExpMomentumEMA)

    args = {k: v for k, v in hook.items() if k not in ('ema_type', 'begin_iter')}
    return MODELS.build(
        dict(type=hook['ema_type'], **args), default_args=dict(model=nn.Linear(1, 1, bias=False))
    )


@pytest.mark.parametrize(
    'hook',
    [
        dict(ema_type='ExpMomentumEMA', momentum=0.0001, gamma=20),  # mmdet's formula
        dict(ema_type='ExponentialMovingAverage', momentum=0.1),
        dict(ema_type='MomentumAnnealingEMA', momentum=0.01, gamma=1),
        dict(ema_type='MomentumAnnealingEMA', momentum=0.01, gamma=3),
        dict(ema_type='StochasticWeightAverage'),
    ],
)
def test_weights_are_what_the_averaged_models_compute(hook):
    """Feed the averaged model x_s = distinct values; its result must be sum w_s x_s."""
    model = _averaged_model(hook)
    xs = np.random.default_rng(0).normal(size=40)
    src = nn.Linear(1, 1, bias=False)
    for x in xs:
        with torch.no_grad():
            src.weight.fill_(float(x))
        model.update_parameters(src)
    expected = float(av.iterate_weights(av.ema_momenta(hook, xs.size)) @ xs)
    assert float(model.module.weight) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_begin_iter_of_the_hook_is_the_one_modelled():
    """EMAHook copies until ``runner.iter + 1 >= begin_iter``: with begin_iter = N - W + 1
    and MomentumAnnealingEMA(gamma=1) the result is the mean of the last W iterates."""
    from mmengine.hooks import EMAHook

    n, w = 12, 5
    hook = EMAHook(
        ema_type='MomentumAnnealingEMA', gamma=1, momentum=1 / (w + 1), begin_iter=n - w + 1
    )
    src = nn.Linear(1, 1, bias=False)
    runner = SimpleNamespace(model=src, iter=0, max_iters=n)
    hook.before_run(runner)
    hook.before_train(runner)
    xs = np.arange(n, dtype=np.float64) ** 2
    for i, x in enumerate(xs):
        with torch.no_grad():
            src.weight.fill_(float(x))
        runner.iter = i
        hook.after_train_iter(runner, i)
    assert float(hook.ema_model.module.weight) == pytest.approx(xs[-w:].mean())
    momenta = av.ema_momenta(
        dict(ema_type='MomentumAnnealingEMA', gamma=1, begin_iter=n - w + 1), n
    )
    assert float(av.iterate_weights(momenta) @ xs) == pytest.approx(xs[-w:].mean())


@pytest.mark.parametrize('window, momentum', [(1, 1.0), (3, 0.5), (451, 2 / 452)])
def test_span_momentum(window, momentum):
    assert av.span_momentum(window) == pytest.approx(momentum)
    # its mean age (1 - m) / m equals a uniform window's (window - 1) / 2
    assert (1 - momentum) / momentum == pytest.approx((window - 1) / 2)


@pytest.mark.parametrize('window', [0, -3, 2.5, True])
def test_span_momentum_refuses_non_counts(window):
    with pytest.raises(ValueError, match='window must be an int >= 1'):
        av.span_momentum(window)


CONFIG_HOOKS = [
    dict(
        type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49
    ),
    dict(type='TrustOwnCheckpointsHook'),
]


@pytest.mark.parametrize(
    'mode, opts',
    [
        # the pilot: nothing changes
        ('config', []),
        # W = round(0.2 x 2256) = 451
        (
            'ema',
            [
                'custom_hooks.0.ema_type=ExponentialMovingAverage',
                f'custom_hooks.0.momentum={2 / 452}',
            ],
        ),
        (
            'swa',
            [
                'custom_hooks.0.ema_type=MomentumAnnealingEMA',
                'custom_hooks.0.gamma=1',
                f'custom_hooks.0.momentum={1 / 452}',
                'custom_hooks.0.begin_iter=1806',
            ],
        ),
    ],
)
def test_ema_setup_options_and_what_they_average(mode, opts):
    got, hook = av.ema_setup(CONFIG_HOOKS, 2256, mode, 0.2)
    assert got == opts
    assert hook['update_buffers'] is True and hook['priority'] == 49  # kept
    record = av.ema_record(CONFIG_HOOKS, 2256, mode, 0.2)
    assert record['mode'] == mode and record['iterations'] == 2256
    expected_newest = {'config': 0.3237, 'ema': 2 / 452, 'swa': 1 / 451}[mode]
    assert record['newest'] == pytest.approx(expected_newest, abs=1e-4)


@pytest.mark.parametrize(
    'hooks, mode, window, message',
    [
        ([dict(type='TrustOwnCheckpointsHook')], 'ema', 0.2, r'has 0 EMAHook\(s\)'),
        (CONFIG_HOOKS[:1] * 2, 'ema', 0.2, r'has 2 EMAHook\(s\)'),
        (None, 'config', 0.2, r'has 0 EMAHook\(s\)'),
        # ExponentialMovingAverage takes no gamma and --cfg-options cannot remove it
        (
            [dict(CONFIG_HOOKS[0], gamma=2000)],
            'ema',
            0.2,
            r"custom_hooks.0 \(EMAHook\) has \['gamma'\]",
        ),
        (CONFIG_HOOKS, 'ema', 0.0, r'window must lie in \(0, 1\]'),
        (CONFIG_HOOKS, 'swa', 1.5, r'window must lie in \(0, 1\]'),
        (CONFIG_HOOKS, 'last', 0.2, r"EMA mode 'last' unknown"),
    ],
)
def test_ema_setup_refuses(hooks, mode, window, message):
    with pytest.raises(ValueError, match=message):
        av.ema_setup(hooks, 100, mode, window)
