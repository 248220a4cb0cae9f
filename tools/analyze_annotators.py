"""Deprecated name of ``tools/analyze_raters.py`` (until 0.3; ``docs/migration.md``).

``python tools/analyze_annotators.py ARGS`` runs ``tools/analyze_raters.py ARGS`` after a
``FutureWarning``; importing this file gives the new module's names.
"""

from __future__ import annotations

import sys

from analyze_raters import *  # noqa: F403  (the old module's names)
from analyze_raters import main

from earl_core.deprecation import warn_renamed

warn_renamed('tools/analyze_annotators.py', 'tools/analyze_raters.py', stacklevel=2)

if __name__ == '__main__':
    sys.exit(main())
