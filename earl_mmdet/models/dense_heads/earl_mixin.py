"""The EARL mechanism: make an mmdet dense head weight its losses by box confidence.

EARL (Pham et al., eq. (2)) is ``L = c * Lcls + c * beta * I(t) * Lloc``: every prior that
the assigner makes a positive for a ground-truth box has its classification and
localisation losses multiplied by that box's confidence ``c``. In mmdet the mapping is:

* ``I(t)`` - the head's assigner's positives (RetinaNet: ``MaxIoUAssigner`` with
  ``pos_iou_thr`` = eta; YOLOX: SimOTA's dynamic-k positives);
* ``beta`` - the ``loss_weight`` of the head's ``loss_bbox`` (and ``loss_l1`` for YOLOX);
* ``c`` - ``data_sample.gt_instances.confidences`` (float (N,)), turned into a weight by
  :func:`earl_mmdet.core.earl_weights.confidence_to_weight`; absent -> every box weighs 1.

Negatives (background priors) are assigned to no box, so they keep weight 1.

Two mixins do the work, both calling ``super()`` and adjusting its output:

* :class:`EARLAnchorHeadMixin` for :class:`~mmdet.models.dense_heads.AnchorHead`
  subclasses that use AnchorHead's targets path (RetinaHead, RetinaSepBNHead, RPNHead,
  SSDHead): it rescales the positives' ``label_weights`` / ``bbox_weights``.
* :class:`EARLYOLOXHeadMixin` for :class:`~mmdet.models.dense_heads.YOLOXHead`, whose
  losses take no weights: it hands each weighted loss module its per-prior weights.

:func:`make_earl_head` converts an existing head *instance* (what ``EARLLossHook`` does
before training) through exactly the same classes; :func:`earl_head_class` gives the class,
choosing the mixin by head family (``_EARL_MIXINS``; the RoI-head mixins of
``earl_mmdet.models.roi_heads`` register theirs with :func:`register_earl_mixin`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from mmdet.models.dense_heads import AnchorHead, RPNHead, SSDHead, YOLOXHead
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.utils import reduce_mean
from torch import Tensor, nn

from ...core.earl_weights import EARLConfig, gt_weights, inside_to_full_index
from ...core.earl_weights import weight_sum_normalizer as _weight_sum_normalizer

__all__ = [
    'EARLAnchorHeadMixin',
    'EARLYOLOXHeadMixin',
    'check_earl_head',
    'check_earl_support',
    'earl_head_class',
    'is_earl_head',
    'make_earl_head',
    'register_earl_mixin',
    'register_earl_variant',
]

_DOCS = 'docs/earl_heads.md'


class _EARLMixinBase:
    """State and helpers shared by the EARL mixins (not usable on its own)."""

    #: Loss terms this family of heads has (subset of ``EARL_TERMS``).
    _earl_allowed_terms: tuple[str, ...] = ()
    #: ``{method name: allowed implementations of the parent}``, checked before use.
    _earl_required: dict[str, tuple[Any, ...]] = {}

    earl_cfg: EARLConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, nn.Module):  # a concrete head class: refuse it at definition
            check_earl_support(cls)

    def __init__(self, *args: Any, earl_cfg: Mapping | EARLConfig | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._earl_setup(earl_cfg)

    def _earl_setup(self, earl_cfg: Mapping | EARLConfig | None) -> None:
        """Validate the options for this head; called by ``__init__`` and make_earl_head."""
        cfg = EARLConfig.from_dict(earl_cfg)
        self._earl_check_terms(cfg)
        self.earl_cfg = cfg

    @classmethod
    def _earl_check_terms(cls, cfg: EARLConfig) -> None:
        extra = [t for t in cfg.terms if t not in cls._earl_allowed_terms]
        if extra:
            raise ValueError(
                f'earl_cfg.terms {extra} do not exist in {_base_name(cls)}; '
                f'its weighted terms can be {cls._earl_allowed_terms}'
            )

    @classmethod
    def _earl_check_instance(cls, head: nn.Module, cfg: EARLConfig) -> None:
        """Raise before ``head`` (not yet of class ``cls``) is converted with ``cfg``.

        A head made of sub-heads (the RoI heads) also checks its parts here, so that a
        refusal leaves every module untouched.
        """
        cls._earl_check_terms(cfg)

    def _earl_gt_weights(self, gt_instances: Any) -> Tensor | None:
        """(N,) weights of one image's gt boxes, or None if they carry no confidence."""
        if 'confidences' not in gt_instances:
            return None
        conf = gt_instances.confidences
        if not isinstance(conf, Tensor):
            raise TypeError(
                f'gt_instances.confidences must be a torch.Tensor, got {type(conf).__name__}'
            )
        return gt_weights(conf.to(gt_instances.bboxes.device), len(gt_instances), self.earl_cfg)


class EARLAnchorHeadMixin(_EARLMixinBase):
    """EARL for :class:`AnchorHead` subclasses on AnchorHead's standard targets path.

    Put it before the head class: ``class EARLSSDHead(EARLAnchorHeadMixin, SSDHead)``,
    then construct with the head's arguments plus ``earl_cfg=dict(...)``.

    :meth:`_get_targets_single` calls AnchorHead's and multiplies the
    ``label_weights`` (term ``cls``) and ``bbox_weights`` (term ``bbox``) of each positive
    anchor by the weight of the gt box it is assigned to. The sampling result's
    ``pos_inds`` index the anchors *inside* the image (``train_cfg.allowed_border``), so
    they are mapped through the inside flags onto the unmapped outputs. With
    ``normalize='weight_sum'``, :meth:`get_targets` replaces each positive's count of 1
    in ``avg_factor`` by its weight.
    """

    _earl_allowed_terms = ('cls', 'bbox')
    _earl_required = {
        '_get_targets_single': (AnchorHead._get_targets_single,),
        'get_targets': (AnchorHead.get_targets,),
        # loss_by_feat implementations known to feed label/bbox weights and avg_factor
        # from get_targets() unchanged into their losses
        'loss_by_feat': (AnchorHead.loss_by_feat, RPNHead.loss_by_feat, SSDHead.loss_by_feat),
        'loss_by_feat_single': (AnchorHead.loss_by_feat_single, SSDHead.loss_by_feat_single),
    }

    _earl_pos_stats: list[tuple[int, float]] | None = None

    def _get_targets_single(
        self,
        flat_anchors: Tensor,
        valid_flags: Tensor,
        gt_instances: Any,
        img_meta: dict,
        gt_instances_ignore: Any = None,
        unmap_outputs: bool = True,
    ) -> tuple:
        """AnchorHead's targets of one image, positives' weights scaled by their gt's weight.

        Args and returns as :meth:`AnchorHead._get_targets_single`.
        """
        results = super()._get_targets_single(
            flat_anchors, valid_flags, gt_instances, img_meta, gt_instances_ignore, unmap_outputs
        )
        labels, label_weights, bbox_targets, bbox_weights, pos_inds = results[:5]
        sampling_result = results[6]
        num_pos = int(pos_inds.numel())
        weights = self._earl_gt_weights(gt_instances)
        if weights is None or num_pos == 0:
            self._earl_note_positives(num_pos, None)
            return results
        pos_weights = weights[sampling_result.pos_assigned_gt_inds]
        if unmap_outputs:
            # pos_inds index anchors[inside_flags]; the outputs were unmapped to all anchors
            inside_flags = anchor_inside_flags(
                flat_anchors,
                valid_flags,
                img_meta['img_shape'][:2],
                self.train_cfg['allowed_border'],
            )
            rows = inside_to_full_index(inside_flags, pos_inds)
        else:
            rows = pos_inds
        if 'cls' in self.earl_cfg.terms:
            label_weights = label_weights.clone()
            label_weights[rows] *= pos_weights.to(label_weights.dtype)
        if 'bbox' in self.earl_cfg.terms:
            bbox_weights = bbox_weights.clone()
            bbox_weights[rows] *= pos_weights.to(bbox_weights.dtype)[:, None]
        self._earl_note_positives(num_pos, pos_weights)
        return (labels, label_weights, bbox_targets, bbox_weights) + tuple(results[4:])

    def _earl_note_positives(self, num_pos: int, pos_weights: Tensor | None) -> None:
        """Record one image's positives for ``weight_sum`` (None: each weighs 1)."""
        if self._earl_pos_stats is not None:  # only while get_targets() collects them
            weight_sum = float(num_pos) if pos_weights is None else float(pos_weights.sum())
            self._earl_pos_stats.append((num_pos, weight_sum))

    def get_targets(
        self,
        anchor_list: list,
        valid_flag_list: list,
        batch_gt_instances: list,
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list | None = None,
        unmap_outputs: bool = True,
        return_sampling_results: bool = False,
    ) -> tuple:
        """AnchorHead's targets; with ``weight_sum``, avg_factor counts positives by weight."""
        collect = self.earl_cfg.normalize == 'weight_sum'
        self._earl_pos_stats = [] if collect else None
        try:
            res = super().get_targets(
                anchor_list,
                valid_flag_list,
                batch_gt_instances,
                batch_img_metas,
                batch_gt_instances_ignore=batch_gt_instances_ignore,
                unmap_outputs=unmap_outputs,
                return_sampling_results=return_sampling_results,
            )
            stats = self._earl_pos_stats
        finally:
            self._earl_pos_stats = None
        if not collect:
            return res
        avg_factor = _weight_sum_normalizer(
            res[4], sum(s[0] for s in stats), sum(s[1] for s in stats)
        )
        return res[:4] + (avg_factor,) + res[5:]


class _RecordingSampler:
    """Wraps a head's sampler and keeps its last sampling result.

    YOLOXHead's ``_get_targets_single`` returns a foreground mask but not which gt each
    positive was assigned to; the sampling result it computes has that
    (``pos_assigned_gt_inds``). Recording it lets the EARL override call ``super()``
    instead of re-implementing the assignment.
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.last: Any = None

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        self.last = self.sampler.sample(*args, **kwargs)
        return self.last


class EARLYOLOXHeadMixin(_EARLMixinBase):
    """EARL for :class:`YOLOXHead` (and subclasses keeping its loss code).

    YOLOXHead calls ``loss_cls`` / ``loss_bbox`` / ``loss_l1`` on the positives and
    ``loss_obj`` on all priors, with ``reduction='sum'`` and no ``weight=``, then divides
    by the number of positives. :meth:`_get_targets_single` calls YOLOXHead's and records
    each prior's weight (1 for negatives, the assigned gt's weight for positives);
    :meth:`loss_by_feat` calls YOLOXHead's with a forward pre-hook on each weighted loss
    module that adds those weights as ``weight=`` (terms: ``cls`` -> loss_cls, ``bbox`` ->
    loss_bbox and loss_l1, ``obj`` -> loss_obj). With ``normalize='weight_sum'`` every
    loss is rescaled from ``/ num_pos`` to ``/ sum of the positives' weights``.
    """

    _earl_allowed_terms = ('cls', 'bbox', 'obj')
    _earl_required = {
        '_get_targets_single': (YOLOXHead._get_targets_single,),
        'loss_by_feat': (YOLOXHead.loss_by_feat,),
    }
    #: loss module attribute -> term
    _earl_loss_terms = (
        ('loss_cls', 'cls'),
        ('loss_bbox', 'bbox'),
        ('loss_l1', 'bbox'),
        ('loss_obj', 'obj'),
    )

    _earl_records: list[tuple[Tensor, Tensor | None]] | None = None

    def _earl_setup(self, earl_cfg: Mapping | EARLConfig | None) -> None:
        super()._earl_setup(earl_cfg)
        sampler = getattr(self, 'sampler', None)  # absent on a test-only head
        if sampler is not None and not isinstance(sampler, _RecordingSampler):
            self.sampler = _RecordingSampler(sampler)

    @torch.no_grad()
    def _get_targets_single(
        self,
        priors: Tensor,
        cls_preds: Tensor,
        decoded_bboxes: Tensor,
        objectness: Tensor,
        gt_instances: Any,
        img_meta: dict,
        gt_instances_ignore: Any = None,
    ) -> tuple:
        """YOLOXHead's targets of one image (unchanged); records the priors' weights."""
        if not isinstance(self.sampler, _RecordingSampler):
            raise RuntimeError(f'{type(self).__name__}.sampler was replaced after EARL set-up')
        self.sampler.last = None
        targets = super()._get_targets_single(
            priors,
            cls_preds,
            decoded_bboxes,
            objectness,
            gt_instances,
            img_meta,
            gt_instances_ignore,
        )
        fg_mask = targets[0]
        weights = self._earl_gt_weights(gt_instances)
        prior_weights = None
        sampling_result = self.sampler.last
        if weights is not None and sampling_result is not None:
            # YOLOXHead sets its foreground mask from exactly these pos_inds
            pos_inds = sampling_result.pos_inds
            prior_weights = fg_mask.new_ones(fg_mask.shape, dtype=weights.dtype)
            prior_weights[pos_inds] = weights[sampling_result.pos_assigned_gt_inds]
        if self._earl_records is not None:
            self._earl_records.append((fg_mask, prior_weights))
        return targets

    def loss_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        objectnesses: list[Tensor],
        batch_gt_instances: list,
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list | None = None,
    ) -> dict:
        """YOLOXHead's losses with each weighted loss module given per-prior weights."""
        self._earl_records = []
        weights_cache: dict[str, Tensor] = {}
        handles = []
        try:
            for attr, term in self._earl_loss_terms:
                if term in self.earl_cfg.terms:
                    hook = functools.partial(
                        self._earl_weight_hook, attr, term != 'obj', weights_cache
                    )
                    module: nn.Module = getattr(self, attr)
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            losses = super().loss_by_feat(
                cls_scores,
                bbox_preds,
                objectnesses,
                batch_gt_instances,
                batch_img_metas,
                batch_gt_instances_ignore,
            )
            records = self._earl_records
        finally:
            for handle in handles:
                handle.remove()
            self._earl_records = None
        if self.earl_cfg.normalize == 'weight_sum':
            losses = self._earl_rescale_to_weight_sum(losses, records)
        return losses

    def _earl_weight_hook(
        self,
        attr: str,
        positives_only: bool,
        cache: dict[str, Tensor],
        module: nn.Module,
        args: tuple,
        kwargs: dict,
    ) -> tuple[tuple, dict]:
        """Forward pre-hook of a loss module: add ``weight=`` for its rows of priors."""
        if 'all' not in cache:
            records = self._earl_records or []
            cache['fg'] = torch.cat([fg for fg, _ in records])
            cache['all'] = torch.cat(
                [fg.new_ones(fg.shape, dtype=torch.float) if w is None else w for fg, w in records]
            )
        weights = cache['all'][cache['fg']] if positives_only else cache['all']
        pred = args[0] if args else kwargs.get('pred')
        if len(args) > 2 or 'weight' in kwargs or pred is None or pred.shape[0] != weights.shape[0]:
            raise RuntimeError(
                f'{type(self).__name__}.{attr} was called in an unexpected way '
                f'({weights.shape[0]} weighted rows expected); EARLYOLOXHeadMixin supports '
                'the YOLOXHead.loss_by_feat of mmdet 3.3'
            )
        weights = weights.to(pred.dtype).view(-1, *([1] * (pred.dim() - 1))).expand_as(pred)
        return args, dict(kwargs, weight=weights)

    def _earl_rescale_to_weight_sum(self, losses: dict, records: list) -> dict:
        """Turn YOLOX's ``/ max(mean num_pos, 1)`` into ``/ max(mean weight sum, 1)``."""
        fg = torch.cat([fg for fg, _ in records])
        num_pos = fg.sum().float()
        weight_sum = sum(
            (fg_i.sum().float() if w is None else w[fg_i].sum().float()) for fg_i, w in records
        )
        count_norm = reduce_mean(num_pos).clamp(min=1.0)
        weight_norm = reduce_mean(torch.as_tensor(weight_sum, device=fg.device)).clamp(min=1.0)
        factor = count_norm / weight_norm
        return {k: v * factor for k, v in losses.items()}


# ----------------------------------------------------------------------------------------
# support check, class lookup and instance conversion

#: base head class -> its EARL class (registered classes first, dynamic ones cached)
_EARL_VARIANTS: dict[type, type] = {}
#: (head family, mixin) pairs tried in order by earl_head_class; the RoI-head mixins add
#: theirs with register_earl_mixin (earl_mmdet.models.roi_heads)
_EARL_MIXINS: list[tuple[type, type]] = [
    (YOLOXHead, EARLYOLOXHeadMixin),
    (AnchorHead, EARLAnchorHeadMixin),
]


def register_earl_mixin(family: type, mixin: type) -> None:
    """Let :func:`earl_head_class` build EARL classes of ``family``'s subclasses with ``mixin``."""
    if (family, mixin) not in _EARL_MIXINS:
        _EARL_MIXINS.append((family, mixin))


def register_earl_variant(base: type):
    """Class decorator: declare ``cls`` as the EARL variant of ``base`` for make_earl_head."""

    def wrap(cls: type) -> type:
        _EARL_VARIANTS[base] = cls
        return cls

    return wrap


def _base_name(cls: type) -> str:
    """Name of the mmdet head class an EARL class wraps (``cls``'s own name otherwise)."""
    mro = cls.__mro__
    if _EARLMixinBase not in mro:
        return cls.__name__
    return mro[mro.index(_EARLMixinBase) + 1].__name__


def _owner(cls: type, name: str, start: int = 0) -> type | None:
    """First class in ``cls.__mro__[start:]`` whose body defines ``name``."""
    for klass in cls.__mro__[start:]:
        if name in vars(klass):
            return klass
    return None


def check_earl_support(cls: type) -> None:
    """Raise TypeError unless ``cls`` (an EARL class) can apply EARL correctly.

    The methods the mixin relies on must be, behind the mixin, the mmdet implementations
    it was verified against (listed in ``_earl_required``); a head that overrides one of
    them computes its targets or losses differently, and weights would land wrongly or
    not at all, so it is refused rather than silently mis-weighted.
    """
    # the mixin that declares what it relies on: the first in the bases that has _earl_required
    mixin = next(
        k
        for k in cls.__mro__
        if issubclass(k, _EARLMixinBase) and k is not _EARLMixinBase and '_earl_required' in vars(k)
    )
    after = cls.__mro__.index(mixin) + 1
    for name, allowed in mixin._earl_required.items():
        if name in vars(mixin):
            if getattr(cls, name) is not vars(mixin)[name]:
                raise TypeError(
                    f'{cls.__name__}: {_owner(cls, name).__name__}.{name} overrides the EARL '
                    f'mixin; put {mixin.__name__} first in the bases'
                )
            owner = _owner(cls, name, after)  # the implementation the mixin's super() calls
        else:
            owner = _owner(cls, name)
        if owner is None or vars(owner)[name] not in allowed:
            raise TypeError(
                f'EARL does not support {_base_name(cls)}: its {name} (from '
                f'{owner.__name__ if owner else "?"}) is not the mmdet implementation the EARL '
                f'weighting was verified against, so the weights could land wrongly or not at '
                f'all. Supported heads are listed in {_DOCS}'
            )


def earl_head_class(base: type) -> type:
    """The EARL class for a head class: the registered one, or a cached dynamic subclass.

    Args:
        base (type): an mmdet dense head class, e.g. RetinaHead.

    Returns:
        type: a subclass of ``base`` with the EARL mixin first in its bases.

    Raises:
        TypeError: if ``base`` is not supported, naming it.
    """
    if issubclass(base, _EARLMixinBase):
        return base
    if base in _EARL_VARIANTS:
        return _EARL_VARIANTS[base]
    mixin = next((m for family, m in _EARL_MIXINS if issubclass(base, family)), None)
    if mixin is None:
        families = ', '.join(family.__name__ for family, _ in _EARL_MIXINS)
        raise TypeError(
            f'EARL does not support {base.__name__}: only subclasses of {families} that keep '
            f"their family's target and loss code are supported (see {_DOCS})"
        )
    cls = type(
        f'EARL{base.__name__}',
        (mixin, base),
        {'__module__': __name__, '__doc__': f'{base.__name__} with EARL loss weighting.'},
    )  # checked by _EARLMixinBase.__init_subclass__
    _EARL_VARIANTS[base] = cls
    return cls


def is_earl_head(head: nn.Module) -> bool:
    """Whether ``head`` already applies EARL weighting."""
    return isinstance(head, _EARLMixinBase)


def make_earl_head(
    head: nn.Module, earl_cfg: Mapping | EARLConfig | None = None, **options: Any
) -> nn.Module:
    """Turn a built head instance into its EARL form, in place (weights untouched).

    The instance's class is swapped to :func:`earl_head_class` of its class, so the head
    runs exactly the code of ``EARLRetinaHead`` / ``EARLYOLOXHead``; parameters, buffers
    and hooks stay as they are, and prediction is unchanged.

    Args:
        head (nn.Module): e.g. ``model.bbox_head`` of a RetinaNet or YOLOX.
        earl_cfg (dict | EARLConfig | None): options (see :class:`EARLConfig`); None with
            no keywords gives the paper's defaults.
        **options: the same options as keywords, instead of ``earl_cfg``.

    Example:
        >>> make_earl_head(model.bbox_head, scale=3.0)  # c = T, weight T/3

    Returns:
        nn.Module: ``head`` itself.

    Raises:
        TypeError: for an unsupported head, naming its class.
        ValueError: for bad options, or a head already EARL with different options.
    """
    if earl_cfg is not None and options:
        raise ValueError('make_earl_head: give earl_cfg or keyword options, not both')
    cfg = EARLConfig.from_dict(earl_cfg if earl_cfg is not None else options)
    cls = check_earl_head(head, cfg)  # fail before the instance is touched
    if cls is None:
        return head
    head.__class__ = cls
    head._earl_setup(cfg)
    return head


def check_earl_head(head: nn.Module, earl_cfg: Mapping | EARLConfig | None = None) -> type | None:
    """Check that :func:`make_earl_head` would convert ``head`` with ``earl_cfg``.

    Args:
        head (nn.Module): a built head instance.
        earl_cfg (dict | EARLConfig | None): options (see :class:`EARLConfig`).

    Returns:
        type | None: the EARL class ``head`` would get, or None if it already is EARL
        with the same options (nothing to do).

    Raises:
        TypeError: for an unsupported head (or sub-head), naming its class.
        ValueError: for bad options, or a head already EARL with different options.
    """
    cfg = EARLConfig.from_dict(earl_cfg)
    if is_earl_head(head):
        if head.earl_cfg != cfg:
            raise ValueError(
                f'{type(head).__name__} is already EARL-weighted with {head.earl_cfg.to_dict()}; '
                f'refusing to reconfigure it to {cfg.to_dict()}'
            )
        return None
    cls = earl_head_class(type(head))
    cls._earl_check_instance(head, cfg)
    return cls
