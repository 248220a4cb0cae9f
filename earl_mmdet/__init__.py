"""earl-mmdet: learn detectors from several annotators' boxes (MMDetection 3 plugin).

Importing this package registers every component (datasets, transforms, heads, metrics,
hooks) into mmdet's registries, so a config needs only::

    custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)

Registering is its only side effect. The safe checkpoint loaders
(:mod:`earl_mmdet.engine.checkpoint`) and the NMS fallback for a CPU-only mmcv build
(:func:`earl_mmdet.utils.patch_nms_for_cpu_only_mmcv`) are applied by the project's tools
(``tools/train.py``, ``tools/test.py``) and, for the loaders, by ``TrustOwnCheckpointsHook``.

The framework-free half (structures, fusion, EM models, metrics maths, simulators) is the
package :mod:`earl_core`, which imports neither torch nor mmdet.
"""

from __future__ import annotations

from .version import __version__

__all__ = ['__version__']

try:  # the mmdet adapters are optional: the core works on its own
    import mmdet  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without mmdet
    _HAS_MMDET = False
else:
    _HAS_MMDET = True

if _HAS_MMDET:
    from . import datasets, engine, evaluation, models  # noqa: F401  (registration)
