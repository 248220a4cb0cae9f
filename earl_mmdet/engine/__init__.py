"""Engine: hooks (registered on import) and checkpoint-loading safety (applied on request)."""

from . import hooks  # noqa: F401  (registration)
from .checkpoint import (
    allow_unsafe_checkpoint_load,
    install_safe_loaders,
    load_checkpoint_file,
    restore_loaders,
    safe_loaders,
)

__all__ = [
    'allow_unsafe_checkpoint_load',
    'install_safe_loaders',
    'load_checkpoint_file',
    'restore_loaders',
    'safe_loaders',
]
