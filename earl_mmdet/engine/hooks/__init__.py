"""Registered hooks."""

from .detector_rater_hook import DetectorRaterHook
from .earl_loss_hook import EARLLossHook
from .random_state_hook import RandomStateHook
from .trust_checkpoints_hook import TrustOwnCheckpointsHook

__all__ = ['DetectorRaterHook', 'EARLLossHook', 'RandomStateHook', 'TrustOwnCheckpointsHook']
