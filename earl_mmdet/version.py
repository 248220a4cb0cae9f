from earl_core.version import __version__

__all__ = ['__version__']
