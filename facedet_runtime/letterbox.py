"""Letterboxing: fit an image into a size x size square keeping its aspect ratio, and map the
model's boxes and points back to the image's pixels.

This is the one letterbox of the project: facedet's data pipeline (``facedet.data.transforms.Letterbox``)
calls ``letterbox_shape`` and ``letterbox_image`` from here, so training, evaluation, the PyTorch
``Predictor`` and this runtime see the same pixels, and an exported model is fed what it was trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

LETTERBOX_PAD = 128  # grey of the letterbox border (and of mosaic's empty canvas)


def letterbox_shape(h: int, w: int, size: int) -> tuple[float, int, int, int, int]:
    """(ratio, resized h, resized w, pad left, pad top) for fitting an HxW image into size x size."""
    r = size / max(h, w)
    nh, nw = max(1, int(round(h * r))), max(1, int(round(w * r)))
    return r, nh, nw, (size - nw) // 2, (size - nh) // 2


def letterbox_image(image: np.ndarray, size: int, pad_value: int = LETTERBOX_PAD
                    ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``image`` (HxWxC) resized so its long side is ``size`` and padded centred to size x size with
    ``pad_value``: (letterboxed image, ratio, (pad left, pad top)). Shrinking uses INTER_AREA (it
    averages, which helps dark and noisy images), enlarging INTER_LINEAR."""
    h, w = image.shape[:2]
    r, nh, nw, left, top = letterbox_shape(h, w, size)
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    pad = (int(pad_value),) * 3
    out = cv2.copyMakeBorder(image, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT, value=pad)
    return out, float(r), (left, top)


def boxes_to_original(boxes: np.ndarray, ratio: float, pad: tuple[float, float],
                      orig_size: tuple[int, int]) -> np.ndarray:
    """(K, 4) xyxy boxes from letterboxed input pixels back to the original image's pixels, clipped
    to the image (the inverse of ``letterbox_image``; ``orig_size`` is (h, w))."""
    left, top = pad
    h, w = orig_size
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - np.float32(left)) / np.float32(ratio), 0, w)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - np.float32(top)) / np.float32(ratio), 0, h)
    return out


def points_to_original(points: np.ndarray, ratio: float, pad: tuple[float, float]) -> np.ndarray:
    """(K, P, 2) points from letterboxed input pixels back to original pixels, not clipped: a point of
    a face cut by the border may lie outside the image, and clipping would move it."""
    shift = np.array(pad, dtype=np.float32)
    return ((np.asarray(points, dtype=np.float32) - shift) / np.float32(ratio)).astype(np.float32)
