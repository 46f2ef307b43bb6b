"""Geometric rendering shared by mosaic, random affine and random scale-crop.

Why our own (cv2 + numpy) rather than albumentations' Affine / crops: a mosaic needs four images
scaled and placed into one output, and albumentations transforms keep the input size (the mosaic
canvas would be warped at 4x the output area, then cropped). Here each source image is cropped to
the part that will be visible and resized once, straight into the S x S output (INTER_AREA when
shrinking, INTER_LINEAR when enlarging), so the work is proportional to the output and the letterbox
scale, the random scale and the placement cost a single interpolation. Boxes and landmarks move
with exactly the mapping the pixels got.

After placement, ``finish_targets`` clips boxes to the output; a face cut off so that less than
``min_visible`` of it remains becomes ``ignore`` (neither a positive nor a negative); a face
entirely outside the output is removed (it is not in the image any more).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def paste_scaled(
    out: np.ndarray, image: np.ndarray, fx: float, fy: float, x0: float, y0: float
) -> tuple[float, float, float, float]:
    """Paste ``image`` scaled by (fx, fy) with its top-left corner at output (x0, y0); only the part
    inside ``out`` is resized. Returns the exact mapping used, ``(sx, sy, ox, oy)``: a source point
    (x, y) (pixel-corner coordinates) lands at (ox + sx * x, oy + sy * y)."""
    s_h, s_w = out.shape[:2]
    h, w = image.shape[:2]
    # visible source range (whole pixels, so the crop is a plain slice)
    a = max(0, math.floor(-x0 / fx))
    b = min(w, math.ceil((s_w - x0) / fx))
    c = max(0, math.floor(-y0 / fy))
    d = min(h, math.ceil((s_h - y0) / fy))
    # Shrinking: average k x k blocks first (INTER_AREA's integer fast path: 0.04 ms where a
    # non-integer INTER_AREA takes 0.7-4.5 ms), then bilinear for the remaining factor in (0.5, 1]
    # (YOLOv5 trains with bilinear only). The crop becomes whole k x k blocks for that.
    k = max(1, min(math.floor(1 / fx), math.floor(1 / fy)))
    if k > 1:
        b = a + (min(w, a + k * math.ceil((b - a) / k)) - a) // k * k
        d = c + (min(h, c + k * math.ceil((d - c) / k)) - c) // k * k
    if b <= a or d <= c:  # nothing visible: the targets still map (and are then removed)
        return fx, fy, x0, y0
    ow, oh = max(1, round((b - a) * fx)), max(1, round((d - c) * fy))
    left, top = round(x0 + a * fx), round(y0 + c * fy)
    crop = image[c:d, a:b]
    if k > 1:
        crop = cv2.resize(crop, ((b - a) // k, (d - c) // k), interpolation=cv2.INTER_AREA)
    if crop.shape[:2] != (oh, ow):
        crop = cv2.resize(crop, (ow, oh), interpolation=cv2.INTER_LINEAR)
    u0, v0 = max(left, 0), max(top, 0)
    u1, v1 = min(left + ow, s_w), min(top + oh, s_h)
    if u1 > u0 and v1 > v0:
        out[v0:v1, u0:u1] = crop[v0 - top : v1 - top, u0 - left : u1 - left]
    sx, sy = ow / (b - a), oh / (d - c)
    return sx, sy, left - a * sx, top - c * sy


def map_targets(sample: dict[str, Any], mapping: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
    """Boxes and landmarks of ``sample`` moved by a ``paste_scaled`` mapping (float32)."""
    sx, sy, ox, oy = mapping
    boxes = sample["boxes"].astype(np.float64) * [sx, sy, sx, sy] + [ox, oy, ox, oy]
    lm = sample["landmarks"].astype(np.float64) * [sx, sy] + [ox, oy]
    return {"boxes": boxes, "landmarks": lm, "labels": sample["labels"], "ignore": sample["ignore"]}


def concat_targets(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {
        "boxes": np.concatenate([p["boxes"].reshape(-1, 4) for p in parts]),
        "landmarks": np.concatenate([p["landmarks"].reshape(-1, 5, 2) for p in parts]),
        "labels": np.concatenate([np.asarray(p["labels"], np.int64).reshape(-1) for p in parts]),
        "ignore": np.concatenate([np.asarray(p["ignore"], bool).reshape(-1) for p in parts]),
    }


def absent_outside(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A copy of ``landmarks`` (N, 5, 2) with the points outside an ``(H, W)`` image made absent
    (NaN): a point with no pixels under it cannot be learnt from that image (yolov5-face's rule too)."""
    h, w = size
    lm = np.array(landmarks, dtype=np.result_type(landmarks, np.float32)).reshape(-1, 5, 2)
    with np.errstate(invalid="ignore"):  # NaN compares False: absent points stay absent
        outside = (lm[..., 0] < 0) | (lm[..., 0] > w) | (lm[..., 1] < 0) | (lm[..., 1] > h)
    lm[outside] = np.nan
    return lm


def finish_targets(
    targets: dict[str, np.ndarray], size: tuple[int, int], *, min_visible: float
) -> dict[str, np.ndarray]:
    """Clip to the ``(H, W)`` output; faces less than ``min_visible`` visible become ignore; faces
    with nothing visible are removed; landmarks outside the output become absent (NaN)."""
    h, w = size
    boxes = targets["boxes"].astype(np.float64).reshape(-1, 4)
    clipped = np.clip(boxes, 0, [w, h, w, h])
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = (cw > 0) & (ch > 0)
    visible = np.where(area > 0, cw * ch / np.maximum(area, 1e-12), 0.0)
    ignore = np.asarray(targets["ignore"], bool) | (visible < min_visible)
    lm = absent_outside(targets["landmarks"].astype(np.float32), size)
    return {
        "boxes": clipped[keep].astype(np.float32),
        "landmarks": lm[keep],
        "labels": np.asarray(targets["labels"], np.int64)[keep],
        "ignore": ignore[keep],
    }


def rotation_shear_matrix(size: tuple[int, int], degrees: float, shear: float) -> np.ndarray:
    """2x3 matrix rotating by ``degrees`` and shearing by ``shear`` degrees (x and y) about the
    centre of an ``(H, W)`` image."""
    h, w = size
    c = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D((0, 0), degrees, 1.0)
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(shear))
    back = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]], np.float64)
    return (back @ sh @ r @ c)[:2]


def warp_targets(targets: dict[str, np.ndarray], m: np.ndarray) -> dict[str, np.ndarray]:
    """Boxes (the box around the 4 transformed corners) and landmarks through the 2x3 matrix ``m``."""
    b = targets["boxes"].astype(np.float64).reshape(-1, 4)
    corners = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
    pts = corners @ m[:, :2].T + m[:, 2]
    boxes = np.concatenate([pts.min(1), pts.max(1)], 1)
    lm = targets["landmarks"].astype(np.float64) @ m[:, :2].T + m[:, 2]
    return targets | {"boxes": boxes, "landmarks": lm}


def warp_image(image: np.ndarray, m: np.ndarray, pad_value: int) -> np.ndarray:
    """``image`` through the 2x3 matrix ``m`` (pixel-corner coordinates), same size, padded."""
    h, w = image.shape[:2]
    # cv2 maps pixel centres: shift by half a pixel either side so corners map as the boxes do
    t = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    mc = (np.linalg.inv(t) @ np.vstack([m, [0, 0, 1]]) @ t)[:2]
    return cv2.warpAffine(image, mc, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(pad_value,) * 3)


def random_affine_params(
    rng: np.random.Generator, *, scale: float, translate: float, degrees: float, shear: float
) -> tuple[float, float, float, float, float]:
    """(scale gain, x shift, y shift as fractions of the output, rotation, shear in degrees)."""
    s = rng.uniform(1 - scale, 1 + scale)
    tx, ty = rng.uniform(-translate, translate, 2)
    return float(s), float(tx), float(ty), float(rng.uniform(-degrees, degrees)), float(rng.uniform(-shear, shear))


def render_single(
    sample: dict[str, Any], size: int, gain: float, shift: tuple[float, float], pad_value: int
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[float, float, float, float]]:
    """Letterbox ``sample`` to ``size`` (long side), scale by ``gain`` about the output centre and
    shift by ``shift`` (pixels), in one resize. Returns (image, mapped targets, mapping)."""
    img = sample["image"]
    h, w = img.shape[:2]
    f = size / max(h, w) * gain
    x0 = size / 2 + shift[0] - w * f / 2
    y0 = size / 2 + shift[1] - h * f / 2
    out = np.full((size, size, 3), pad_value, np.uint8)
    mapping = paste_scaled(out, img, f, f, x0, y0)
    return out, map_targets(sample, mapping), mapping


def apply_rotation_shear(
    image: np.ndarray, targets: dict[str, np.ndarray], degrees: float, shear: float, pad_value: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rotate/shear image and targets about the image centre (no-op for 0, 0). Points outside the
    image become absent first: the warp would carry them into its corners, onto pad pixels."""
    if not degrees and not shear:
        return image, targets
    m = rotation_shear_matrix(image.shape[:2], degrees, shear)
    targets = targets | {"landmarks": absent_outside(targets["landmarks"], image.shape[:2])}
    return warp_image(image, m, pad_value), warp_targets(targets, m)
