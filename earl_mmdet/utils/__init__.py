"""earl_mmdet.utils."""
