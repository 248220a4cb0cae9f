from __future__ import annotations

import io
import random

import numpy as np
import torch

from earl_mmdet.engine.random_state import get_rng_state, set_rng_state


def _draw():
    return (
        random.random(),
        float(np.random.rand()),
        float(np.random.randn()),
        torch.rand(2).tolist(),
    )


def test_round_trip_through_weights_only_checkpoint():
    np.random.randn()  # leaves a cached gaussian: has_gauss = 1 must survive too
    state = get_rng_state()
    expected = _draw()
    buf = io.BytesIO()
    torch.save(dict(rng_state=state), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)['rng_state']
    _draw()  # move every generator on
    set_rng_state(loaded)
    assert _draw() == expected


def test_python_state_as_lists_is_accepted():
    # A serializer may turn the tuples of random.getstate() into lists.
    state = get_rng_state(cuda=False)
    version, internal, gauss = state['python']
    state['python'] = [version, list(internal), gauss]
    expected = _draw()
    set_rng_state(state)
    assert _draw() == expected
