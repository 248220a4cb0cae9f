"""Moved to :mod:`earl_core.metrics.report` (docs/migration.md).

This old path is removed in 0.3."""

from earl_mmdet._moved import alias

alias(__name__, 'earl_core.metrics.report')
