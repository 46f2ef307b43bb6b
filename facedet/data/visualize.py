"""Draw a batch of training samples as one image grid: faces in green, ignored faces in orange,
landmarks as dots. ``tools/show_batch.py`` writes it as a PNG; training sends the same grid to
TensorBoard at its first step, so what the model is fed can be checked before any epoch finishes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

FACE = (0, 220, 0)  # RGB
IGNORED = (255, 140, 0)
LANDMARK = (255, 0, 255)


def draw_sample(image: torch.Tensor | np.ndarray, target: dict[str, Any]) -> np.ndarray:
    """One HxWx3 uint8 RGB image with its ``target`` drawn (``image`` 3xHxW float in [0, 1] or uint8 HWC)."""
    if isinstance(image, torch.Tensor):
        img = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    else:
        img = np.asarray(image, np.uint8)
    img = np.ascontiguousarray(img)
    boxes = np.asarray(torch.as_tensor(target["boxes"]).cpu(), np.float32).reshape(-1, 4)
    ignore = np.asarray(torch.as_tensor(target["ignore"]).cpu(), bool).reshape(-1)
    lms = np.asarray(torch.as_tensor(target["landmarks"]).cpu(), np.float32).reshape(-1, 5, 2)
    for box, ign, lm in zip(boxes, ignore, lms, strict=True):
        x1, y1, x2, y2 = np.round(box).astype(int).tolist()
        cv2.rectangle(img, (x1, y1), (x2, y2), IGNORED if ign else FACE, 1, cv2.LINE_8)  # exact colours
        for x, y in lm[np.isfinite(lm).all(1)]:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, LANDMARK, -1)
    return img


def make_grid(images: Sequence[np.ndarray], *, cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile equally sized HxWx3 images into one (white gaps)."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to tile")
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = images[0].shape[:2]
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return grid


def batch_grid(batch: dict[str, Any], *, max_images: int = 16) -> np.ndarray:
    """The grid of a collated batch ``{"images", "targets"}`` (at most ``max_images``)."""
    n = min(len(batch["images"]), max_images)
    return make_grid([draw_sample(batch["images"][i], batch["targets"][i]) for i in range(n)])


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 image as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())
    return path
