"""IoU-family box similarities and losses, thin wrappers over ``torchvision.ops``.

CIoU (Zheng et al., 2020) = IoU - rho^2 / c^2 - alpha * v, where rho is the distance between the box
centres, c the diagonal of the smallest enclosing box, v = 4 / pi^2 * (atan(w_gt / h_gt) -
atan(w / h))^2 the aspect-ratio term and alpha = v / (1 - IoU + v) its (gradient-free) weight.

torchvision's ``complete_box_iou_loss`` divides width by height, so boxes of zero height give NaN.
``ciou`` therefore keeps every side at least ``min_size`` (a no-op for any real face), which is the
usual source of "NaN loss early in training" when a decoded size underflows.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import complete_box_iou_loss

_MIN_SIZE = 1e-4  # input pixels: far below any face, far above float32 underflow


def _nondegenerate(b: Tensor, min_size: float) -> Tensor:
    """xyxy boxes with ``x2 >= x1 + min_size`` and ``y2 >= y1 + min_size`` (gradient kept elsewhere)."""
    lo = b[..., :2]
    hi = torch.maximum(b[..., 2:], lo + min_size)
    return torch.cat((lo, hi), -1)


def ciou(pred_xyxy: Tensor, target_xyxy: Tensor, *, min_size: float = _MIN_SIZE) -> Tensor:
    """Elementwise Complete-IoU of two equally shaped ``(..., 4)`` xyxy box tensors (at most 1).

    Computed in at least float32 (fp16 inputs from autocast are upcast) so the penalty terms do not
    lose precision; the result has the inputs' leading shape.
    """
    if pred_xyxy.shape != target_xyxy.shape:
        raise ValueError(
            f"ciou needs equal shapes, got {tuple(pred_xyxy.shape)} and {tuple(target_xyxy.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(pred_xyxy.dtype, target_xyxy.dtype), torch.float32)
    p = _nondegenerate(pred_xyxy.to(dtype), min_size)
    t = _nondegenerate(target_xyxy.to(dtype), min_size)
    return 1.0 - complete_box_iou_loss(p, t, reduction="none")


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
