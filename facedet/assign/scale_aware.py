"""Scale-aware assignment: relax what counts as a positive anchor for small faces (issue 16).

Shape IoU does not depend on scale, but anchors are not spread evenly over scales: a face at or
below the smallest anchors has anchors on one side only, so fewer of them clear ``anchor_iou``
(with the facemask anchors a 4 px face matches 2, a 10 px face 5), and small objects are the ones
that get the fewest positive samples. ATSS (Zhang et al., 2020) and the small-object literature
answer by relaxing the assignment for them. Here a face whose size
``sqrt(w * h)`` in input pixels (COCO's size measure, the one ``AP50_tiny`` buckets by) is below
``small_size`` is matched

- with ``small_anchor_iou`` (lower than ``anchor_iou``) instead of ``anchor_iou``, and
- to its ``small_topk`` best anchors by shape IoU whatever their IoU (0: not used),

on top of everything the YOLOv4 rule gives it (the best anchor, ``near_cells``). Faces at or
above ``small_size`` are matched exactly as by ``yolov4``. Matches are by shape only, so the
extra anchors may sit on coarser levels; the cell is still the one holding the face centre.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facedet.assign.yolo_assigner import DEFAULT_ANCHOR_IOU, YOLOv4Assigner, wh_iou
from facedet.registry import ASSIGNERS


@ASSIGNERS.register("scale_aware")
class ScaleAwareAssigner(YOLOv4Assigner):
    """``yolov4`` assignment with more positives for faces smaller than ``small_size`` (module docstring).

    ``small_size``: faces with ``sqrt(w * h)`` below this many input pixels are "small";
    ``small_anchor_iou``: their shape-IoU threshold (at most ``anchor_iou``); ``small_topk``: their
    k best anchors are positive regardless of IoU (0: off). ``anchor_iou`` and ``near_cells`` as
    for ``yolov4``.
    """

    def __init__(
        self,
        *,
        anchor_iou: float = DEFAULT_ANCHOR_IOU,
        near_cells: bool = False,
        small_size: float = 16.0,
        small_anchor_iou: float = 0.1,
        small_topk: int = 0,
    ) -> None:
        super().__init__(anchor_iou=anchor_iou, near_cells=near_cells)
        if not small_size >= 0:
            raise ValueError(f"small_size must be >= 0 input pixels, got {small_size}")
        if not 0.0 <= small_anchor_iou <= self.anchor_iou:
            raise ValueError(
                f"small_anchor_iou must lie in [0, anchor_iou={self.anchor_iou}] (it relaxes the threshold "
                f"for small faces), got {small_anchor_iou}"
            )
        if isinstance(small_topk, bool) or int(small_topk) != small_topk or small_topk < 0:
            raise ValueError(f"small_topk must be a whole number >= 0 (0: off), got {small_topk!r}")
        self.small_size = float(small_size)
        self.small_anchor_iou = float(small_anchor_iou)
        self.small_topk = int(small_topk)

    def __repr__(self) -> str:
        return (
            f"ScaleAwareAssigner(anchor_iou={self.anchor_iou}, near_cells={self.near_cells}, "
            f"small_size={self.small_size}, small_anchor_iou={self.small_anchor_iou}, small_topk={self.small_topk})"
        )

    def anchor_matches(self, targets_cat: Tensor, anchors: Tensor) -> Tensor:
        """``(Nt, L, A)`` bool: the ``yolov4`` matches, plus the relaxed ones of the small faces."""
        match = super().anchor_matches(targets_cat, anchors)
        n_targets, n_levels, n_anchors = match.shape
        if not n_targets:
            return match
        wh = (targets_cat[:, 3:5] - targets_cat[:, 1:3]).clamp(min=0)
        small = (wh[:, 0] * wh[:, 1]).sqrt() < self.small_size  # (Nt,)
        if not bool(small.any()):
            return match
        iou = wh_iou(wh, anchors.reshape(-1, 2).to(wh))  # (Nt, L*A), as the parent computes it
        extra = iou > self.small_anchor_iou
        k = min(self.small_topk, iou.shape[1])
        if k:
            extra[torch.arange(n_targets, device=iou.device)[:, None], iou.topk(k, dim=1).indices] = True
        extra &= small[:, None]
        return match | extra.view(n_targets, n_levels, n_anchors)
