"""Soft-NMS (Bodla et al., 2017): instead of removing boxes that overlap a kept one, lower their
scores, so a face partly hidden behind another keeps a (reduced) score rather than vanishing.

torchvision has no soft-NMS, so it is written here: a loop over the kept boxes (at most
``max_det`` iterations), each step vectorised over the candidates.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from facedet.postprocess.nms import _NMSBase
from facedet.registry import POSTPROCESSORS

SOFT_NMS_METHODS = ("gaussian", "linear")


@POSTPROCESSORS.register("soft_nms")
class SoftNMS(_NMSBase):
    """Soft-NMS with the arguments of ``DIoUNMS`` plus ``method`` and ``sigma``.

    Each step keeps the highest-scoring remaining box and multiplies the scores of the others by
    ``exp(-IoU^2 / sigma)`` (``gaussian``; ``nms_iou`` unused) or by ``1 - IoU`` where IoU
    exceeds ``nms_iou`` (``linear``). Boxes whose score falls to ``score_thresh`` or below are
    dropped; outputs carry the decayed scores, sorted descending. Landmarks are carried, not decayed.
    """

    def __init__(
        self,
        *,
        method: str = "gaussian",
        sigma: float = 0.5,
        score_thresh: float = 0.001,
        nms_iou: float = 0.6,
        max_det: int = 300,
        pre_nms_topk: int = 3000,
        landmark_vote_iou: float = 0.0,
    ) -> None:
        # the arguments are spelled out (not **kwargs) so the registry can name a mistyped key
        super().__init__(score_thresh=score_thresh, nms_iou=nms_iou, max_det=max_det, pre_nms_topk=pre_nms_topk,
                         landmark_vote_iou=landmark_vote_iou)
        if method not in SOFT_NMS_METHODS:
            raise ValueError(f"soft_nms method must be one of {SOFT_NMS_METHODS}, got {method!r}")
        if sigma <= 0:
            raise ValueError(f"soft_nms sigma must be positive, got {sigma}")
        self.method = method
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", method={self.method!r}, sigma={self.sigma})"

    def single(self, boxes: Tensor, scores: Tensor, landmarks: Tensor | None = None) -> dict[str, Tensor]:
        boxes, scores, landmarks = self.candidates(boxes, scores, landmarks)
        iou = box_iou(boxes, boxes)
        live = scores.clone()
        alive = torch.ones_like(scores, dtype=torch.bool)
        kept, kept_scores = [], []
        for _ in range(min(self.max_det, scores.numel())):
            i = int(torch.where(alive, live, torch.full_like(live, -1.0)).argmax())
            if not alive[i]:
                break
            kept.append(i)
            kept_scores.append(live[i].clone())
            alive[i] = False
            if self.method == "gaussian":
                live = live * torch.exp(-(iou[i] ** 2) / self.sigma)
            else:
                live = live * torch.where(iou[i] > self.nms_iou, 1 - iou[i], torch.ones_like(iou[i]))
            alive &= live > self.score_thresh
        idx = torch.tensor(kept, dtype=torch.int64, device=boxes.device)
        out_scores = torch.stack(kept_scores) if kept_scores else scores.new_zeros(0)
        return self.finish(boxes, scores, landmarks, idx, out_scores)
