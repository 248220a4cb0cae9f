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

#: Name of the stand-in of ``earl_mmdet`` (see :func:`import_light`).
_STAND_IN = '_earl_mmdet'


def import_light(name: str):
    """``earl_mmdet.<name>`` (``'core.medmnist'``, ``'utils.cli'``) without the package's
    ``__init__``.

    The stand-in package ``_earl_mmdet`` mirrors the package's folders (its subpackages
    ``_earl_mmdet.core``, ... are stand-ins too), so relative imports keep working, within
    a subpackage (``from .vindr import ...``) and across (``from ..core import ...``);
    pickles never name it because the tools write JSON and images only.
    """
    if 'earl_mmdet' in sys.modules:
        return importlib.import_module(f'earl_mmdet.{name}')
    spec = importlib.util.find_spec('earl_mmdet')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('error: earl_mmdet not found; install it: pip install -e . (make install)')
    root = spec.submodule_search_locations[0]
    parts = name.split('.')[:-1]
    for depth in range(len(parts) + 1):
        pkg_name = '.'.join([_STAND_IN, *parts[:depth]])
        if pkg_name in sys.modules:
            continue
        pkg = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec(pkg_name, None, is_package=True)
        )
        pkg.__path__ = [osp.join(root, *parts[:depth])]
        sys.modules[pkg_name] = pkg
        if depth:
            setattr(sys.modules[pkg_name.rpartition('.')[0]], parts[depth - 1], pkg)
    return importlib.import_module(f'{_STAND_IN}.{name}')


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
