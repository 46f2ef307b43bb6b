"""Resizing in numpy (the same result on every OpenCV release and CPU), for background textures."""

from __future__ import annotations

import numpy as np


def resize_taps(n_in: int, n_out: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (n_out x k) and weights (n_out x k) of a 1-D resize with pixel centres aligned
    (as cv2.resize), borders replicated; cubic is Keys' kernel with a = -0.75 (OpenCV's)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if kind == "nearest":
        index = np.minimum((np.arange(n_out) * n_in) // n_out, n_in - 1)  # cv2's INTER_NEAREST: floor(i * in / out)
        return index[:, None], np.ones((n_out, 1))
    base = np.floor(src)
    t = src - base
    if kind == "linear":
        offsets, weights = np.array([0, 1]), np.stack([1 - t, t], 1)
    else:
        a, offsets = -0.75, np.array([-1, 0, 1, 2])
        d = np.abs(t[:, None] - offsets[None])
        weights = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    return np.clip(base[:, None].astype(int) + offsets[None], 0, n_in - 1), weights


def upsample(small: np.ndarray, h: int, w: int, kind: str) -> np.ndarray:
    """Resize an HxWxC float32 map to h x w in numpy. Not cv2.resize: its float kernels changed
    between OpenCV releases (and differ by CPU instruction set); elementwise numpy arithmetic is
    the same everywhere, so the rendered set does not depend on the OpenCV pip resolved."""
    rows, row_w = resize_taps(small.shape[0], h, kind)
    cols, col_w = resize_taps(small.shape[1], w, kind)
    out = np.zeros((h, small.shape[1], small.shape[2]), np.float64)
    for k in range(rows.shape[1]):
        out += small[rows[:, k]] * row_w[:, k, None, None]
    res = np.zeros((h, w, small.shape[2]), np.float64)
    for k in range(cols.shape[1]):
        res += out[:, cols[:, k]] * col_w[None, :, k, None]
    return res.astype(np.float32)
