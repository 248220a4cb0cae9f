"""Which head class is EARL, and turning built heads and detectors into their EARL form.

Every EARL head class, whether a config names it (``EARLRetinaHead``, ``EARLYOLOXHead``,
``EARLRPNHead``, ``EARLStandardRoIHead``, ``EARLCascadeRoIHead``) or ``EARLLossHook``
converts a stock head to it, is the one class :func:`earl_head_class` gives for the stock
class: ``(family mixin, stock class)``. The family mixins live with their heads
(``dense_heads/earl_anchor_heads.py``, ``dense_heads/earl_yolox_head.py``,
``dense_heads/earl_rtmdet_heads.py``, ``roi_heads/earl_roi_mixin.py``) and register with
:func:`register_earl_mixin`; the classes configs name register with
:func:`register_earl_variant`, which checks that they add nothing to that composition, so
the config path and the hook path run the same code.

This module holds the machinery the mixins share and the conversion:

* :class:`EARLHeadMixin` - the base of every family mixin (``earl_cfg`` set-up, loss-term
  check, support check when a class is defined);
* :class:`RecordingSampler` - a sampler wrapper for heads whose targets code does not say
  which gt each positive was assigned to;
* :func:`earl_head_class`, :func:`check_earl_support`, :func:`is_earl_head`,
  :func:`check_earl_head`, :func:`make_earl_head` - class lookup and in-place conversion;
* :func:`make_earl_detector`, :func:`check_earl_head_attrs` and :data:`EARL_HEAD_ATTRS` -
  a whole detector, what ``EARLLossHook`` calls before training.

The weighting itself (confidence -> weight, normalisers) is framework-free, in
:mod:`earl_mmdet.models.earl_weights`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from earl_mmdet.models.earl_weights import EARLConfig

__all__ = [
    'EARL_HEAD_ATTRS',
    'EARLHeadMixin',
    'RecordingSampler',
    'check_earl_head',
    'check_earl_head_attrs',
    'check_earl_support',
    'earl_head_class',
    'is_earl_head',
    'make_earl_detector',
    'make_earl_head',
    'register_earl_mixin',
    'register_earl_variant',
]

_DOCS = 'docs/earl_heads.md'

#: detector attributes that hold a head EARL can weight: one-stage detectors' dense head,
#: two-stage detectors' RPN and RoI head (whose bbox head(s) are converted with it)
EARL_HEAD_ATTRS = ('bbox_head', 'rpn_head', 'roi_head')

#: stock head class -> its EARL class (the named ones first, dynamic ones cached)
_EARL_VARIANTS: dict[type, type] = {}
#: (head family, mixin) pairs tried in order by earl_head_class, added by the family files
_EARL_MIXINS: list[tuple[type, type]] = []


class EARLHeadMixin:
    """Base of the EARL family mixins: options and checks (not usable on its own).

    A family mixin sets ``_earl_allowed_terms`` and ``_earl_required`` and overrides the
    targets / loss methods of its family, calling ``super()`` and adjusting the result.
    """

    #: Loss terms this family of heads has (subset of ``EARL_TERMS``).
    _earl_allowed_terms: tuple[str, ...] = ()
    #: Loss policies this family implements (subset of ``EARL_POLICIES``).
    _earl_policies: tuple[str, ...] = ('earl',)
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
        self._earl_check_modules(self, cfg)
        self.earl_cfg = cfg

    @classmethod
    def _earl_check_modules(cls, head: nn.Module, cfg: EARLConfig) -> None:
        """Raise if ``head``'s modules (e.g. its ``loss_cls``) cannot serve ``cfg``.

        Called on a built head (``__init__``) and before a stock head is converted; a family
        overrides it (no-op here).
        """

    @classmethod
    def _earl_check_terms(cls, cfg: EARLConfig) -> None:
        if cfg.policy not in cls._earl_policies:
            raise ValueError(
                f'earl_cfg.policy {cfg.policy!r} is not implemented for {_base_name(cls)}; '
                f'its policies are {cls._earl_policies}'
            )
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
        cls._earl_check_modules(head, cfg)


class RecordingSampler:
    """Wraps a head's sampler: keeps its last sampling result, which carries its gts.

    YOLOXHead's ``_get_targets_single`` returns a foreground mask but not which gt each
    positive was assigned to, and mmdet's bbox heads get sampling results without the gt
    instances; the sampling result has ``pos_assigned_gt_inds``, and this wrapper adds
    ``earl_gt_instances`` to it, so that the EARL mixins call ``super()`` instead of
    re-implementing the assignment.

    Args:
        sampler (Any): the head's mmdet sampler.
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.last: Any = None

    @classmethod
    def wrap(cls, sampler: Any) -> Any:
        """``sampler`` wrapped once (None, e.g. a head without ``train_cfg``, stays None)."""
        return sampler if sampler is None or isinstance(sampler, cls) else cls(sampler)

    def sample(self, assign_result: Any, pred_instances: Any, gt_instances: Any, **kwargs: Any):
        """The wrapped sampler's result, recorded, with ``earl_gt_instances`` set."""
        self.last = self.sampler.sample(assign_result, pred_instances, gt_instances, **kwargs)
        self.last.earl_gt_instances = gt_instances
        return self.last


def register_earl_mixin(family: type, mixin: type) -> None:
    """Let :func:`earl_head_class` build EARL classes of ``family``'s subclasses with ``mixin``."""
    if (family, mixin) not in _EARL_MIXINS:
        _EARL_MIXINS.append((family, mixin))


def register_earl_variant(base: type) -> Callable[[type], type]:
    """Class decorator: declare ``cls`` as :func:`earl_head_class` of ``base``.

    ``cls`` must be exactly what earl_head_class would build, ``(family mixin, base)``
    with a name and a docstring but no code of its own, so that a config naming it and
    ``EARLLossHook`` converting a ``base`` head run the same code.

    Raises:
        TypeError: if ``cls`` has other bases or defines attributes of its own.
    """

    def wrap(cls: type) -> type:
        mixin = _family_mixin(base)
        own = [k for k in vars(cls) if not (k.startswith('__') and k.endswith('__'))]
        own = [k for k in own if k != '_abc_impl']  # set by ABCMeta for every class
        if cls.__bases__ != (mixin, base) or own:
            raise TypeError(
                f'{cls.__name__} must be declared as class {cls.__name__}({mixin.__name__}, '
                f'{base.__name__}) with a docstring only (it defines {own})'
            )
        _EARL_VARIANTS[base] = cls
        return cls

    return wrap


def _family_mixin(base: type) -> type:
    """The registered mixin of ``base``'s most specific head family; TypeError if none.

    Families nest (``RTMDetHead`` < ``ATSSHead`` < ``AnchorHead``): the family nearest to
    ``base`` in its MRO wins, whatever the order the mixins were registered in.
    """
    matches = [(base.__mro__.index(f), m) for f, m in _EARL_MIXINS if issubclass(base, f)]
    mixin = min(matches, key=lambda match: match[0])[1] if matches else None
    if mixin is None:
        families = ', '.join(family.__name__ for family, _ in _EARL_MIXINS)
        raise TypeError(
            f'EARL does not support {base.__name__}: only subclasses of {families} that keep '
            f"their family's target and loss code are supported (see {_DOCS})"
        )
    return mixin


def _base_name(cls: type) -> str:
    """Name of the mmdet head class an EARL class wraps (``cls``'s own name otherwise)."""
    mro = cls.__mro__
    if EARLHeadMixin not in mro:
        return cls.__name__
    return mro[mro.index(EARLHeadMixin) + 1].__name__


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
        if issubclass(k, EARLHeadMixin) and k is not EARLHeadMixin and '_earl_required' in vars(k)
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
    """The EARL class of a head class: the named one, or a cached dynamic subclass.

    Args:
        base (type): an mmdet head class, e.g. RetinaHead.

    Returns:
        type: ``(family mixin, base)``, a subclass of ``base`` with the EARL mixin first
        in its bases; ``base`` itself if it already is EARL.

    Raises:
        TypeError: if ``base`` is not supported, naming it.
    """
    if issubclass(base, EARLHeadMixin):
        return base
    if base in _EARL_VARIANTS:
        return _EARL_VARIANTS[base]
    cls = type(
        f'EARL{base.__name__}',
        (_family_mixin(base), base),
        {'__module__': __name__, '__doc__': f'{base.__name__} with EARL loss weighting.'},
    )  # checked by EARLHeadMixin.__init_subclass__
    _EARL_VARIANTS[base] = cls
    return cls


def is_earl_head(head: nn.Module) -> bool:
    """Whether ``head`` already applies EARL weighting."""
    return isinstance(head, EARLHeadMixin)


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


def check_earl_head_attrs(heads: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate a choice of detector heads for :func:`make_earl_detector`.

    Args:
        heads (Sequence[str] | None): a subset of :data:`EARL_HEAD_ATTRS`, or None (all).

    Returns:
        tuple[str, ...] | None: ``heads`` as a tuple, or None.

    Raises:
        TypeError: for a bare string instead of a sequence.
        ValueError: for an unknown attribute, naming it and the allowed ones.
    """
    if heads is None:
        return None
    if isinstance(heads, str):
        raise TypeError(f'heads must be a sequence of str, got {heads!r}')
    unknown = [a for a in heads if a not in EARL_HEAD_ATTRS]
    if unknown:
        raise ValueError(f'heads {unknown} not understood; allowed: {EARL_HEAD_ATTRS}')
    return tuple(heads)


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
    chosen = check_earl_head_attrs(heads)
    present = [a for a in EARL_HEAD_ATTRS if getattr(model, a, None) is not None]
    if chosen is None:
        names = present
        if not names:
            raise TypeError(
                f'EARL found no head on {type(model).__name__}: it has none of '
                f'{EARL_HEAD_ATTRS} (see {_DOCS})'
            )
    else:
        names = list(chosen)
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
