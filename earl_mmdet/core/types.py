"""Shared data containers of the core (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageAnnotations:
    """All raters' boxes on one image.

    Args:
        boxes (np.ndarray): (N, 4) float, xyxy in pixels.
        labels (np.ndarray): (N,) int64 class indices (0-based).
        rater_ids (np.ndarray): (N,) str, the rater who drew each box.
        raters (tuple[str, ...]): every rater who read the image, including those who
            drew nothing (an image read by 3 raters with no box is a true negative).
        width (float | None): image width in pixels, if known.
        height (float | None): image height in pixels, if known.
        image_id (int | str | None): identifier, for error messages.
    """

    boxes: np.ndarray
    labels: np.ndarray
    rater_ids: np.ndarray
    raters: tuple[str, ...]
    width: float | None = None
    height: float | None = None
    image_id: int | str | None = None


@dataclass
class FusionResult:
    """Fused boxes of one image with their agreement.

    Args:
        boxes (np.ndarray): (M, 4) float32 xyxy pixels.
        labels (np.ndarray): (M,) int64.
        confidences (np.ndarray): (M,) float32, the per-box confidence c used by EARL
            (its meaning depends on the score mode: ``count`` = T, ``fraction`` = T/R,
            ``wbf`` = fused WBF score).
        agreement (np.ndarray): (M,) int64, T = number of distinct raters in the cluster.
        num_raters (int): R, raters who read the image.
        members (list[np.ndarray]): per fused box, indices into the input boxes.
        member_raters (list[tuple[str, ...]]): per fused box, the distinct raters.
    """

    boxes: np.ndarray
    labels: np.ndarray
    confidences: np.ndarray
    agreement: np.ndarray
    num_raters: int
    members: list[np.ndarray] = field(default_factory=list)
    member_raters: list[tuple[str, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
