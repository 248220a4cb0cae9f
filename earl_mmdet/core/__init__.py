"""Deprecated: the framework-free modules that lived here are the package :mod:`earl_core`
since 0.2 (docs/migration.md maps every path). ``earl_mmdet.core.<module>`` still imports,
with a ``FutureWarning``, until 0.3."""
