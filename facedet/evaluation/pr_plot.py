"""Precision-recall curves as a PNG, drawn with OpenCV (already a dependency; matplotlib is not)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

# BGR colours, one per curve (cycled)
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    size: tuple[int, int] = (640, 480),
) -> np.ndarray:
    """An HxWx3 uint8 BGR plot of ``{label: (recall, precision)}`` on [0, 1] x [0, 1], with a grid,
    axis labels and a legend. NaN points are skipped."""
    w, h = size
    left, right, top, bottom = 60, 20, 40 if title else 20, 50
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - left - right, h - top - bottom

    def px(r: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.stack([left + r * pw, top + (1 - p) * ph], -1).round().astype(np.int32)

    for v in np.linspace(0, 1, 6):
        x, y = int(left + v * pw), int(top + (1 - v) * ph)
        cv2.line(img, (x, top), (x, top + ph), (225, 225, 225), 1)
        cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
        cv2.putText(img, f"{v:.1f}", (x - 12, top + ph + 18), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"{v:.1f}", (left - 32, y + 4), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    cv2.putText(img, "recall", (left + pw // 2 - 20, h - 12), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "precision", (4, top - 8 if title else 14), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        cv2.putText(img, title, (left, 24), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (label, (recall, precision)) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        r, p = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
        ok = np.isfinite(r) & np.isfinite(p)
        pts = px(np.clip(r[ok], 0, 1), np.clip(p[ok], 0, 1))
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        elif len(pts) == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), 3, colour, -1, cv2.LINE_AA)
        y = top + ph - 10 - 18 * (len(curves) - 1 - i)  # legend bottom-left: PR curves rarely pass there
        cv2.line(img, (left + 10, y - 4), (left + 34, y - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(img, label, (left + 40, y), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def save_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "") -> Path:
    """Draw ``curves`` and write them to ``path`` (PNG); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), draw_pr_curves(curves, title=title)):
        raise OSError(f"could not write {path}")
    return path
