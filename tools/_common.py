"""What the tools import: the helpers of :mod:`earl_core.cli`, and the Runner helpers of
:mod:`earl_mmdet.utils.cli` on first use.

``earl_core`` imports neither torch nor mmdet, so a tool that generates data, fuses boxes
or checks its arguments starts in well under a second. The Runner helpers
(``load_config``, ``build_runner``, ``add_runner_args``, ``prepare_runtime``) import
``earl_mmdet``, which registers the mmdet components (several seconds of CPU); they are
loaded only when a tool first asks for one of them.
"""

from __future__ import annotations

import importlib

from earl_core.cli import *  # noqa: F403  (the tools' shared helpers)

#: Names served by :mod:`earl_mmdet.utils.cli` (imported on first use).
RUNTIME_NAMES = frozenset(
    {'prepare_runtime', 'load_config', 'CfgOptionsAction', 'add_runner_args', 'build_runner'}
)


def __getattr__(name: str):
    """``from _common import load_config``: the Runner helpers, imported when first used."""
    if name in RUNTIME_NAMES:
        return getattr(importlib.import_module('earl_mmdet.utils.cli'), name)
    raise AttributeError(f'tools/_common.py: no {name!r} in earl_core.cli or earl_mmdet.utils.cli')
