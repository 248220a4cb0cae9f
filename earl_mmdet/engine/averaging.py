"""What an averaged model (mmengine's ``EMAHook``) is made of: each iterate's weight.

mmengine's averaged models update after every training iteration ``s = 0, 1, ..., N - 1``:
update 0 copies the weights, update ``s >= 1`` sets ``avg = (1 - m_s) avg + m_s x_s`` with
the model's momentum ``m_s``. The averaged weights are therefore ``sum_s w_s x_s`` with
``w_s = m_s prod_{j > s} (1 - m_j)`` (``m_0 = 1``), and the newest iterate's weight is
``w_{N-1} = m_{N-1}``. :func:`ema_momenta` gives ``m_s`` for an ``EMAHook`` config,
:func:`iterate_weights` the ``w_s`` and :func:`averaging_summary` the numbers that say
whether the model averages at all.

The medmnist configs' ``ExpMomentumEMA`` (momentum 1e-4, gamma 2000; mmdet's formula
``m_s = (1 - momentum) exp(-(1 + s) / gamma) + momentum``) has, after the 2,256 iterations
of a 24-epoch run on 1,500 images (94 per epoch), ``m_2255 = 0.32``: the tested weights are
a third the last iterate, their mean age is 2.1 iterations, and they are as concentrated
as a uniform average over 5 iterates. Two averages that really average, here over the
last ``W`` = 20 % of the iterations (451; ``tools/benchmark_medmnist.py --ema``):

* ``ExponentialMovingAverage`` with ``momentum = 2 / (W + 1)`` (:func:`span_momentum`):
  the EMA whose mean age, ``(1 - m) / m = (W - 1) / 2``, equals that of a uniform
  average over the last ``W`` iterates (the "span" of an EMA);
* a uniform average of the last ``W`` iterates (stochastic weight averaging), which
  mmengine's ``MomentumAnnealingEMA`` gives with ``gamma = 1`` (momentum
  ``max(momentum, 1 / (1 + steps))``, its floor below ``1 / W``) and ``begin_iter = N - W
  + 1`` (the hook copies the weights until iteration ``begin_iter - 1``, 0-based, then
  averages).

Pure numpy, no mmengine. :func:`ema_setup` turns a config's ``EMAHook`` into one of these
(``--cfg-options``), :func:`ema_record` is what a study run records of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: mmdet's / mmengine's defaults of the averaged models' arguments this module knows.
EMA_DEFAULTS = {
    'ExpMomentumEMA': dict(momentum=0.0002, gamma=2000),
    'ExponentialMovingAverage': dict(momentum=0.0002),
    'MomentumAnnealingEMA': dict(momentum=0.0002, gamma=100),
    'StochasticWeightAverage': {},
}


def ema_momenta(hook: Mapping[str, Any], num_iters: int) -> np.ndarray:
    """The momentum ``m_s`` of every training iteration ``s`` under an ``EMAHook`` config.

    Iterations before the hook starts (``begin_iter``: it starts at 0-based iteration
    ``begin_iter - 1``, or 0) copy the weights (momentum 1); the first update after the
    start copies too (the averaged model's ``steps == 0``).

    Args:
        hook (Mapping): an ``EMAHook`` config: ``ema_type`` (one of :data:`EMA_DEFAULTS`;
            default ``'ExponentialMovingAverage'`` as the hook's), ``momentum``, ``gamma``,
            ``begin_iter``; ``interval`` must be 1 and ``begin_epoch`` 0.
        num_iters (int): training iterations (>= 1).

    Returns:
        np.ndarray: (num_iters,) float64 momenta, 1 up to the first update.

    Examples:
        >>> m = ema_momenta(dict(ema_type='ExpMomentumEMA', momentum=1e-4), 2256)
        >>> round(float(m[-1]), 2)  # the newest iterate's weight after 24 epochs x 94
        0.32
        >>> ema_momenta(dict(ema_type='MomentumAnnealingEMA', gamma=1, begin_iter=3), 5).tolist()
        [1.0, 1.0, 1.0, 0.5, 0.3333333333333333]
    """
    ema_type = hook.get('ema_type', 'ExponentialMovingAverage')
    if ema_type not in EMA_DEFAULTS:
        raise ValueError(
            f'EMAHook ema_type {ema_type!r} unknown here; known: {sorted(EMA_DEFAULTS)}'
        )
    if hook.get('interval', 1) != 1 or hook.get('begin_epoch', 0) != 0:
        raise ValueError(
            f'EMAHook interval {hook.get("interval", 1)!r} / begin_epoch '
            f'{hook.get("begin_epoch", 0)!r}: only interval 1 and begin_epoch 0 are modelled'
        )
    if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) or num_iters < 1:
        raise ValueError(f'num_iters must be an int >= 1, got {num_iters!r}')
    args = dict(EMA_DEFAULTS[ema_type])
    args.update({k: hook[k] for k in args if k in hook})
    begin = int(hook.get('begin_iter', 0))
    start = max(begin - 1, 0)  # first 0-based iteration the hook updates at
    if start >= num_iters:
        raise ValueError(f'EMAHook begin_iter {begin} lies beyond {num_iters} iterations')
    steps = np.arange(num_iters - start, dtype=np.float64)  # the averaged model's counter
    if ema_type == 'ExpMomentumEMA':
        m = (1 - args['momentum']) * np.exp(-(1 + steps) / args['gamma']) + args['momentum']
    elif ema_type == 'ExponentialMovingAverage':
        m = np.full(steps.shape, float(args['momentum']))
    elif ema_type == 'MomentumAnnealingEMA':
        m = np.maximum(args['momentum'], args['gamma'] / (args['gamma'] + steps))
    else:  # StochasticWeightAverage
        m = 1.0 / (steps + 1)
    m[0] = 1.0  # steps == 0: copy
    return np.concatenate([np.ones(start), m])


def iterate_weights(momenta: np.ndarray) -> np.ndarray:
    """Each iterate's weight in the final average: ``w_s = m_s prod_{j > s} (1 - m_j)``.

    Examples:
        >>> iterate_weights(np.array([1.0, 0.5, 1 / 3])).round(4).tolist()  # uniform
        [0.3333, 0.3333, 0.3333]
    """
    m = np.asarray(momenta, dtype=np.float64)
    if m.ndim != 1 or m.size == 0 or m[0] != 1.0 or np.any((m < 0) | (m > 1)):
        raise ValueError(f'momenta must be 1-D in [0, 1] with momenta[0] == 1, got {m[:5]}...')
    keep = np.append(np.cumprod((1.0 - m[1:])[::-1])[::-1], 1.0)  # prod_{j > s} (1 - m_j)
    return m * keep


def span_momentum(window: int) -> float:
    """``ExponentialMovingAverage`` momentum of an EMA with the mean age of a uniform
    average over ``window`` iterates: ``2 / (window + 1)``.

    Examples:
        >>> span_momentum(451)
        0.004424778761061947
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f'window must be an int >= 1, got {window!r}')
    return 2.0 / (window + 1)


def averaging_summary(momenta: np.ndarray, fraction: float = 0.2) -> dict[str, float]:
    """How much an averaged model averages.

    Returns:
        dict: ``newest`` (the last iterate's weight), ``last_fraction`` (the weight of the
        last ``fraction`` of the iterates), ``mean_age`` (iterations, weighted by ``w``),
        ``effective_iterates`` (``1 / sum w^2``: a uniform average over this many iterates
        would be as concentrated).

    Examples:
        >>> s = averaging_summary(np.array([1.0, 0.5, 1 / 3, 0.25]), 0.5)
        >>> s['newest'], s['last_fraction'], s['mean_age'], s['effective_iterates']
        (0.25, 0.5, 1.5, 4.0)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f'fraction must lie in (0, 1], got {fraction!r}')
    w = iterate_weights(momenta)
    n = w.size
    k = max(1, round(fraction * n))
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return dict(
        newest=float(w[-1]),
        last_fraction=float(w[n - k :].sum()),
        mean_age=float((w * age).sum()),
        effective_iterates=float(1.0 / (w * w).sum()),
    )


#: ``tools/benchmark_medmnist.py --ema``: the config's own EMA (the pilot), an EMA whose span
#: is a share of the iterations, or the uniform mean of that share's iterates.
EMA_MODES = ('config', 'ema', 'swa')
#: EMAHook arguments :func:`ema_setup` can carry over to another averaged model.
_EMA_KEPT = {'type', 'ema_type', 'momentum', 'update_buffers', 'priority', 'strict_load'}


def ema_setup(
    custom_hooks: Sequence[Mapping] | None, num_iters: int, mode: str, window: float
) -> tuple[list[str], dict]:
    """The ``--cfg-options`` that make a config's ``EMAHook`` average as ``mode`` says, and
    the hook as it then runs (for :func:`ema_momenta`).

    ``'config'``: unchanged. ``'ema'``: mmengine's ``ExponentialMovingAverage`` with
    momentum ``2 / (W + 1)`` (:func:`span_momentum`): the EMA with the mean age of a uniform
    average over the last ``W = round(window x num_iters)`` iterations. ``'swa'``: the
    uniform mean of the last ``W`` iterates: mmengine's ``MomentumAnnealingEMA`` with
    ``gamma = 1`` (momentum ``1 / (1 + steps)``; its floor ``1 / (W + 1)`` never binds) from
    ``begin_iter = num_iters - W + 1``.

    Args:
        custom_hooks (Sequence[Mapping] | None): the config's ``custom_hooks``.
        num_iters (int): training iterations of the run.
        mode (str): one of :data:`EMA_MODES`.
        window (float): the share of the iterations averaged, in (0, 1].

    Returns:
        tuple[list[str], dict]: the options (``custom_hooks.<i>.<key>=<value>``) and the
        hook's arguments after them.

    Raises:
        ValueError: unknown mode, a window outside (0, 1], not exactly one ``EMAHook`` in
            ``custom_hooks``, or a hook argument the other averaged model would not take
            (``--cfg-options`` can set keys, not remove them).

    Examples:
        >>> hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=1e-4)]
        >>> ema_setup(hooks, 100, 'swa', 0.2)[0]
        ['custom_hooks.0.ema_type=MomentumAnnealingEMA', 'custom_hooks.0.gamma=1', \
'custom_hooks.0.momentum=0.047619047619047616', 'custom_hooks.0.begin_iter=81']
    """
    if mode not in EMA_MODES:
        raise ValueError(f'EMA mode {mode!r} unknown; one of {EMA_MODES}')
    hooks = list(custom_hooks or [])
    found = [i for i, h in enumerate(hooks) if h.get('type') == 'EMAHook']
    if len(found) != 1:
        raise ValueError(
            f'custom_hooks has {len(found)} EMAHook(s), need exactly one: '
            f'{[dict(h) for h in hooks]}'
        )
    i, hook = found[0], dict(hooks[found[0]])
    if mode == 'config':
        return [], hook
    if not 0 < window <= 1:
        raise ValueError(f'EMA window must lie in (0, 1] of the iterations, got {window!r}')
    extra = sorted(set(hook) - _EMA_KEPT)
    if extra:
        raise ValueError(
            f'custom_hooks.{i} (EMAHook) has {extra}, which --ema {mode} cannot remove'
        )
    w = max(1, round(window * num_iters))
    if mode == 'ema':
        new: dict[str, Any] = dict(ema_type='ExponentialMovingAverage', momentum=span_momentum(w))
    else:
        new = dict(ema_type='MomentumAnnealingEMA', gamma=1, momentum=1.0 / (w + 1))
        new['begin_iter'] = num_iters - w + 1
    opts = [f'custom_hooks.{i}.{k}={v}' for k, v in new.items()]
    return opts, dict(hook, **new)


def ema_record(
    custom_hooks: Sequence[Mapping] | None, num_iters: int, mode: str, window: float
) -> dict:
    """What a run's ``result.json`` records of the averaged weights it tests: the mode, the
    hook's arguments and :func:`averaging_summary` over the last ``window`` of the
    iterations (e.g. ``newest``: 0.32 for the configs' EMA over 2,256 iterations)."""
    _, hook = ema_setup(custom_hooks, num_iters, mode, window)
    summary = averaging_summary(ema_momenta(hook, num_iters), window)
    hook = {k: v for k, v in hook.items() if k not in ('type', 'priority')}
    return dict(mode=mode, window=window, iterations=num_iters, hook=hook, **summary)
