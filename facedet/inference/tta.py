"""Test-time augmentation: horizontal flip and multi-scale, merged before one NMS.

Each pass runs the detector on a (flipped and/or resized) copy of the letterboxed batch; its
decoded candidates (``Detector.candidates``) are mapped back to the input's pixels and all passes'
candidates go through the model's own post-processing (``Detector.postprocess``) together, so the
NMS variant and thresholds are those of the config (as YOLOv5's TTA). Rescaling resizes the
letterboxed tensor (bilinear) to the nearest multiple of the largest stride, rather than
re-reading the image at each size: one loader serves every scale.

Landmarks (a model with ``num_landmarks`` 5) are mapped back like the boxes; a mirrored pass also
swaps the left and right points (left eye <-> right eye, left mouth corner <-> right mouth corner),
because "left" is the image's left and the mirror made the face's right eye the image's left one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.registry import ConfigError, closest

TTA_MODES = ("none", "flip", "multiscale", "flip_multiscale")
DEFAULT_SCALES = (0.75, 1.0, 1.25)
# The order of the five points after a horizontal mirror: left eye, right eye, nose, left mouth
# corner, right mouth corner -> the mirrored image's points in the same order.
FLIP_POINT_ORDER = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class TTA:
    """``flip``: add a mirrored pass; ``scales``: input size factors (1.0 = the test size)."""

    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    mode: str = field(default="none", compare=False)

    @classmethod
    def from_mode(cls, mode: str = "none", scales: Sequence[float] = DEFAULT_SCALES) -> TTA:
        """``none``, ``flip``, ``multiscale`` (``scales``) or ``flip_multiscale``."""
        mode = str(mode)
        if mode not in TTA_MODES:
            guess = closest(mode, list(TTA_MODES))
            raise ConfigError(
                f"Unknown TTA mode '{mode}' at 'eval.tta'. Known: {', '.join(TTA_MODES)}."
                + (f" Did you mean '{guess}'?" if guess else "")
            )
        multi = mode in ("multiscale", "flip_multiscale")
        use = tuple(float(s) for s in scales) if multi else (1.0,)
        if not use or any(s <= 0 for s in use):
            raise ConfigError(f"'eval.tta_scales' must be positive factors, got {list(scales)}")
        return cls(flip=mode in ("flip", "flip_multiscale"), scales=use, mode=mode)

    @property
    def active(self) -> bool:
        return self.flip or self.scales != (1.0,)

    def describe(self) -> dict[str, Any]:
        """What is recorded next to the numbers."""
        return {"mode": self.mode, "flip": self.flip, "scales": list(self.scales)}


def resize_to_stride(images: Tensor, scale: float, stride: int) -> Tensor:
    """``images`` resized by ``scale`` (bilinear), each side rounded to a multiple of ``stride``."""
    h, w = images.shape[-2:]
    size = (max(stride, round(h * scale / stride) * stride), max(stride, round(w * scale / stride) * stride))
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def unflip_landmarks(points: Tensor, width: int) -> Tensor:
    """Points ``(B, N, 5, 2)`` predicted on a mirrored image of ``width`` -> the unmirrored image's:
    x -> width - x, and the left and right points swap (``FLIP_POINT_ORDER``)."""
    if points.shape[-2] != len(FLIP_POINT_ORDER):
        raise ValueError(f"flip TTA knows the order of 5 points, got {points.shape[-2]}")
    points = points[..., list(FLIP_POINT_ORDER), :]
    return torch.stack((width - points[..., 0], points[..., 1]), -1)


def decode_candidates(model: nn.Module, images: Tensor, tta: TTA) -> tuple[Tensor, Tensor, Tensor | None]:
    """Pre-NMS candidates (``model.candidates``) of every TTA pass, in the pixels of ``images``:
    boxes ``(B, N, 4)`` xyxy, scores ``(B, N)`` and landmarks ``(B, N, K, 2)`` (None without)."""
    h, w = images.shape[-2:]
    stride = model.max_stride
    all_boxes, all_scores, all_points = [], [], []
    for scale in tta.scales:
        x = resize_to_stride(images, scale, stride)
        sy, sx = x.shape[-2] / h, x.shape[-1] / w
        for flipped in (False, True) if tta.flip else (False,):
            boxes, scores, points = model.candidates(x.flip(-1) if flipped else x)
            if flipped:  # mirror back: x -> width - x, and left and right swap
                boxes = torch.stack((x.shape[-1] - boxes[..., 2], boxes[..., 1],
                                     x.shape[-1] - boxes[..., 0], boxes[..., 3]), -1)
                points = None if points is None else unflip_landmarks(points, x.shape[-1])
            all_boxes.append(boxes / boxes.new_tensor([sx, sy, sx, sy]))
            all_scores.append(scores)
            if points is not None:
                all_points.append(points / points.new_tensor([sx, sy]))
    points = torch.cat(all_points, 1) if all_points else None
    return torch.cat(all_boxes, 1), torch.cat(all_scores, 1), points


@torch.no_grad()
def predict_with_tta(model: nn.Module, images: Tensor, tta: TTA | None = None) -> list[dict[str, Tensor]]:
    """``model.predict(images)`` with test-time augmentation: per image ``{boxes (M, 4) xyxy in
    the pixels of images, scores (M,), labels (M,)}`` (and ``landmarks (M, K, 2)`` from a landmark
    model) after the model's post-processing."""
    if tta is None or not tta.active:
        return model.predict(images)
    return model.postprocess(*decode_candidates(model, images, tta))
