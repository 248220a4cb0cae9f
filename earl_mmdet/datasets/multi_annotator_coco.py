"""Moved to :mod:`earl_mmdet.datasets.multi_rater_coco` (docs/migration.md).

This old path is removed in 0.3."""

from earl_mmdet._moved import alias

alias(__name__, 'earl_mmdet.datasets.multi_rater_coco')
