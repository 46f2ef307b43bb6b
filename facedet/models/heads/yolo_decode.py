"""YOLO box decoding shared by the head's ``predict`` path and the loss, so the two cannot drift.

Raw maps are ``(B, A, H, W, 5 + 2K)``: ``tx, ty, tw, th, tobj`` per anchor and cell, then K
landmark points ``(px1, py1, ..., pxK, pyK)`` when the head predicts them (``num_landmarks``).

Centres use YOLOv4's grid-sensitive form ``(sigmoid(t) * s - (s - 1) / 2 + grid) * stride`` where
``s = scale_x_y``: with s > 1 a centre can reach the cell border (and with s = 2 the neighbouring
cells, which the ``near_cells`` assignment relies on).

Sizes: ``wh_mode="exp"`` is YOLOv3/v4's ``anchor * exp(t)`` (clamped so early training cannot
overflow to inf and give NaN IoUs); ``wh_mode="sigmoid"`` is scaled-YOLOv4's
``anchor * (2 * sigmoid(t)) ** 2``, bounded to 4x the anchor, steadier when training from scratch.

Landmarks are decoded relative to the anchor like the box, linearly as in yolov5-face:
``point = t * anchor_wh + (grid + 0.5) * stride``. Unlike yolov5-face (which adds the cell's top-left
corner) the reference is the cell *centre*, so a zero output (the initial bias) puts every point at
the centre of the face's cell rather than at a corner, and a mirrored image mirrors the reference.
Linear (no sigmoid or exp): points may lie outside the box and the cell, and the loss gradient does
not vanish for far points.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

WH_MODES = ("exp", "sigmoid")
_EXP_CLAMP = 6.0  # exp(6) ~ 400x the anchor: far beyond any useful box, finite in fp16


def parse_anchors(anchors: Sequence[Sequence[float]]) -> Tensor:
    """Anchors per level as flat ``[w1, h1, w2, h2, ...]`` lists (input pixels) -> ``(L, A, 2)``."""
    levels = [list(map(float, a)) for a in anchors]
    if not levels or any(len(a) % 2 or len(a) == 0 for a in levels):
        raise ValueError(f"anchors must be per-level lists of w,h pairs, got {anchors!r}")
    if len({len(a) for a in levels}) != 1:
        raise ValueError(f"every level needs the same number of anchors, got {anchors!r}")
    t = torch.tensor(levels, dtype=torch.float32).view(len(levels), -1, 2)
    if (t <= 0).any():
        raise ValueError(f"anchor sizes must be positive, got {anchors!r}")
    return t


def make_grid(h: int, w: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """``(H, W, 2)`` cell offsets ``(x, y)``."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack((xs, ys), -1)


def decode_xy(t_xy: Tensor, grid: Tensor, stride: float, scale_x_y: float) -> Tensor:
    """Centres in input pixels from raw ``t_xy`` (``..., 2``) and the matching grid offsets."""
    return (t_xy.sigmoid() * scale_x_y - (scale_x_y - 1) / 2 + grid) * stride


def decode_wh(t_wh: Tensor, anchor_wh: Tensor, wh_mode: str) -> Tensor:
    """Box sizes in input pixels from raw ``t_wh`` and anchor sizes broadcastable to it."""
    if wh_mode == "exp":
        return t_wh.clamp(max=_EXP_CLAMP).exp() * anchor_wh
    if wh_mode == "sigmoid":
        return (2 * t_wh.sigmoid()) ** 2 * anchor_wh
    raise ValueError(f"wh_mode must be one of {WH_MODES}, got {wh_mode!r}")


def decode_points(t_points: Tensor, grid: Tensor, anchor_wh: Tensor, stride: float) -> Tensor:
    """Landmark points in input pixels from raw ``(..., K, 2)`` offsets, the grid offsets
    ``(..., 1, 2)`` and anchor sizes broadcastable to it: ``t * anchor_wh + (grid + 0.5) * stride``."""
    return t_points * anchor_wh + (grid + 0.5) * stride


def decode_level(
    raw: Tensor, anchors: Tensor, stride: float, scale_x_y: float, wh_mode: str, num_landmarks: int = 0
) -> Tensor:
    """Decode one level's raw map ``(B, A, H, W, >= 5 + 2K)`` with its anchors ``(A, 2)``.

    Returns ``(B, A, H, W, 5 + 2K)``: centre x, centre y, width, height (input pixels), the raw
    objectness logit, then the K points ``x1, y1, ..., xK, yK`` in input pixels.
    """
    _, a, h, w, _ = raw.shape
    grid = make_grid(h, w, raw.device, raw.dtype)  # (H, W, 2) broadcasts over (B, A)
    anchor_wh = anchors.to(raw).view(1, a, 1, 1, 2)
    xy = decode_xy(raw[..., 0:2], grid, stride, scale_x_y)
    wh = decode_wh(raw[..., 2:4], anchor_wh, wh_mode)
    if not num_landmarks:  # the box-only decoding, unchanged (bit-identical to models without points)
        return torch.cat((xy, wh, raw[..., 4:5]), -1)
    t_points = raw[..., 5 : 5 + 2 * num_landmarks].unflatten(-1, (num_landmarks, 2))
    points = decode_points(t_points, grid.unsqueeze(-2), anchor_wh.unsqueeze(-2), stride)
    return torch.cat((xy, wh, raw[..., 4:5], points.flatten(-2)), -1)
