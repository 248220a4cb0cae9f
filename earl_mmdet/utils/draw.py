"""Drawing raters' boxes beside fused boxes (numpy + OpenCV, headless).

Used by ``tools/browse_dataset.py``; importable so a notebook can draw one image:
``render(img, rater_boxes, rater_labels, rater_ids, raters, fused_boxes, fused_labels,
fused_confidence, classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from earl_core.deprecation import renamed_kwargs

__all__ = ['FUSED_COLOUR', 'rater_colour', 'render']

#: BGR colours for raters (colour-blind friendly first, then generated).
_RATER_COLOURS = [
    (0, 114, 230),
    (178, 114, 0),
    (115, 158, 0),
    (167, 121, 204),
    (66, 228, 240),
    (0, 94, 213),
    (233, 180, 86),
    (255, 255, 255),
]
FUSED_COLOUR = (0, 220, 255)


def rater_colour(index: int) -> tuple[int, int, int]:
    """BGR colour of the ``index``-th rater of a run (stable across images)."""
    if index < len(_RATER_COLOURS):
        return _RATER_COLOURS[index]
    rng = np.random.default_rng(index)
    return tuple(int(v) for v in rng.integers(60, 256, 3))


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour, scale: float) -> None:
    import cv2

    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    cv2.rectangle(img, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


@renamed_kwargs('render', fused_conf='fused_confidence')
def render(
    img: np.ndarray,
    rater_boxes: np.ndarray,
    rater_labels: np.ndarray,
    rater_ids: Sequence[str],
    raters: Sequence[str],
    fused_boxes: np.ndarray,
    fused_labels: np.ndarray,
    fused_confidence: np.ndarray,
    classes: Sequence[str],
    rater_order: dict[str, int] | None = None,
) -> np.ndarray:
    """Draw raters' boxes (left) beside fused boxes (right).

    Args:
        img (np.ndarray): (H, W, 3) uint8 BGR (or (H, W) grey) image.
        rater_boxes (np.ndarray): (N, 4) xyxy pixels, all raters' boxes.
        rater_labels (np.ndarray): (N,) int labels.
        rater_ids (Sequence[str]): (N,) rater of each box.
        raters (Sequence[str]): raters who read the image (legend).
        fused_boxes (np.ndarray): (M, 4) xyxy pixels.
        fused_labels (np.ndarray): (M,) int labels.
        fused_confidence (np.ndarray): (M,) confidence c (``fused_conf`` until 0.2).
        classes (Sequence[str]): class names by label.
        rater_order (dict[str, int] | None): rater -> colour index, to keep colours stable
            across images; updated with unseen raters. Defaults to a fresh one.

    Returns:
        np.ndarray: (H + legend, 2 W + gap, 3) uint8 BGR canvas.
    """
    import cv2

    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    h, w = img.shape[:2]
    scale = max(0.35, min(h, w) / 700)
    thick = max(1, int(round(min(h, w) / 300)))
    order = {} if rater_order is None else rater_order
    for r in list(raters) + [str(x) for x in rater_ids]:
        order.setdefault(str(r), len(order))

    def name(lab: int) -> str:
        return classes[lab] if 0 <= lab < len(classes) else str(lab)

    left, right = img.copy(), img.copy()
    for box, lab, rid in zip(np.asarray(rater_boxes).reshape(-1, 4), rater_labels, rater_ids):
        c = rater_colour(order[str(rid)])
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(left, (x1, y1), (x2, y2), c, thick)
        _text(left, name(int(lab)), (x1, max(y1 - 2, 12)), c, scale)
    fused = zip(np.asarray(fused_boxes).reshape(-1, 4), fused_labels, fused_confidence)
    for box, lab, confidence in fused:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(right, (x1, y1), (x2, y2), FUSED_COLOUR, thick)
        _text(
            right,
            f'{name(int(lab))} c={float(confidence):.3g}',
            (x1, max(y1 - 2, 12)),
            FUSED_COLOUR,
            scale,
        )

    drew = {str(r) for r in rater_ids}
    legend = [(str(r), str(r) if str(r) in drew else f'{r} (no box)') for r in raters]
    legend += [(r, f'{r} (not listed)') for r in sorted(drew - {str(x) for x in raters})]
    line = int(30 * scale / 0.5)
    legend_h = line * (len(legend) + 1) + 8
    gap = 8
    canvas = np.zeros((h + legend_h, 2 * w + gap, 3), np.uint8)
    canvas[:h, :w] = left
    canvas[:h, w + gap :] = right
    y = h + line
    _text(canvas, f'raters ({len(raters)} read)', (4, y), (255, 255, 255), scale)
    _text(canvas, f'fused: {len(fused_labels)} boxes', (w + gap + 4, y), FUSED_COLOUR, scale)
    for r, label in legend:
        y += line
        c = rater_colour(order[r])
        cv2.rectangle(canvas, (6, y - line // 2), (6 + line // 2, y), c, -1)
        _text(canvas, label, (12 + line // 2, y), c, scale)
    return canvas
