"""``EARLCascadeRoIHead``: Cascade R-CNN's RoI head with EARL (confidence-weighted) losses."""

from __future__ import annotations

from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS

from ..earl_convert import register_earl_variant
from .earl_roi_mixin import EARLRoIHeadMixin

__all__ = ['EARLCascadeRoIHead']


@MODELS.register_module()
@register_earl_variant(CascadeRoIHead)
class EARLCascadeRoIHead(EARLRoIHeadMixin, CascadeRoIHead):
    """CascadeRoIHead whose positive RoIs' losses, at every stage, are weighted by c.

    Each stage assigns its own (refined) RoIs with its own IoU threshold (0.5 / 0.6 / 0.7
    in mmdet's Cascade R-CNN), so ``I(t)`` tightens stage by stage; every stage's bbox
    head becomes its EARL form with the same ``earl_cfg`` and weights its positives by the
    confidence of the gt they are assigned to. ``stage_loss_weights`` apply on top.

    Args:
        earl_cfg (dict, optional): EARL options, see
            :class:`earl_mmdet.models.earl_weights.EARLConfig` (terms ``cls``/``bbox``;
            policies ``'earl'``, ``'ignore'``). Defaults to None (the paper's settings).
        *args, **kwargs: arguments of :class:`mmdet.models.roi_heads.CascadeRoIHead`.
    """
