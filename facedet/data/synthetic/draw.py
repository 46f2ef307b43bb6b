"""Anti-aliased drawing primitives with sub-pixel coordinates (cv2 with ``SHIFT`` fraction bits):
ellipses, polygons and lines in float pixel coordinates and float colours."""

from __future__ import annotations

import cv2
import numpy as np

SHIFT = 4  # cv2 sub-pixel bits: small faces need sub-pixel feature placement
ONE = 1 << SHIFT


def to_point(x: float, y: float) -> tuple[int, int]:
    return int(round(x * ONE)), int(round(y * ONE))


def to_color(c: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.clip(c, 0, 255))


def draw_ellipse(img, c, axes, angle, color, thickness=-1, start=0.0, end=360.0) -> None:
    ax = (max(int(round(axes[0] * ONE)), 1), max(int(round(axes[1] * ONE)), 1))
    cv2.ellipse(img, to_point(*c), ax, float(angle), start, end, to_color(color), thickness, cv2.LINE_AA, SHIFT)


def draw_poly(img, pts: np.ndarray, color, closed: bool | None = None) -> None:
    """Filled polygon, or an open/closed polyline when ``closed`` is given."""
    p = [np.round(np.asarray(pts) * ONE).astype(np.int32)]
    if closed is None:
        cv2.fillPoly(img, p, to_color(color), cv2.LINE_AA, SHIFT)
    else:
        cv2.polylines(img, p, closed, to_color(color), 1, cv2.LINE_AA, SHIFT)


def draw_line(img, p0, p1, color, thickness: int = 1) -> None:
    cv2.line(img, to_point(*p0), to_point(*p1), to_color(color), int(thickness), cv2.LINE_AA, SHIFT)


def half_extent(a: float, b: float, angle: float) -> tuple[float, float]:
    """Half width and height of the axis-aligned box around an ellipse rotated by ``angle`` degrees."""
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    return float(np.hypot(a * c, b * s)), float(np.hypot(a * s, b * c))
