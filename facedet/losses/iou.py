"""IoU-family box similarities and losses, thin wrappers over ``torchvision.ops``.

CIoU (Zheng et al., 2020) = IoU - rho^2 / c^2 - alpha * v, where rho is the distance between the box
centres, c the diagonal of the smallest enclosing box, v = 4 / pi^2 * (atan(w_gt / h_gt) -
atan(w / h))^2 the aspect-ratio term and alpha = v / (1 - IoU + v) its (gradient-free) weight.
DIoU drops the alpha * v term; GIoU (Rezatofighi et al., 2019) = IoU - (C - U) / C with C the
enclosing box's area and U the union.

Degenerate boxes are made safe before torchvision sees them (``_prepared``):
- every pair is translated to its enclosing box's corner and scaled so that box's longest side is
  ``_UNIT`` (a detached shift and scale). The measures are invariant to both, so values and
  gradients are those of the original boxes, but areas stay below 2^20 (huge coordinates, 1e20, no
  longer overflow them to inf - inf = NaN) and torchvision's ``eps`` (1e-7) no longer swamps
  sub-pixel boxes (two identical 1e-4 px boxes had IoU 0.09);
- every side is kept at least ``_MIN_SIDE`` px and ``_MIN_SIDE_REL`` of the pair's size, so the
  ``w / h`` of CIoU is never 0/0. Applied after the shift: at 5000 px ``x1 + 1e-4 == x1`` in
  float32, so a floor on raw coordinates gave zero-width boxes and NaN there. Boxes with
  ``x2 < x1`` (a bad prediction) become that minimal box at ``x1``.
Inputs must be finite; fp16 / bf16 inputs are computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

_MIN_SIDE = 1e-4  # pixels: far below any face; bounds the gradient (~1 / side) of sub-pixel boxes
_MIN_SIDE_REL = 1e-6  # of the pair's enclosing box: representable next to its far side in float32
# pairs are scaled so their enclosing box's longest side is this: areas stay far below overflow and
# far above torchvision's fixed eps = 1e-7 (which it does not let callers change for the IoU part)
_UNIT = 1024.0
_LOSSES: dict[str, Callable[..., Tensor]] = {
    "ciou": complete_box_iou_loss,
    "diou": distance_box_iou_loss,
    "giou": generalized_box_iou_loss,
}


def _prepared(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Both boxes shifted and scaled into a ``_UNIT`` square (their enclosing box), sides floored."""
    with torch.no_grad():  # a constant shift and scale: the measures do not depend on them
        both = torch.stack((pred, target))
        lo = torch.minimum(both[..., :2], both[..., 2:]).amin(0)
        hi = torch.maximum(both[..., :2], both[..., 2:]).amax(0)
        scale = (hi - lo).amax(-1, keepdim=True).clamp(min=_MIN_SIDE) / _UNIT
        shift = torch.cat((lo, lo), -1)
        min_side = (_MIN_SIDE / scale).clamp(min=_MIN_SIDE_REL * _UNIT)

    def norm(b: Tensor) -> Tensor:
        b = (b - shift) / scale
        return torch.cat((b[..., :2], torch.maximum(b[..., 2:], b[..., :2] + min_side)), -1)

    return norm(pred), norm(target)


def box_similarity(pred_xyxy: Tensor, target_xyxy: Tensor, kind: str = "ciou") -> Tensor:
    """Elementwise ``kind`` (``ciou``, ``diou`` or ``giou``) of two equally shaped ``(..., 4)`` xyxy
    box tensors (at most 1), in at least float32; the result has the inputs' leading shape."""
    if kind not in _LOSSES:
        raise ValueError(f"kind must be one of {sorted(_LOSSES)}, got {kind!r}")
    if pred_xyxy.shape != target_xyxy.shape:
        raise ValueError(
            f"{kind} needs equal shapes, got {tuple(pred_xyxy.shape)} and {tuple(target_xyxy.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(pred_xyxy.dtype, target_xyxy.dtype), torch.float32)
    p, t = _prepared(pred_xyxy.to(dtype), target_xyxy.to(dtype))
    return 1.0 - _LOSSES[kind](p, t, reduction="none")


def ciou(pred_xyxy: Tensor, target_xyxy: Tensor) -> Tensor:
    """Elementwise Complete-IoU (see ``box_similarity``)."""
    return box_similarity(pred_xyxy, target_xyxy, "ciou")


def diou(pred_xyxy: Tensor, target_xyxy: Tensor) -> Tensor:
    """Elementwise Distance-IoU (see ``box_similarity``)."""
    return box_similarity(pred_xyxy, target_xyxy, "diou")


def giou(pred_xyxy: Tensor, target_xyxy: Tensor) -> Tensor:
    """Elementwise Generalized IoU (see ``box_similarity``)."""
    return box_similarity(pred_xyxy, target_xyxy, "giou")


def ciou_loss(pred_xyxy: Tensor, target_xyxy: Tensor, *, reduction: str = "none") -> Tensor:
    """``1 - CIoU`` per box pair (``reduction="none"``), or its ``"mean"`` / ``"sum"``.

    The mean of an empty input is 0 and keeps a gradient path, so a batch without faces still
    back-propagates.
    """
    loss = 1.0 - ciou(pred_xyxy, target_xyxy)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(loss.numel(), 1)
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
