"""Backgrounds: a gradient, low-frequency colour and texture, then clutter (shapes, lines, rings,
scribbles and letter-like glyphs)."""

from __future__ import annotations

import numpy as np

from facedet.data.synthetic.draw import draw_ellipse, draw_line, draw_poly
from facedet.data.synthetic.resample import upsample


def render_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + low-frequency colour + optional texture, then random clutter (float work, uint8 out)."""
    d = rng.normal(size=2)
    ramp = np.arange(w, dtype=np.float32)[None] * d[0] + np.arange(h, dtype=np.float32)[:, None] * d[1]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    img = c0 + ramp[..., None] * (c1 - c0)
    if rng.random() < 0.7:
        small = rng.uniform(-70, 70, (rng.integers(2, 8), rng.integers(2, 8), 3)).astype(np.float32)
        img += upsample(small, h, w, "cubic")
    if rng.random() < 0.5:
        k = int(rng.integers(1, 6))
        tex = rng.standard_normal((h // k + 1, w // k + 1, 1), dtype=np.float32) * rng.uniform(5, 30)
        tex = upsample(tex, h, w, "nearest" if rng.random() < 0.5 else "linear")
        img += tex  # H x W x 1: the same grain in every channel
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 24))):
        col, kind = rng.uniform(0, 255, 3), rng.integers(5)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        s = float(np.exp(rng.uniform(np.log(8), np.log(0.6 * min(h, w)))))
        if kind == 0:  # rotated rectangle
            half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [s / 2, s * rng.uniform(0.2, 1.5) / 2]
            t = np.deg2rad(rng.uniform(0, 180))
            draw_poly(img, half @ [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]] + [x, y], col)
        elif kind == 1:
            draw_line(img, (x, y), np.array([x, y]) + rng.normal(0, s, 2), col, rng.integers(1, 5))
        elif kind == 2:  # ring
            draw_ellipse(img, (x, y), (s / 2, s / 2), 0, col, int(rng.integers(1, 4)))
        elif kind == 3:  # polyline scribble
            draw_poly(img, np.cumsum(rng.normal(0, s / 3, (int(rng.integers(3, 8)), 2)), 0) + [x, y], col, False)
        else:
            draw_glyphs(img, rng, x, y, col)
    return img


def draw_glyphs(img: np.ndarray, rng: np.random.Generator, x: float, y: float, color) -> None:
    """A word of 2-6 letter-like glyphs, each 2-4 strokes between points of a 3x4 grid in its cell.

    Not cv2.putText: OpenCV 5 draws the Hershey fonts differently from OpenCV 4 (up to a quarter of
    an image's pixels changed), which changed the data set, and so the default job's AP, with the
    OpenCV release pip happened to resolve. Lines, ellipses and polygons render identically in both.
    """
    height = rng.uniform(7, 33)  # the cap heights putText gave at scales 0.3-1.5
    width, thick = 0.6 * height, int(rng.integers(1, 3))
    for i in range(int(rng.integers(2, 7))):
        x0 = x + i * 1.25 * width
        grid = rng.integers(0, [3, 4], (int(rng.integers(2, 5)), 2, 2)) / [2, 3]  # (stroke, end, xy)
        for p0, p1 in grid:
            draw_line(img, (x0 + p0[0] * width, y - p0[1] * height), (x0 + p1[0] * width, y - p1[1] * height),
                  color, thick)
