"""The state of a process's global random generators, as checkpoint-safe values.

A training step draws from Python's ``random``, numpy's legacy global generator and torch's
default generators (CPU, and the current CUDA device). :func:`get_rng_state` captures all
of them as tensors, ints, floats and tuples only, so a checkpoint holding them still loads
with ``torch.load(weights_only=True)``; :func:`set_rng_state` puts them back.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def get_rng_state(cuda: bool = True) -> dict:
    """Capture the global random generators of this process.

    Args:
        cuda (bool): also capture the current CUDA device's generator when CUDA is
            available. Defaults to True.

    Returns:
        dict: ``python`` (``random.getstate()``, a tuple), ``numpy`` (dict: ``key``
        int64 tensor (624,), ``pos``, ``has_gauss``, ``cached_gaussian``), ``torch``
        (uint8 tensor) and, with CUDA, ``cuda`` (uint8 tensor).

    Examples:
        >>> state = get_rng_state(cuda=False)
        >>> a = (random.random(), np.random.rand(), torch.rand(1).item())
        >>> set_rng_state(state)
        >>> a == (random.random(), np.random.rand(), torch.rand(1).item())
        True
    """
    name, key, pos, has_gauss, cached = np.random.get_state()
    if name != 'MT19937':
        raise ValueError(f'numpy global generator {name!r} unsupported; expected MT19937')
    state = dict(
        python=random.getstate(),
        numpy=dict(
            key=torch.from_numpy(key.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached),
        ),
        torch=torch.get_rng_state(),
    )
    if cuda and torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` captured (``cuda`` only where CUDA is available).

    Args:
        state (dict): a value returned by :func:`get_rng_state`.
    """
    random.setstate(_to_tuples(state['python']))
    np_state = state['numpy']
    np.random.set_state(
        (
            'MT19937',
            np_state['key'].numpy().astype(np.uint32),
            np_state['pos'],
            np_state['has_gauss'],
            np_state['cached_gaussian'],
        )
    )
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def _to_tuples(value):
    # random.setstate needs tuples; a state that went through a serializer may hold lists.
    if isinstance(value, list | tuple):
        return tuple(_to_tuples(v) for v in value)
    return value
