"""Old import paths of modules that moved (0.2): each old module is the new one."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new``, with a ``FutureWarning``.

    Called from the old module's file while it is imported: ``sys.modules[old]`` is replaced
    by the new module, so ``import old``, ``from old import name`` (private names too) and
    ``monkeypatch.setattr('old.name', ...)`` all reach the one module object that the
    package itself uses.
    """
    warnings.warn(
        f'{old} moved to {new} in earl-mmdet 0.2; the old path is removed in 0.3 '
        '(docs/migration.md)',
        FutureWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
