"""Per-coordinate losses for facial landmark points (registry ``LANDMARK_LOSSES``).

Each is ``loss(pred, target) -> elementwise loss`` over matching tensors of point coordinates; the
YOLO loss selects the present points (absent ones are NaN in the targets and never reach these
functions) and averages. The YOLO loss passes coordinates in *anchor units* (pixels divided by the
width or height of the anchor that predicts the face), so a face's size does not change the scale
of its error.

- ``wing``: WingLoss (Feng et al., CVPR 2018, "Wing Loss for Robust Facial Landmark Localisation"),
  as yolov5-face uses it with ``w=10, e=2``: ``w * ln(1 + |x| / e)`` for ``|x| < w``, else
  ``|x| - C`` with ``C = w - w * ln(1 + w / e)`` so the two pieces meet. The log part gives small and
  medium errors a larger gradient than L1 (``w / (e + |x|)``, 5 at 0 for the defaults), which is
  what sharpens points once the face is found. Written here: neither torch nor torchvision (nor any
  maintained library we depend on) provides it.
- ``smooth_l1``: ``torch.nn.functional.smooth_l1_loss`` (RetinaFace's landmark loss), quadratic below
  ``beta``. RetinaFace's offsets are in tenths of the prior's size with beta 1; in anchor units that
  is ``beta=0.1``, the default here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from facedet.registry import LANDMARK_LOSSES


@LANDMARK_LOSSES.register("wing")
class WingLoss:
    """WingLoss with width ``w`` (where the log part ends) and curvature ``e`` (yolov5-face: 10, 2)."""

    def __init__(self, *, w: float = 10.0, e: float = 2.0) -> None:
        if w <= 0 or e <= 0:
            raise ValueError(f"wing loss needs w > 0 and e > 0, got w={w}, e={e}")
        self.w = float(w)
        self.e = float(e)
        self.c = self.w - self.w * math.log(1.0 + self.w / self.e)  # joins the two pieces at |x| = w

    def __repr__(self) -> str:
        return f"WingLoss(w={self.w}, e={self.e})"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        x = (pred - target).abs()
        return torch.where(x < self.w, self.w * torch.log1p(x / self.e), x - self.c)


@LANDMARK_LOSSES.register("smooth_l1")
class SmoothL1Loss:
    """Smooth-L1 (Huber with slope 1) with threshold ``beta`` between its quadratic and linear parts."""

    def __init__(self, *, beta: float = 0.1) -> None:
        if beta < 0:
            raise ValueError(f"smooth_l1 needs beta >= 0, got {beta}")
        self.beta = float(beta)

    def __repr__(self) -> str:
        return f"SmoothL1Loss(beta={self.beta})"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(pred, target, beta=self.beta, reduction="none")
