import sys

import pytest
import torch

from earl_mmdet.utils import mmcv_compat


@pytest.fixture
def restore_nms():
    module = sys.modules['mmcv.ops.nms']
    original = module.nms
    yield module
    module.nms = original


def test_not_applied_without_cuda(restore_nms):
    if torch.cuda.is_available():
        pytest.skip('CUDA machine')
    assert mmcv_compat.patch_nms_for_cpu_only_mmcv() is False
    assert not getattr(restore_nms.nms, mmcv_compat._PATCHED, False)


def test_forced_wrapper_keeps_cpu_results_and_batched_nms(restore_nms):
    from mmcv.ops import batched_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 30], 1)
    scores = torch.rand(50, generator=g)
    labels = torch.randint(0, 3, (50,), generator=g)
    cfg = dict(type='nms', iou_threshold=0.5)
    ref_dets, ref_keep = batched_nms(boxes, scores, labels, cfg)

    assert mmcv_compat.patch_nms_for_cpu_only_mmcv(force=True) is True
    assert getattr(restore_nms.nms, mmcv_compat._PATCHED)
    assert mmcv_compat.patch_nms_for_cpu_only_mmcv(force=True) is True  # idempotent
    dets, keep = batched_nms(boxes, scores, labels, cfg)  # goes through the wrapper
    assert torch.equal(keep, ref_keep) and torch.allclose(dets, ref_dets)
    # The wrapper moves a non-CPU tensor to the CPU kernel and back: simulate with 'meta'
    # being unavailable here, so check the CPU branch only; the device branch is exercised
    # by tools/benchmark_medmnist.py --device cuda on a GPU machine.
