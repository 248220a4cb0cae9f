"""Registered hooks."""

from .trust_checkpoints_hook import TrustOwnCheckpointsHook

__all__ = ['TrustOwnCheckpointsHook']
