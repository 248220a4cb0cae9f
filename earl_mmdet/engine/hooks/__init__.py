"""Registered hooks."""

from .earl_loss_hook import EARLLossHook
from .trust_checkpoints_hook import TrustOwnCheckpointsHook

__all__ = ['EARLLossHook', 'TrustOwnCheckpointsHook']
