"""Models: EARL-weighted heads and the mechanism that makes a head EARL-weighted."""

from . import dense_heads  # noqa: F401  (registration)
