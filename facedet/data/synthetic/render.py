"""One synthetic image: background, distractors, faces, then global lighting and noise, all drawn
from the generator seeded by ``(seed, split, index)``."""

from __future__ import annotations

import cv2
import numpy as np

from facedet.data.synthetic.background import render_background
from facedet.data.synthetic.draw import half_extent
from facedet.data.synthetic.faces import draw_distractor, draw_face, place_faces

SPLITS = {"train": 0, "val": 1}
IMG_RANGE = (256, 416)  # image side lengths, inclusive


def render_synthetic_image(seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render image ``index`` of ``split``: (HxWx3 uint8 RGB, Nx4 float32 xyxy face boxes, rounded
    to 0.01 px as written to disk). Depends only on its arguments."""
    img, boxes, _ = render_synthetic_sample(seed, split, index)
    return img, boxes


def render_synthetic_sample(seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``render_synthetic_image`` plus the faces' five points: (image, boxes, Nx5x2 float32 landmarks
    in pixels, rounded to 0.01 px as written to disk, NaN where a point lies outside the image)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    w, h = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, 2))
    img = render_background(rng, h, w)
    for _ in range(int(rng.integers(2, 11))):
        draw_distractor(img, rng)
    boxes, points = [], []
    for cx, cy, a, b, angle in place_faces(rng, h, w):
        points.append(draw_face(img, rng, cx, cy, a, b, angle))
        hw, hh = half_extent(a, b, angle)
        boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
        if rng.random() < 0.2:  # defocus / motion-free blur on this face only
            x0, y0 = int(max(cx - 1.6 * hw, 0)), int(max(cy - 1.6 * hh, 0))
            x1, y1 = int(min(cx + 1.6 * hw + 1, w)), int(min(cy + 1.6 * hh + 1, h))
            sigma = rng.uniform(0.5, 0.5 + 0.06 * 2 * hw)
            img[y0:y1, x0:x1] = cv2.GaussianBlur(img[y0:y1, x0:x1], (0, 0), sigma)
    # global lighting: colour cast, brightness, contrast, an illumination gradient, sensor noise
    gain = (rng.uniform(0.8, 1.2, 3) * rng.uniform(0.6, 1.3)).astype(np.float32)
    f = img.astype(np.float32) * gain
    # the mean from exact integer channel sums: a float32 f.mean() changed with numpy's summation
    # order (2.2 vs 2.4), and with it every pixel of the image
    sums = img.reshape(-1, 3).sum(0, dtype=np.int64)
    mean = sum(float(g) * int(n) for g, n in zip(gain, sums, strict=True)) / img.size
    f = (f - mean) * rng.uniform(0.6, 1.3) + mean
    if rng.random() < 0.5:
        along_x = rng.random() < 0.5
        g = np.linspace(*rng.uniform(0.5, 1.3, 2), w if along_x else h, dtype=np.float32)
        f *= g[None, :, None] if along_x else g[:, None, None]
    if rng.random() < 0.4:
        f += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 10)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.1:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.2))
    out = np.round(np.asarray(boxes, np.float32).reshape(-1, 4), 2)
    return img, np.clip(out, 0, [w, h, w, h]).astype(np.float32), _landmarks(points, h, w)


def _landmarks(points: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """(N, 5, 2) float32 rounded to 0.01 px; a point outside the image is absent (NaN), as every
    reader and augmentation treats a point cut off by the border (faces are placed inside the
    image, so this is a guard, not a case that occurs)."""
    lm = np.round(np.asarray(points, np.float64).reshape(-1, 5, 2), 2)
    lm[(lm < 0).any(2) | (lm > [w, h]).any(2)] = np.nan
    return lm.astype(np.float32)
