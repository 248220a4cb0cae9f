"""The aggregator interface, its registry and the confidence modes (numpy only).

Kept apart from :mod:`earl_core.fusion.aggregators` so that :mod:`earl_core.fusion.wbf`
can define the default aggregator (``wbf``) next to the fusion it runs, without an import
cycle: both modules import this one.

Confidence modes (the per-box confidence c; ``docs/aggregators.md``):

===================  ======================================================================
mode                 c
===================  ======================================================================
``agreement``        T, the number of distinct raters behind the fused label.
``agreement_ratio``  T / R, R = the raters who read the image (the paper's c; the default
                     of ``mv`` and ``wbf``).
``fused_score``      WBF's fused score (equal weights: min(boxes in the cluster, R) / R;
                     ``em``: the proficiency-weighted share of the readers).
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
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from earl_core.io.coco import FusedBoxes, RaterBoxes

__all__ = [
    'AGGREGATORS',
    'CONFIDENCE_MODES',
    'LEGACY_CONFIDENCE_MODES',
    'Aggregator',
    'agreement_confidence',
    'check_number',
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
    if low is not None and high is not None:
        bounds = f' in {"(" if open_low else "["}{low:g}, {high:g}{")" if open_high else "]"}'
    elif low is not None:
        bounds = f' {">" if open_low else ">="} {low:g}'
    elif high is not None:
        bounds = f' {"<" if open_high else "<="} {high:g}'
    else:
        bounds = ''
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
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + '...'
        raise ValueError(f'{where}: {name} must be a finite number{bounds}, got {text}')
    return x


def agreement_confidence(t: int, r: int, mode: str) -> float:
    """c of a box with agreement T = ``t`` among R = ``r`` readers, equal rater weights.

    ``agreement`` = T; ``agreement_ratio`` = T / R; ``fused_score`` = min(T, R) / R, WBF's
    ``'avg'`` score of a cluster of T boxes with scores and weights 1 (0 when R = 0).
    """
    if mode == 'agreement':
        return float(t)
    if r <= 0:
        return 0.0
    return float(t if mode == 'agreement_ratio' else min(t, r)) / float(r)


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

    def fit(self, images: Sequence[RaterBoxes]) -> Aggregator:
        """Learn from the whole dataset (no-op unless overridden).

        Args:
            images (Sequence[RaterBoxes]): every image of the dataset.

        Returns:
            Aggregator: self.
        """
        return self

    def __call__(self, image: RaterBoxes) -> FusedBoxes:
        """Fuse one image's boxes.

        Args:
            image (RaterBoxes): all raters' boxes of the image (xyxy pixels).

        Returns:
            FusedBoxes: fused boxes (float32 xyxy pixels), labels, confidence c, agreement
            T, raters R, and the input boxes / raters behind each fused box.
        """
        raise NotImplementedError

    def fuse_all(self, images: Sequence[RaterBoxes]) -> list[FusedBoxes]:
        """``fit`` on ``images`` then fuse each of them."""
        images = list(images)
        self.fit(images)
        return [self(im) for im in images]

    def _build_model(self, model_cls: type, params: dict[str, Any]) -> Any:
        """``model_cls(**params)`` for a model-based aggregator; an unknown argument is a
        ValueError that names the aggregator."""
        try:
            return model_cls(**params)
        except TypeError as e:
            raise ValueError(f'aggregator {self.name!r}: {e}') from e

    def _require_fitted(self, model: Any) -> None:
        """Raise unless ``model`` (a rater model with ``raters_``) is fitted."""
        if model.raters_ is None:
            raise ValueError(f'aggregator {self.name!r} must be fitted first: call .fit(images)')

    def get_params(self) -> dict[str, Any]:
        """Parameters that reproduce this aggregator with ``build_aggregator``."""
        params = {k: getattr(self, k) for k in self.param_names}
        return {'type': self.name, 'confidence': self.confidence, **params}

    def __repr__(self) -> str:
        params = ', '.join(f'{k}={v!r}' for k, v in self.get_params().items() if k != 'type')
        return f'{type(self).__name__}({params})'
