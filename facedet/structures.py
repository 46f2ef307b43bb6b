"""Box conversions and the data types that pass between the data pipeline, the model and the engine.

Sample (a dataset item before transforms), see docs/ARCHITECTURE.md:
    image      HxWx3 uint8 RGB (numpy)
    boxes      Nx4 float32 xyxy in pixels
    labels     N int64 (0 = face)
    ignore     N bool: faces neither rewarded nor punished (WIDER invalid, below the minimum size)
    landmarks  Nx5x2 float32, NaN where absent
    image_id   str
    orig_size  (H, W)

After transforms a dataset item is ``{"image": float tensor 3xSxS in [0, 1], "target": Target,
"meta": Meta}`` with boxes in input pixels. A batch is ``{"images": Bx3xSxS, "targets": [Target],
"metas": [Meta]}``.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch
from torch import Tensor

# Image file suffixes facedet reads (everything OpenCV decodes that face data sets use), lower case:
# the one list for data folders, evaluation image ids, tools/detect.py and the runtime's inputs.
from facedet_runtime.sources import IMAGE_SUFFIXES  # noqa: F401  (facedet's modules import it from here)


class Sample(TypedDict):
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    landmarks: np.ndarray
    image_id: str
    orig_size: tuple[int, int]


class Target(TypedDict):
    boxes: Tensor  # Nx4 float32 xyxy, input pixels
    labels: Tensor  # N int64
    ignore: Tensor  # N bool
    landmarks: Tensor  # Nx5x2 float32, NaN where absent


class Meta(TypedDict):
    image_id: str
    orig_size: tuple[int, int]  # (H, W) of the original image
    ratio: float  # input pixels per original pixel (letterbox scale)
    pad: tuple[float, float]  # (left, top) padding in input pixels


def empty_sample_arrays(n: int = 0) -> dict[str, np.ndarray]:
    """Correctly typed empty (or NaN-filled) arrays for a Sample with ``n`` faces."""
    return {
        "boxes": np.zeros((n, 4), np.float32),
        "labels": np.zeros((n,), np.int64),
        "ignore": np.zeros((n,), bool),
        "landmarks": np.full((n, 5, 2), np.nan, np.float32),
    }


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """Top-left width height (COCO, WIDER) to corners."""
    b = np.asarray(b, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def boxes_to_original(boxes: Tensor, meta: Meta) -> Tensor:
    """Map xyxy boxes from letterboxed input pixels back to original image pixels (clipped)."""
    left, top = meta["pad"]
    r = meta["ratio"]
    h, w = meta["orig_size"]
    out = boxes.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - left) / r).clamp(0, w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - top) / r).clamp(0, h)
    return out
