"""Old names that keep working until 0.3, with a ``FutureWarning`` (``docs/migration.md``).

0.2 gave the package one vocabulary (``docs/data_format.md``, glossary): a *rater* draws
boxes, *fusion* turns them into fused boxes with an *agreement* T and a *confidence* c. The
public names that said it otherwise (``MultiAnnotatorCocoDataset``, the fusion method
``'precomputed'``, the EM option ``box_weights``, ``tools/analyze_annotators.py``...) were
renamed; the helpers here map an old name to its new one and warn once per call site.
"""

from __future__ import annotations

import argparse
import functools
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = [
    'FUSION_METHOD_ALIASES',
    'RenamedFlag',
    'add_renamed_flag',
    'renamed_attribute',
    'fusion_method',
    'pop_renamed_kwarg',
    'renamed_attributes',
    'renamed_kwargs',
    'warn_renamed',
]

#: Where every rename is listed.
MIGRATION = 'docs/migration.md'

#: Old fusion method names -> new ones (``MultiRaterCocoDataset(fusion=...)``).
FUSION_METHOD_ALIASES: dict[str, str] = {'precomputed': 'prefused'}


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn with a ``FutureWarning`` that ``old`` is now called ``new``.

    Args:
        old (str): the old name as the user wrote it (e.g. ``"fusion method 'precomputed'"``).
        new (str): the new name, written the same way.
        stacklevel (int): passed to :func:`warnings.warn`. Defaults to 3 (the caller's
            caller).
    """
    warnings.warn(
        f'{old} is deprecated since earl-mmdet 0.2 and removed in 0.3: use {new} (see {MIGRATION})',
        FutureWarning,
        stacklevel=stacklevel,
    )


class renamed_attribute:  # noqa: N801  (used like ``property``)
    """A class attribute under its old name: reading it warns and reads the new one.

    ``rad_id = renamed_attribute('rater')`` in a class body makes ``obj.rad_id`` warn
    "Cls.rad_id is deprecated ...: use Cls.rater" and return ``obj.rater``; for a method the
    names read ``Cls.old()`` / ``Cls.new()`` and the bound new method is returned. Not a
    dataclass field (no annotation), so constructors take only the new name.

    Args:
        new (str): the attribute's name now.
    """

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = new  # set by __set_name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = getattr(obj, self.new)
        call = '()' if callable(value) else ''
        cls = type(obj).__name__
        warn_renamed(f'{cls}.{self.old}{call}', f'{cls}.{self.new}{call}')
        return value


def fusion_method(method: Any) -> Any:
    """The current name of a fusion method; an old name warns and is mapped.

    Args:
        method: a method name (or anything else, e.g. an aggregator object, returned as is).

    Returns:
        The method with an old name replaced by its new one.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter('ignore')
        ...     fusion_method('precomputed')
        'prefused'
        >>> fusion_method('wbf')
        'wbf'
    """
    if isinstance(method, str) and method in FUSION_METHOD_ALIASES:
        new = FUSION_METHOD_ALIASES[method]
        warn_renamed(f'fusion method {method!r}', f'{new!r}', stacklevel=4)
        return new
    return method


def pop_renamed_kwarg(
    kwargs: MutableMapping[str, Any],
    old: str,
    new: str,
    where: str,
    values: Mapping[Any, Any] | None = None,
    stacklevel: int = 4,
) -> None:
    """Move keyword ``old`` of ``kwargs`` to ``new`` in place, warning; both given is an error.

    Args:
        kwargs (MutableMapping[str, Any]): the keyword arguments (modified in place).
        old (str): the deprecated keyword.
        new (str): its new name.
        where (str): the callee, for messages (e.g. ``"aggregator 'em'"``).
        values (Mapping | None): old values -> new values of the option (applied to the
            value under either name, with a warning). Defaults to None.
        stacklevel (int): of the warnings (4: the caller of the function that calls this).

    Raises:
        TypeError: if both ``old`` and ``new`` are given.
    """
    if old in kwargs:
        if new in kwargs:
            raise TypeError(f'{where}: give {new}= only ({old}= is its deprecated name)')
        warn_renamed(f'{where}: {old}=', f'{new}=', stacklevel=stacklevel)
        kwargs[new] = kwargs.pop(old)
    if values and new in kwargs and _hashable(kwargs[new]) and kwargs[new] in values:
        value = values[kwargs[new]]
        warn_renamed(f'{where}: {new}={kwargs[new]!r}', f'{new}={value!r}', stacklevel=stacklevel)
        kwargs[new] = value


def renamed_kwargs(where: str, **renames: str) -> Callable[[Callable], Callable]:
    """Decorator: the function also accepts each ``old=`` keyword of ``renames`` (warned).

    Args:
        where (str): the function, for messages.
        **renames (str): old keyword -> new keyword.

    Returns:
        Callable: the decorator.

    Examples:
        >>> @renamed_kwargs('f', conf='confidence')
        ... def f(confidence):
        ...     return confidence
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter('ignore')
        ...     f(conf=0.5)
        0.5
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                pop_renamed_kwarg(kwargs, old, new, where)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def renamed_attributes(module: str, namespace: Mapping[str, Any], **renames: str) -> Callable:
    """A module ``__getattr__`` that serves each old name of ``renames`` as its new one, warned.

    Args:
        module (str): the module's ``__name__``, for messages.
        namespace (Mapping[str, Any]): the module's ``globals()``, read at each access (so a
            patched new name is what the old name returns).
        **renames (str): old module-level name -> new name.

    Returns:
        Callable: assign it to the module's ``__getattr__``.

    Examples:
        >>> NEW = 1
        >>> getattr_ = renamed_attributes('m', globals(), OLD='NEW')
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter('ignore')
        ...     getattr_('OLD')
        1
    """

    def __getattr__(name: str) -> Any:
        if name in renames:
            warn_renamed(f'{module}.{name}', f'{module}.{renames[name]}')
            return namespace[renames[name]]
        raise AttributeError(f'module {module!r} has no attribute {name!r}')

    return __getattr__


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class RenamedFlag(argparse.Action):
    """An argparse action for a deprecated flag: warns, then stores into the new flag's dest.

    Built by :func:`add_renamed_flag`; ``values_map`` maps old choice values to new ones.
    """

    def __init__(
        self,
        option_strings: list[str],
        dest: str,
        new_flag: str = '',
        values_map: Mapping[Any, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.new_flag = new_flag
        self.values_map = dict(values_map or {})
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        warn_renamed(option_string or self.option_strings[0], self.new_flag, stacklevel=2)
        if self.nargs == 0:
            values = self.const
        elif isinstance(values, list):
            values = [self.values_map.get(v, v) for v in values]
        else:
            values = self.values_map.get(values, values)
        setattr(namespace, self.dest, values)


def add_renamed_flag(
    parser: argparse.ArgumentParser | Any,
    old: str,
    new: str,
    dest: str,
    values_map: Mapping[Any, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Accept the deprecated flag ``old`` as ``new`` (hidden from ``--help``; warns).

    Args:
        parser (argparse.ArgumentParser | argument group): where ``new`` was added.
        old (str): the old flag, e.g. ``'--box-weights'``.
        new (str): the new flag, for the warning.
        dest (str): the new flag's ``dest``.
        values_map (Mapping | None): old choice values -> new ones. Defaults to None.
        **kwargs: ``type``, ``nargs``, ``const``, ``choices`` as the new flag has them (the
            choices may include old values, which are mapped).
    """
    parser.add_argument(
        old,
        dest=dest,
        action=RenamedFlag,
        new_flag=new,
        values_map=values_map,
        help=argparse.SUPPRESS,
        default=argparse.SUPPRESS,
        **kwargs,
    )
