"""Small environment helpers."""

from .mmcv_compat import patch_nms_for_cpu_only_mmcv

__all__ = ['patch_nms_for_cpu_only_mmcv']
