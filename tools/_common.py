"""What the tools import: :mod:`earl_mmdet.utils.cli` and core modules, loaded cheaply.

``import earl_mmdet`` imports torch and mmdet to register the adapters (~8 s of CPU,
measured). A tool that generates data or checks its arguments needs none of that, so the
modules it uses are loaded here without running ``earl_mmdet/__init__.py``: the package is
located (``find_spec`` does not execute it) and the module's file loaded under a private
stand-in package. Once ``earl_mmdet`` is imported the real modules are used.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os.path as osp
import sys


def import_light(name: str):
    """``earl_mmdet.<name>`` (``'core.medmnist'``, ``'utils.cli'``) without the package's
    ``__init__``.

    The stand-in package (``_earl_mmdet_core``, ...) keeps relative imports between the
    modules of one subpackage working (``from .vindr import ...``); pickles never name it
    because the tools write JSON and images only.
    """
    if 'earl_mmdet' in sys.modules:
        return importlib.import_module(f'earl_mmdet.{name}')
    spec = importlib.util.find_spec('earl_mmdet')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('error: earl_mmdet not found; install it: pip install -e . (make install)')
    subpackage, _, module = name.rpartition('.')
    pkg_name = f'_earl_mmdet_{subpackage}'
    if pkg_name not in sys.modules:
        pkg = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec(pkg_name, None, is_package=True)
        )
        pkg.__path__ = [osp.join(spec.submodule_search_locations[0], subpackage)]
        sys.modules[pkg_name] = pkg
    return importlib.import_module(f'{pkg_name}.{module}')


def import_core(name: str):
    """``earl_mmdet.core.<name>``, see :func:`import_light`."""
    return import_light(f'core.{name}')


_cli = import_light('utils.cli')


def __getattr__(name: str):
    """``from _common import load_config`` etc.: the names of :mod:`earl_mmdet.utils.cli`."""
    try:
        return getattr(_cli, name)
    except AttributeError:
        raise AttributeError(f'tools/_common.py: no {name!r} in earl_mmdet.utils.cli') from None
