"""Make a built detector's heads EARL-weighted (what ``EARLLossHook`` does before training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..core.earl_weights import EARLConfig
from .dense_heads.earl_mixin import check_earl_head, make_earl_head

__all__ = ['EARL_HEAD_ATTRS', 'make_earl_detector']

#: detector attributes that hold a head EARL can weight: one-stage detectors' dense head,
#: two-stage detectors' RPN and RoI head (whose bbox head(s) are converted with it)
EARL_HEAD_ATTRS = ('bbox_head', 'rpn_head', 'roi_head')


def make_earl_detector(
    model: nn.Module,
    earl_cfg: Mapping | EARLConfig | None = None,
    heads: Sequence[str] | None = None,
) -> list[str]:
    """Turn a detector's heads into their EARL form in place, with :func:`make_earl_head`.

    All heads are checked before any is converted, so a refusal leaves the model as it
    was. Parameters are untouched (an optimizer built on them is unaffected) and
    prediction is unchanged.

    Args:
        model (nn.Module): an mmdet detector (not a DDP wrapper: pass ``.module``).
        earl_cfg (dict | EARLConfig | None): options (see :class:`EARLConfig`), the same
            for every head. Defaults to None (the paper's settings).
        heads (Sequence[str] | None): attributes of ``model`` to convert, a subset of
            :data:`EARL_HEAD_ATTRS`. None converts every one the model has (RetinaNet /
            YOLOX: ``bbox_head``; Faster / Cascade R-CNN: ``rpn_head`` and ``roi_head``).

    Returns:
        list[str]: the attributes converted (or already EARL with the same options).

    Raises:
        TypeError: if the model has none of those heads, or a head (or an RoI head's bbox
            head) is not supported, naming the attribute and the head class.
        ValueError: for bad options, an unknown or missing attribute in ``heads``, or a
            head already EARL with different options.
    """
    cfg = EARLConfig.from_dict(earl_cfg)
    present = [a for a in EARL_HEAD_ATTRS if getattr(model, a, None) is not None]
    if heads is None:
        names = present
        if not names:
            raise TypeError(
                f'EARL found no head on {type(model).__name__}: it has none of '
                f'{EARL_HEAD_ATTRS} (see docs/earl_heads.md)'
            )
    else:
        names = list(heads)
        unknown = [a for a in names if a not in EARL_HEAD_ATTRS]
        if unknown:
            raise ValueError(f'heads {unknown} not understood; allowed: {EARL_HEAD_ATTRS}')
        missing = [a for a in names if a not in present]
        if missing:
            raise ValueError(f'{type(model).__name__} has no {missing}; it has {present}')
    for name in names:
        head = getattr(model, name)
        try:
            check_earl_head(head, cfg)
        except (TypeError, ValueError) as err:
            raise type(err)(f'model.{name} ({type(head).__name__}): {err}') from err
    for name in names:
        make_earl_head(getattr(model, name), cfg)
    return names
