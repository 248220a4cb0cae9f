"""Fusion: the raters' boxes of an image into fused boxes with agreement T and confidence c."""
