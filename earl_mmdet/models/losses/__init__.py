"""earl_mmdet.models.losses."""
