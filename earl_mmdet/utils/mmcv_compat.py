"""Run mmcv's NMS on CPU copies when mmcv was built without CUDA ops but CUDA is used.

mmcv 2.x has no binary wheels on PyPI for recent torch: built from the sdist on a machine
whose build saw no GPU, ``mmcv.ops`` holds CPU kernels only, and the first NMS on a CUDA
tensor (mmdet's ``batched_nms`` in every ``predict``) fails with "nms is not implemented on
CUDA". Training YOLOX / RetinaNet's forward and losses need no mmcv op, so moving the NMS
input to the CPU and the result back is the only change needed to train and test on a GPU
with such a build. The CPU kernel is the same greedy NMS, so results match a CPU run.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

_PATCHED = '_earl_cpu_nms_fallback'


def patch_nms_for_cpu_only_mmcv(force: bool = False) -> bool:
    """Wrap ``mmcv.ops.nms.nms`` so CUDA inputs run the CPU kernel (idempotent).

    Applied only when CUDA is available and mmcv's ops were compiled without CUDA
    (``get_compiling_cuda_version() == 'not available'``), unless ``force``.

    Returns:
        bool: True when the wrapper is (now) installed.
    """
    try:
        import torch
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:  # mmcv without ops: nothing to patch
        return False
    nms_module = sys.modules.get('mmcv.ops.nms')
    if nms_module is None:
        return False
    if getattr(nms_module.nms, _PATCHED, False):
        return True
    if not force and not (
        torch.cuda.is_available() and get_compiling_cuda_version() == 'not available'
    ):
        return False
    original = nms_module.nms

    def nms(boxes: Any, scores: Any, iou_threshold: float, *args: Any, **kwargs: Any):
        if isinstance(boxes, torch.Tensor) and boxes.device.type != 'cpu':
            device = boxes.device
            dets, inds = original(
                boxes.detach().cpu(), scores.detach().cpu(), iou_threshold, *args, **kwargs
            )
            return dets.to(device), inds.to(device)
        return original(boxes, scores, iou_threshold, *args, **kwargs)

    setattr(nms, _PATCHED, True)
    nms.__doc__ = original.__doc__
    nms_module.nms = nms  # batched_nms looks 'nms' up in this module at call time
    warnings.warn(
        'earl_mmdet: mmcv ops were built without CUDA; NMS runs on CPU copies of the boxes',
        stacklevel=2,
    )
    return True
