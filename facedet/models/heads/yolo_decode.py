"""YOLO box decoding shared by the head's ``predict`` path and the loss, so the two cannot drift.

Raw maps are ``(B, A, H, W, 5)``: ``tx, ty, tw, th, tobj`` per anchor and cell.

Centres use YOLOv4's grid-sensitive form ``(sigmoid(t) * s - (s - 1) / 2 + grid) * stride`` where
``s = scale_x_y``: with s > 1 a centre can reach the cell border (and with s = 2 the neighbouring
cells, which the ``near_cells`` assignment relies on).

Sizes: ``wh_mode="exp"`` is YOLOv3/v4's ``anchor * exp(t)`` (clamped so early training cannot
overflow to inf and give NaN IoUs); ``wh_mode="sigmoid"`` is scaled-YOLOv4's
``anchor * (2 * sigmoid(t)) ** 2``, bounded to 4x the anchor, steadier when training from scratch.
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


def decode_level(raw: Tensor, anchors: Tensor, stride: float, scale_x_y: float, wh_mode: str) -> Tensor:
    """Decode one level's raw map ``(B, A, H, W, 5)`` with its anchors ``(A, 2)``.

    Returns ``(B, A, H, W, 5)``: centre x, centre y, width, height (input pixels) and the raw
    objectness logit.
    """
    _, a, h, w, _ = raw.shape
    grid = make_grid(h, w, raw.device, raw.dtype)  # (H, W, 2) broadcasts over (B, A)
    xy = decode_xy(raw[..., 0:2], grid, stride, scale_x_y)
    wh = decode_wh(raw[..., 2:4], anchors.to(raw).view(1, a, 1, 1, 2), wh_mode)
    return torch.cat((xy, wh, raw[..., 4:5]), -1)
