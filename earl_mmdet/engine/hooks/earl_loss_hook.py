"""Hook that makes a stock detector's heads EARL-weighted before training starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from earl_mmdet.models.earl_weights import EARLConfig

from ...models.earl_convert import check_earl_head_attrs, make_earl_detector


@HOOKS.register_module()
class EARLLossHook(Hook):
    """EARL loss weighting for an unchanged mmdet model config.

    ``custom_hooks = [dict(type='EARLLossHook', earl_cfg=dict(...))]`` turns, in
    ``before_train``, the model's supported heads into their EARL form with
    :func:`~earl_mmdet.models.make_earl_detector`: a class swap in place to
    :func:`~earl_mmdet.models.earl_convert.earl_head_class` of each head's class, which is
    exactly the class a config can name (``EARLRetinaHead``, ``EARLYOLOXHead``,
    ``EARLRPNHead``, ``EARLStandardRoIHead`` ...). Parameters are untouched, so the
    optimizer built before it is unaffected; prediction is unchanged, and ``runner.val()``
    / ``runner.test()`` never reach ``before_train``. A DDP-wrapped model is converted
    through ``.module``.

    Supported: a dense ``bbox_head`` that is an AnchorHead on AnchorHead's targets path
    (RetinaHead, RPNHead, SSDHead, ...) or a YOLOXHead; a two-stage ``rpn_head`` (RPNHead)
    and ``roi_head`` (StandardRoIHead / CascadeRoIHead with BBoxHead-based bbox heads).
    By default every one of these the detector has is converted, with the same options;
    ``heads`` restricts that (e.g. ``heads=('roi_head',)``). An unsupported head fails the
    run before its first iteration, naming the head; a head already EARL with the same
    options is left as it is, with different options it is an error.

    The loss policy comes with the options (``earl_cfg=dict(policy='soft')`` or
    ``'ignore'``, see ``docs/earl_heads.md``); a head that does not implement it (the RoI
    heads: ``'earl'`` only) fails the run the same way, naming the head and the policy, and
    ``heads=('rpn_head',)`` applies it to the RPN alone.

    Args:
        earl_cfg (dict, optional): the EARL options of the heads (see
            :class:`earl_mmdet.models.earl_weights.EARLConfig`), validated when the hook is
            built; every converted head gets them (``policy`` included). Defaults to None
            (the paper's settings).
        heads (Sequence[str], optional): detector attributes to convert, a subset of
            ``('bbox_head', 'rpn_head', 'roi_head')``. Defaults to None (all present).
    """

    priority = 'VERY_HIGH'

    def __init__(self, earl_cfg: Mapping | None = None, heads: Sequence[str] | None = None) -> None:
        self.earl_cfg = EARLConfig.from_dict(earl_cfg)
        try:
            self.heads = check_earl_head_attrs(heads)
        except (TypeError, ValueError) as err:
            raise type(err)(f'EARLLossHook: {err}') from err
        self.converted: list[str] = []

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            self.converted = make_earl_detector(model, self.earl_cfg, self.heads)
        except (TypeError, ValueError) as err:
            raise type(err)(f'EARLLossHook: {err}') from err
        runner.logger.info(
            f'EARLLossHook: EARL loss weighting on model.{", model.".join(self.converted)} '
            f'with {self.earl_cfg.to_dict()}'
        )
