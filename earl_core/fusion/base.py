"""The aggregator interface, its registry and builder, and the confidence modes (numpy only).

Every aggregator module imports this one and registers its class here
(:func:`register_aggregator`); importing :mod:`earl_core.fusion` imports them all, so
:func:`build_aggregator` finds every name: ``na``, ``rater:<id>``, ``mv``
(:mod:`~earl_core.fusion.aggregators`), ``wbf`` (:mod:`~earl_core.fusion.wbf`, next to the
fusion it runs), ``em``, ``presence_em`` (:mod:`~earl_core.fusion.em_aggregators`) and
``bayes`` (:mod:`~earl_core.fusion.bayes`).

Confidence modes (the per-box confidence c; ``docs/aggregators.md``):

===================  ======================================================================
mode                 c
===================  ======================================================================
``agreement``        T, the number of distinct raters behind the fused label.
``agreement_ratio``  T / R, R = the raters who read the image (the paper's c; the default
                     of ``mv`` and ``wbf``).
``fused_score``      WBF's fused score (equal weights: min(boxes in the cluster, R) / R;
                     ``em``: the proficiency-weighted share of the raters).
``posterior``        ``em``: the posterior probability of the fused label; ``presence_em``:
                     max_y P(z = 1, y), the posterior that the box is a real object of the
                     fused label.
``presence``         ``presence_em`` only (its default): P(z = 1), the posterior that the
                     box is a real object (any class).
===================  ======================================================================

The former ``score_mode=`` argument and its values ``'count'``, ``'fraction'``, ``'wbf'``
still work with a :class:`DeprecationWarning` (they map to ``agreement``,
``agreement_ratio`` and ``fused_score``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Union

import numpy as np

from earl_core.structures import Detections

__all__ = [
    'AGGREGATORS',
    'CONFIDENCE_MODES',
    'LEGACY_CONFIDENCE_MODES',
    'Aggregator',
    'ModelAggregator',
    'agreement_confidence',
    'check_iou_thr',
    'build_aggregator',
    'check_number',
    'raters_of',
    'register_aggregator',
    'resolve_confidence',
]

#: Every confidence mode, in the order of the documentation.
CONFIDENCE_MODES = ('agreement', 'agreement_ratio', 'fused_score', 'posterior', 'presence')

#: Deprecated mode names (``score_mode=``, ``--score``) -> their names now.
LEGACY_CONFIDENCE_MODES = {
    'count': 'agreement',
    'fraction': 'agreement_ratio',
    'wbf': 'fused_score',
}

#: name -> Aggregator subclass. ``rater`` is spelled ``rater:<id>`` in a spec string.
AGGREGATORS: dict[str, type[Aggregator]] = {}
#: Names shown in error messages, in the order of the documentation.
_SPELLINGS = ('na', 'rater:<id>', 'mv', 'wbf', 'em', 'presence_em', 'bayes')

AggregatorSpec = Union[str, Mapping]


def register_aggregator(name: str):
    """Class decorator that registers an :class:`Aggregator` under ``name``."""

    def deco(cls: type[Aggregator]) -> type[Aggregator]:
        if name in AGGREGATORS:
            raise ValueError(f'aggregator name {name!r} already registered')
        cls.name = name
        AGGREGATORS[name] = cls
        return cls

    return deco


def resolve_confidence(
    confidence: str | None,
    score_mode: str | None,
    allowed: Sequence[str],
    default: str,
    where: str,
) -> str:
    """The confidence mode to use, from ``confidence=`` or the deprecated ``score_mode=``.

    Args:
        confidence (str | None): a mode of :data:`CONFIDENCE_MODES` (or a deprecated name);
            None = ``default``.
        score_mode (str | None): the deprecated argument; a DeprecationWarning when given.
        allowed (Sequence[str]): the modes the caller implements.
        default (str): the mode when neither argument is given.
        where (str): the caller, for messages (e.g. ``"aggregator 'wbf'"``).

    Returns:
        str: one of ``allowed``.

    Raises:
        ValueError: for both arguments at once or a mode not in ``allowed``.
    """
    if score_mode is not None:
        if confidence is not None:
            raise ValueError(f'{where}: give confidence= (score_mode= is its old name), not both')
        warnings.warn(
            f'{where}: score_mode= is deprecated, use confidence=', DeprecationWarning, stacklevel=3
        )
        confidence = score_mode
    if confidence is None:
        return default
    if confidence in LEGACY_CONFIDENCE_MODES:
        new = LEGACY_CONFIDENCE_MODES[confidence]
        warnings.warn(
            f'{where}: confidence mode {confidence!r} is deprecated, use {new!r}',
            DeprecationWarning,
            stacklevel=3,
        )
        confidence = new
    if confidence not in allowed:
        raise ValueError(f'{where}: confidence must be one of {tuple(allowed)}, got {confidence!r}')
    return confidence


def check_number(
    value: Any,
    name: str,
    where: str,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A numeric parameter, checked: a finite real number within the bounds, as float.

    Strings are refused even when they spell a number (``'0.8'``): a parameter read from a
    config as text is a mistake to report, not to guess at. Every message names ``where``,
    the parameter ``name`` and the value.

    Args:
        value (Any): the value given.
        name (str): the parameter name, e.g. ``'prior_strength'``.
        where (str): the owner, e.g. ``"aggregator 'em'"``.
        low (float | None): lower bound; None = none. Defaults to None.
        high (float | None): upper bound; None = none. Defaults to None.
        open_low (bool): ``value > low`` rather than ``>=``. Defaults to False.
        open_high (bool): ``value < high`` rather than ``<=``. Defaults to False.

    Returns:
        float: ``value`` as a float.

    Raises:
        ValueError: naming ``where``, ``name`` and the value.

    Examples:
        >>> check_number(0.5, 'prior_diag', 'RaterEM', 0, 1)
        0.5
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if ok:
        try:
            x = float(value)
        except OverflowError:  # an int too large for a float
            ok = False
        else:
            ok = (
                math.isfinite(x)
                and (low is None or (x > low if open_low else x >= low))
                and (high is None or (x < high if open_high else x <= high))
            )
    if not ok:
        if low is not None and high is not None:
            bounds = f' in {"(" if open_low else "["}{low:g}, {high:g}{")" if open_high else "]"}'
        elif low is not None:
            bounds = f' {">" if open_low else ">="} {low:g}'
        elif high is not None:
            bounds = f' {"<" if open_high else "<="} {high:g}'
        else:
            bounds = ''
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + '...'
        raise ValueError(f'{where}: {name} must be a finite number{bounds}, got {text}')
    return x


def check_iou_thr(iou_thr: Any, where: str) -> float:
    """An IoU threshold, checked by :func:`check_number`: a finite number in [0, 1).

    Two boxes match when IoU > ``iou_thr`` (strict, as in WBF and the PASCAL VOC criterion);
    at 1 nothing could ever match.

    Args:
        iou_thr (Any): the value given.
        where (str): the owner, e.g. ``"aggregator 'mv'"``.

    Returns:
        float: ``iou_thr`` as a float.

    Raises:
        ValueError: naming ``where`` and the value.

    Examples:
        >>> check_iou_thr(0.4, "aggregator 'mv'")
        0.4
    """
    return check_number(iou_thr, 'iou_thr', where, 0.0, 1.0, open_high=True)


def agreement_confidence(t: int | np.ndarray, r: int, mode: str) -> float | np.ndarray:
    """c of boxes with agreement T = ``t`` among R = ``r`` raters, equal rater weights.

    ``agreement`` = T; ``agreement_ratio`` = T / R; ``fused_score`` = min(T, R) / R, WBF's
    ``'avg'`` score of a cluster of T boxes with scores and weights 1 (0 when R = 0).

    Args:
        t (int | np.ndarray): T of one box, or (M,) of several.
        r (int): R, the raters who read the image.
        mode (str): ``'agreement'``, ``'agreement_ratio'`` or ``'fused_score'``.

    Returns:
        float | np.ndarray: c, a float for an int ``t``, else float64 of ``t``'s shape.

    Examples:
        >>> agreement_confidence(2, 3, 'agreement_ratio'), agreement_confidence(4, 3, 'fused_score')
        (0.6666666666666666, 1.0)
    """
    if mode == 'agreement':
        c = t
    elif r <= 0:
        c = t * 0
    else:
        c = (t if mode == 'agreement_ratio' else np.minimum(t, r)) / r
    return c.astype(np.float64) if isinstance(c, np.ndarray) else float(c)


def raters_of(image: Detections, members: Sequence[np.ndarray]) -> list[tuple[str, ...]]:
    """Per group of box indices of ``image``, the raters of its boxes (in box order)."""
    raters, index = image.raters, image.rater_index
    return [tuple([raters[x] for x in index[m].tolist()]) for m in members]


class Aggregator:
    """Base class: all raters' boxes of one image -> fused boxes with a confidence c.

    Subclasses set ``confidence_modes`` / ``default_confidence`` and implement
    :meth:`__call__`; those that learn from the dataset override :meth:`fit`.

    Args:
        confidence (str | None): how c is computed, one of ``confidence_modes``; None =
            ``default_confidence``.
        score_mode (str | None): deprecated name of ``confidence``.
    """

    name: ClassVar[str] = ''
    #: Attributes reported by :meth:`get_params` after ``type`` and ``confidence``.
    param_names: ClassVar[tuple[str, ...]] = ()
    confidence_modes: ClassVar[tuple[str, ...]] = ('agreement', 'agreement_ratio', 'fused_score')
    default_confidence: ClassVar[str] = 'agreement_ratio'

    def __init__(self, confidence: str | None = None, score_mode: str | None = None) -> None:
        self.confidence = resolve_confidence(
            confidence,
            score_mode,
            self.confidence_modes,
            self.default_confidence,
            f'aggregator {self.name!r}',
        )

    def fit(self, images: Sequence[Detections]) -> Aggregator:
        """Learn from the whole dataset (no-op unless overridden).

        Args:
            images (Sequence[Detections]): every image of the dataset.

        Returns:
            Aggregator: self.
        """
        return self

    def __call__(self, image: Detections) -> Detections:
        """Fuse one image's boxes.

        Args:
            image (Detections): all raters' boxes of the image (xyxy pixels).

        Returns:
            Detections: fused boxes (float32 xyxy pixels), labels, confidence c, agreement
            T, raters R, and the input boxes / raters behind each fused box.
        """
        raise NotImplementedError

    def fuse_all(self, images: Sequence[Detections]) -> list[Detections]:
        """``fit`` on ``images`` then fuse each of them."""
        images = list(images)
        self.fit(images)
        return [self(im) for im in images]

    def get_params(self) -> dict[str, Any]:
        """Parameters that reproduce this aggregator with ``build_aggregator``."""
        params = {k: getattr(self, k) for k in self.param_names}
        return {'type': self.name, 'confidence': self.confidence, **params}

    def __repr__(self) -> str:
        params = ', '.join(f'{k}={v!r}' for k, v in self.get_params().items() if k != 'type')
        return f'{type(self).__name__}({params})'


class ModelAggregator(Aggregator):
    """Base class of the aggregators over a rater model fitted on the dataset (``em``,
    ``presence_em``, ``bayes``).

    :meth:`fit` fits ``model``; :meth:`fuse_all` fuses each image with the clusters of the
    fit (one clustering for both). Subclasses set ``model_cls`` and implement :meth:`_fit`
    and :meth:`_fuse`.

    Args:
        confidence (str | None): see :class:`Aggregator`.
        score_mode (str | None): deprecated name of ``confidence``.
        **model_params: ``model_cls`` arguments; an unknown one is a ValueError naming the
            aggregator.
    """

    #: The rater model class (``RaterEM``, ``PresenceEM``, ``BayesRaterModel``).
    model_cls: ClassVar[type]

    def __init__(
        self, confidence: str | None = None, score_mode: str | None = None, **model_params: Any
    ) -> None:
        super().__init__(confidence, score_mode)
        try:
            self.model = self.model_cls(**model_params)
        except TypeError as e:
            raise ValueError(f'aggregator {self.name!r}: {e}') from e

    def fit(self, images: Sequence[Detections]) -> ModelAggregator:
        self._fit(list(images))
        return self

    def fuse_all(self, images: Sequence[Detections]) -> list[Detections]:
        """``fit`` on ``images`` then fuse each of them, with the fit's clusters."""
        images = list(images)
        return [self._fuse(im, ci) for im, ci in zip(images, self._fit(images))]

    def __call__(self, image: Detections) -> Detections:
        return self._fuse(image)

    def _fit(self, images: list[Detections]) -> list[Any]:
        """Fit on ``images``; returns per image its clusters of the fit (None: none kept)."""
        raise NotImplementedError

    def _fuse(self, image: Detections, clustered: Any = None) -> Detections:
        """Fuse one image, with its clusters of the fit if given (else clustered here)."""
        raise NotImplementedError

    def _require_fitted(self) -> None:
        """Raise unless the model is fitted."""
        if self.model.raters_ is None:
            raise ValueError(f'aggregator {self.name!r} must be fitted first: call .fit(images)')

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), **self.model.get_params()}


def build_aggregator(spec: AggregatorSpec | Aggregator, **params: Any) -> Aggregator:
    """Build an aggregator from a name or a config dict.

    Args:
        spec (str | Mapping | Aggregator): ``'na'``, ``'rater:<id>'``, ``'mv'``, ``'wbf'``,
            ``'em'``, ``'presence_em'``, ``'bayes'``, or a dict with ``type`` set to one of them
            (``{'type': 'rater', 'rater': 'R8'}`` works too) plus parameters. An
            Aggregator is returned as is (then ``params`` must be empty).
        **params: constructor parameters; they override those in a dict spec.

    Returns:
        Aggregator: a new, unfitted aggregator.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or invalid parameters.

    Examples:
        >>> build_aggregator('rater:R8').rater
        'R8'
        >>> build_aggregator({'type': 'mv', 'quorum': 2}).quorum
        2
    """
    if isinstance(spec, Aggregator):
        if params:
            raise ValueError(f'cannot apply parameters {sorted(params)} to a built {spec!r}')
        return spec
    if isinstance(spec, Mapping):
        cfg = dict(spec)
        if 'type' not in cfg:
            raise ValueError(f"aggregator config needs a 'type' key (one of {_SPELLINGS}): {cfg!r}")
        name = cfg.pop('type')
        cfg.update(params)
        params = cfg
    elif isinstance(spec, str):
        name = spec
    else:
        raise ValueError(
            f'aggregator spec must be a name or a dict, got {type(spec).__name__}: {spec!r}'
        )
    if not isinstance(name, str):
        raise ValueError(f'aggregator type must be a str, got {name!r}')
    name = name.strip()
    if name.startswith('rater:'):
        rater = name[len('rater:') :]
        if not rater:
            raise ValueError("aggregator 'rater:<id>' needs a rater id, e.g. 'rater:R8'")
        if 'rater' in params and str(params['rater']) != rater:
            raise ValueError(f'conflicting rater ids {rater!r} and {params["rater"]!r}')
        params = {**params, 'rater': rater}
        name = 'rater'
    if name not in AGGREGATORS:
        raise ValueError(f'unknown aggregator {name!r}; valid names: {", ".join(_SPELLINGS)}')
    if name == 'rater' and 'rater' not in params:
        raise ValueError("aggregator 'rater' needs a rater id: use 'rater:<id>', e.g. 'rater:R8'")
    try:
        return AGGREGATORS[name](**params)
    except TypeError as e:
        raise ValueError(f'invalid parameters for aggregator {name!r}: {e}') from e
