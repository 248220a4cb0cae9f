"""Dataset tests build pipelines from config dicts: mmdet's registry scope must be current."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope='session')
def _mmdet_scope():
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    yield
