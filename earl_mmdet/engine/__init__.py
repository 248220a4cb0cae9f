"""Engine: hooks and checkpoint-loading safety (registered on import)."""

from . import checkpoint, hooks  # noqa: F401  (registration)
from .checkpoint import allow_unsafe_checkpoint_load, load_checkpoint_file

__all__ = ['allow_unsafe_checkpoint_load', 'load_checkpoint_file']
